"""The batched text path gives every message exactly what it gets on its own.

Batches take vectorised shortcuts (one array look-up for normalisation, one regex pass per entity kind,
numpy explanations, one pass for the ham kinds); a message alone takes the per-message paths. On a few
hundred varied messages (the seed examples, obfuscated variants of them, hand-written edge cases) both
must agree on everything a user sees: normalised text, entities, category, probabilities, reasons.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

import pytest

from skyshield.text import phrases
from skyshield.text.analysis import Entities, Span, TextAnalysis
from skyshield.text.classify import ham_kind, ham_kinds, load_model
from skyshield.text.extract import analyse, analyse_batch
from skyshield.text.obfuscate import OBFUSCATIONS

SEEDS = Path(__file__).resolve().parents[1] / "src/skyshield/text/seed_examples.tsv"

EDGE_CASES = [
    "", " ", "\n", "a\nb", "😀😀😀", "ｆｕｌｌ　ｗｉｄｔｈ　ＴＥＸＴ　１２３", "𝐁𝐎𝐋𝐃 ① ❷ ⑶",
    "x" * 3000, "免费领取 " * 40, "加 薇 信 ａｂｃ１２３ 领取 888 元红包",
    "PRIVATE! Your 2004 Account Statement for 07742676969 shows 786 unredeemed Bonus Points",
    "supercalifragilisticexpialidociousandthensomemorelettersthatgoonforeverandever win a prize now",
    "win win win win win win win win win win cash cash cash prize prize prize",
    "【招商银行】您尾号6610的储蓄卡消费支出人民币89.00元 回T退订",
    "Your code is 482913. Reply STOP to opt out. Visit https://bit.ly/abc123 or call +44 7911 123456",
]


def _corpus() -> list[str]:
    seeds = [line.split("\t", 1)[1] for line in SEEDS.read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#") and "\t" in line]
    rng = random.Random(20261204)
    variants = [fn(text, rng) for text in seeds[::3] for fn in OBFUSCATIONS.values()]
    return seeds + variants + EDGE_CASES


@pytest.fixture(scope="module")
def texts() -> list[str]:
    texts = _corpus()
    assert len(texts) >= 300
    return texts


@pytest.fixture(scope="module")
def model():
    return load_model(None)


def _view(prediction):  # everything a caller can read, dict order included
    return (prediction.category, prediction.subtype, list(prediction.probabilities.items()), prediction.unwanted,
            prediction.top_terms)


def test_analysis_of_a_batch_equals_analysis_one_at_a_time(texts):
    together = analyse_batch(texts)
    for text, a in zip(texts, together, strict=True):
        alone = analyse(text)
        assert (a.original, a.normalised, asdict(a.entities)) == (alone.original, alone.normalised,
                                                                  asdict(alone.entities)), text


def test_evidence_quotes_the_original_text(texts):
    for a in analyse_batch(texts):
        ents = a.entities
        spans = [*ents.links, *ents.ip_links, *ents.phones, *ents.chat_ids, *ents.amounts, *ents.codes,
                 *(s for s in (ents.signature, ents.opt_out) if s is not None)]
        for span in spans:
            assert a.original[span.start:span.end] == span.text


def test_predictions_of_a_batch_equal_predictions_one_at_a_time(model, texts):
    analyses = analyse_batch(texts)
    together = model.predict(analyses)
    explained = [p for p in together if p.top_terms]
    assert len(explained) > phrases._FEW, "the batch must take the vectorised explanation path"
    for a, p in zip(analyses, together, strict=True):
        assert _view(model.predict([a])[0]) == _view(p), a.original
        for term, value in p.top_terms:
            assert term and term in a.normalised
            assert value > 0


def test_a_hash_collision_between_phrases_falls_back_to_the_exact_rule(model, texts, monkeypatch):
    analyses = analyse_batch(texts)
    expected = [p.top_terms for p in model.predict(analyses)]
    # With the text part of the key gone, every two pieces of one length in a message collide.
    monkeypatch.setattr(phrases, "_MIX_TEXT", phrases.np.uint64(0))
    assert [p.top_terms for p in model.predict(analyses)] == expected


def test_ham_kinds_in_one_pass_match_one_at_a_time(texts):
    analyses = analyse_batch(texts)
    assert ham_kinds(analyses) == [ham_kind(a) for a in analyses]
    assert set(ham_kinds(analyses)) == {"personal", "notification", "verification"}
    # a hand-made analysis whose text holds a newline cannot share the joined pass
    odd = [TextAnalysis("x", "hello\nyour parcel is here", Entities()),
           TextAnalysis("y", "hi", Entities(codes=[Span(0, 2, "hi")]))]
    assert ham_kinds(odd + analyses) == ["notification", "verification"] + [ham_kind(a) for a in analyses]
    assert ham_kinds(odd) == ["notification", "verification"]


@pytest.mark.parametrize("value", [0.0005, 0.0015, 1.0005, 2.675, 0.1234999999, 0.5, 1e-9, 123456.78951,
                                   3.0000000000000004, 7.4995, 0.0625, 1e17, 123456789.0005,
                                   float("nan"), float("inf"), -2.5005])
def test_rounding_matches_python(value):
    import numpy as np

    values = np.array([value, value * 3, value / 7])
    assert [str(v) for v in phrases._round3(values)] == [str(round(float(v), 3)) for v in values]
