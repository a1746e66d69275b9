"""Obfuscated variants of real messages normalise back to the original, and keep their category."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from skyshield.text.extract import analyse
from skyshield.text.normalise import normalise, normalise_batch
from skyshield.text.obfuscate import OBFUSCATIONS, obfuscate, obfuscate_all

FRAUD_ZH = "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即加微信abc123配合调查，访问 t.cn/abc 下载会议APP"
SMISH_EN = "USPS: your package is on hold. Update your address at usps-redelivery.com/track within 24 hours"


@pytest.mark.parametrize("name", sorted(OBFUSCATIONS))
def test_each_obfuscation_changes_text_and_normalises_back(name: str) -> None:
    text = FRAUD_ZH if name not in ("homoglyphs",) else SMISH_EN
    variant = OBFUSCATIONS[name](text, random.Random(3))
    assert variant != text
    assert normalise(variant) == normalise(text)


def test_obfuscation_is_repeatable() -> None:
    assert obfuscate_all(FRAUD_ZH, random.Random(7)) == obfuscate_all(FRAUD_ZH, random.Random(7))
    once = OBFUSCATIONS["full_width"](FRAUD_ZH, random.Random(1))
    assert obfuscate(FRAUD_ZH, ["full_width"], random.Random(1)) == once


def test_entities_survive_obfuscation_and_quote_the_variant() -> None:
    variant = obfuscate_all(FRAUD_ZH, random.Random(5))
    e = analyse(variant).entities
    assert [d for d in e.link_domains] == ["t.cn"]
    assert len(e.chat_ids) == 1
    for span in e.links + e.chat_ids:
        assert variant[span.start : span.end] == span.text  # evidence quotes what was really sent


def _sample(data_dir: Path, n: int = 150) -> dict[str, list[str]]:
    rng = random.Random(5)
    with (data_dir / "telecom_fraud_texts_5" / "telecom_fraud_texts_5.csv").open(encoding="utf-8", newline="") as f:
        zh = [r["text"] for r in csv.DictReader(f) if r["label"] != "0"]
    with (data_dir / "smishtank" / "smishtank.csv").open(encoding="utf-8", newline="") as f:
        en = [r["MainText"] for r in csv.DictReader(f) if r["MainText"].strip()]
    return {"zh": rng.sample(zh, n), "en": rng.sample(en, n)}


@pytest.mark.data
def test_real_fraud_texts_are_recovered(data_dir: Path) -> None:
    """Share of obfuscated variants whose normalised text equals the normalised original."""
    shares: dict[tuple[str, str], float] = {}
    for lang, texts in _sample(data_dir).items():
        clean = normalise_batch(texts)
        for name, fn in OBFUSCATIONS.items():
            rng = random.Random(11)
            got = normalise_batch([fn(t, rng) for t in texts])
            shares[lang, name] = sum(a == b for a, b in zip(clean, got, strict=True)) / len(texts)
    print({f"{lang}/{name}": round(v, 3) for (lang, name), v in shares.items()})
    # Spaced-out English words next to one-letter words ("a f r e e gift") rejoin too far; the rest
    # should come back exactly for nearly every text.
    for (lang, name), share in shares.items():
        floor = 0.7 if (lang, name) == ("en", "spacing") else 0.95
        assert share >= floor, (lang, name, share)


@pytest.mark.data
def test_model_category_holds_on_obfuscated_fraud(data_dir: Path) -> None:
    from skyshield.assembly import build_engine
    from skyshield.events import Message

    try:
        engine = build_engine()
    except FileNotFoundError as exc:  # the shipped model file is built by `skyshield train`
        pytest.skip(f"no text model file: {exc}")
    unwanted = {"fraud", "illicit"}
    for lang, texts in _sample(data_dir, 100).items():
        verdicts = engine.check([Message(text=t) for t in texts])
        flagged = [t for t, v in zip(texts, verdicts, strict=True) if v.category.value in unwanted]
        assert len(flagged) >= 50, (lang, len(flagged))  # the model must call most real fraud fraud
        rng = random.Random(11)
        variants = [obfuscate_all(t, rng) for t in flagged]
        held = sum(v.category.value in unwanted for v in engine.check([Message(text=t) for t in variants]))
        share = held / len(flagged)
        print(f"{lang}: category held on {share:.1%} of {len(flagged)} obfuscated fraud texts")
        assert share >= 0.9, (lang, share)
