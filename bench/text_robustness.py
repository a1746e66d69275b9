"""How well normalisation undoes obfuscation, and whether the text model's category survives it.

For a sample of real fraud/smishing texts (telecom_fraud_texts_5 fraud classes, Chinese; smishtank,
English) it makes one obfuscated variant per text per obfuscation (skyshield.text.obfuscate) and
prints, per obfuscation:

* ``recovered``: share of variants whose normalised text equals the normalised original;
* ``held``: share of variants (of texts the model calls fraud/illicit when clean) that it still calls
  fraud/illicit, through the full engine (``skyshield.assembly.build_engine()``);
* ``held_baseline``: the same with a baseline analyser that only does NFKC + lower case (same model),
  to show what the normaliser buys.

    .venv/bin/python bench/text_robustness.py [--n 300] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import random
import unicodedata
from collections.abc import Sequence
from pathlib import Path

UNWANTED = {"fraud", "illicit"}


def load(data: Path, n: int, seed: int = 5) -> dict[str, list[str]]:
    rng = random.Random(seed)
    with (data / "telecom_fraud_texts_5" / "telecom_fraud_texts_5.csv").open(encoding="utf-8", newline="") as f:
        zh = [r["text"] for r in csv.DictReader(f) if r["label"] != "0"]
    with (data / "smishtank" / "smishtank.csv").open(encoding="utf-8", newline="") as f:
        en = [r["MainText"] for r in csv.DictReader(f) if r["MainText"].strip()]
    return {"zh": rng.sample(zh, min(n, len(zh))), "en": rng.sample(en, min(n, len(en)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="texts per language")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()

    from skyshield.assembly import build_engine
    from skyshield.engine import Engine
    from skyshield.events import Message
    from skyshield.text.extract import analyse_batch
    from skyshield.text.normalise import normalise_batch
    from skyshield.text.obfuscate import OBFUSCATIONS, obfuscate_all

    engine = build_engine()

    def baseline_analyse(texts: Sequence[str]):  # same entities, only NFKC + lower as the "normalised" text
        out = analyse_batch(texts)
        for a in out:
            a.normalised = unicodedata.normalize("NFKC", a.original).lower()
        return out

    baseline = Engine(engine.policy, baseline_analyse, engine.model, engine.detectors)

    def categories(eng: Engine, texts: list[str]) -> list[str]:
        return [v.category.value for v in eng.check([Message(text=t) for t in texts])]

    generators = dict(OBFUSCATIONS)
    generators["all"] = obfuscate_all
    print(f"{'lang':4} {'obfuscation':12} {'n':>4} {'recovered':>9} {'held':>6} {'held_baseline':>13}")
    for lang, texts in load(args.data, args.n).items():
        clean = normalise_batch(texts)
        flagged = [t for t, c in zip(texts, categories(engine, texts), strict=True) if c in UNWANTED]
        print(f"{lang:4} {'(none)':12} {len(texts):>4} {'':>9} {len(flagged) / len(texts):>6.3f}  "
              "<- share of clean texts called fraud/illicit")
        for name, fn in generators.items():
            rng = random.Random(11)
            variants = [fn(t, rng) for t in texts]
            recovered = sum(a == b for a, b in zip(clean, normalise_batch(variants), strict=True)) / len(texts)
            rng = random.Random(11)
            flagged_variants = [fn(t, rng) for t in flagged]
            held = sum(c in UNWANTED for c in categories(engine, flagged_variants)) / max(1, len(flagged))
            held_base = sum(c in UNWANTED for c in categories(baseline, flagged_variants)) / max(1, len(flagged))
            print(f"{lang:4} {name:12} {len(texts):>4} {recovered:>9.3f} {held:>6.3f} {held_base:>13.3f}")


if __name__ == "__main__":
    main()
