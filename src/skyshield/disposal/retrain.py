"""``skyshield retrain``: fold reviewers' labels into the text model, and ship it only if nothing guarded drops.

Uses the text area's own training (:func:`skyshield.text.training.fit`, the corpus loader and folds of
:mod:`skyshield.text.evaluation`); nothing is copied here. The protocol, honest about what is held out:

1. base rows: the public corpora (``--data``, default ``../shared/data``) or, without them, the shipped seed
   set; one fold of the testable rows (fold 0 of the text area's stratified folds) is the **guard set**,
   never trained on;
2. labels: every labelled review item, one per (campaign template, label) so a labelled wave counts once;
   every 4th one (when there are at least 4) is held out to measure whether the labels were learnt;
3. *before* = a model fitted on the base training rows; *after* = the same plus the labels (each counting
   ``LABEL_WEIGHT`` rows). Both take the deployed model's calibration, so only the labels differ;
4. guards: on the guard set, unwanted F1, fraud recall and macro F1 may not fall and ham blocked may not
   rise beyond a small tolerance plus what refitting *before* with another seed moves that metric (the
   linear model's SGD is order-sensitive). Macro F1 covers the classes with at least ``MIN_CLASS_ROWS``
   guard rows. The candidate is always written to ``<out>/candidate/``; it replaces ``<out>/text_model.npz``
   only when every guard passes (point ``[detectors.text_model] path`` there).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skyshield.disposal.review import training_class
from skyshield.text.training import SEED

LABEL_WEIGHT = 4.0
HOLDOUT_EVERY = 4
#: Largest allowed worsening of each guarded metric (absolute; percentages in points).
GUARDS = {"unwanted_f1": 0.005, "fraud_recall_pct": 1.0, "macro_f1": 0.01, "ham_blocked_pct": 0.2}
LOWER_IS_BETTER = {"ham_blocked_pct"}
#: Classes with fewer guard rows than this are left out of the guarded macro F1 (too few to measure).
MIN_CLASS_ROWS = 50


@dataclass
class RetrainResult:
    before: dict[str, float]
    after: dict[str, float]
    failed_guards: list[str]
    shipped: bool
    candidate: Path
    target: Path
    labels_used: int
    labels_held_out: int
    base_rows: int
    guard_rows: int
    version: str = ""
    #: How much each metric moves when only the training seed changes (added to the guard's tolerance).
    noise: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"{'metric':<26}{'before':>10}{'after':>10}{'change':>10}{'reseed':>10}  guard"]
        for name in sorted(set(self.before) | set(self.after)):
            b, a = self.before.get(name), self.after.get(name)
            change = "" if b is None or a is None else f"{a - b:+.4f}"
            guard = ""
            if name in GUARDS:
                guard = "FAIL" if name in self.failed_guards else "ok"
            fmt = (lambda v: "" if v is None else f"{v:.4f}")  # noqa: E731
            lines.append(f"{name:<26}{fmt(b):>10}{fmt(a):>10}{change:>10}{fmt(self.noise.get(name)):>10}  {guard}")
        return "\n".join(lines)


def metrics(probs: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Guarded metrics from P(ham, promotion, fraud, illicit) and the true classes."""
    from sklearn.metrics import f1_score

    from skyshield.text.classify import HEADS
    from skyshield.text.datasets import split_class

    truth = np.array([split_class(c)[0] for c in classes])
    pred = np.array(HEADS)[probs.argmax(axis=1)]
    unwanted_true = truth != "ham"
    unwanted_pred = (1.0 - probs[:, 0]) >= 0.5
    ham = ~unwanted_true
    fraud = truth == "fraud"
    # A class with a handful of guard rows (illicit has ~10) swings from 0 to 0.5 F1 on a reseed alone: it
    # would make the guard a coin toss. Macro F1 is over the classes with enough rows to be measured.
    counts = {c: int((truth == c).sum()) for c in set(truth.tolist())}
    steady = sorted(c for c, n in counts.items() if n >= MIN_CLASS_ROWS)
    return {
        "unwanted_f1": round(float(f1_score(unwanted_true, unwanted_pred, zero_division=0)), 4),
        "ham_blocked_pct": round(100.0 * float((unwanted_pred & ham).sum()) / max(int(ham.sum()), 1), 3),
        "fraud_recall_pct": round(100.0 * float((pred[fraud] == "fraud").mean()), 2) if fraud.any() else 0.0,
        "macro_f1": round(float(f1_score(truth, pred, labels=steady or sorted(counts), average="macro",
                                         zero_division=0)), 4),
    }


def failed_guards(before: dict[str, float], after: dict[str, float],
                  tolerances: dict[str, float] | None = None) -> list[str]:
    tolerances = GUARDS if tolerances is None else tolerances
    failed = []
    for name, tol in tolerances.items():
        if name not in before or name not in after:
            continue
        worse = after[name] - before[name] if name in LOWER_IS_BETTER else before[name] - after[name]
        if worse > tol + 1e-12:
            failed.append(name)
    return failed


def distinct_labels(labels: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One label per (campaign template, label): a wave of 500 copies labelled once each must not outweigh the
    corpus (it would teach the model that one template, and nothing else)."""
    from skyshield.disposal.campaigns import fingerprints

    seen: set[tuple[str, str]] = set()
    out = []
    for row, fp in zip(labels, fingerprints([r["text"] for r in labels]), strict=True):
        key = (fp.template_hash, row["label"])
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _base(data_dir: Path | None, log: Callable[[str], None]) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(normalised texts, classes, weights, guard mask) of the base rows."""
    if data_dir is not None and data_dir.is_dir():
        from skyshield.text.evaluation import assign_folds, load_corpus

        corpus = load_corpus(data_dir, log)
        folds = assign_folds(corpus)
        guard = corpus.testable & (folds == 0)
        keep = corpus.trainable | guard
        idx = np.flatnonzero(keep)
        return ([corpus.normalised[i] for i in idx], [str(c) for c in corpus.classes[idx]], corpus.weights[idx],
                guard[idx])
    from skyshield.text.datasets import read_seed
    from skyshield.text.training import normalised_texts

    log(f"no corpora at {data_dir}: using the shipped seed set as the base (a smoke run, not a real retrain)")
    seed = read_seed()
    guard = np.arange(len(seed)) % 5 == 0
    return normalised_texts([r.text for r in seed]), [r.cls for r in seed], np.ones(len(seed)), guard


def retrain(labels: Sequence[dict[str, Any]], out: Path, *, data_dir: Path | None, current: Any = None,
            tolerances: dict[str, float] | None = None, log: Callable[[str], None] = print) -> RetrainResult:
    """``labels``: review rows with ``text`` and ``label``. Writes the candidate, ships it if guards pass."""
    from skyshield.text.classify import MODEL_FILE, load_model
    from skyshield.text.training import fit, normalised_texts

    if not labels:
        raise ValueError("no labelled review items to learn from: label some in the console or with the API first")
    current = current or load_model(None)
    labels = distinct_labels(labels)
    norm, classes, weights, guard = _base(data_dir, log)
    label_norm = normalised_texts([r["text"] for r in labels])
    label_cls = [training_class(r["label"]) for r in labels]
    held = np.zeros(len(labels), dtype=bool)
    if len(labels) >= HOLDOUT_EVERY:
        held[HOLDOUT_EVERY - 1::HOLDOUT_EVERY] = True
    train_idx = np.flatnonzero(~guard)
    base_x = [norm[i] for i in train_idx]
    base_y = [classes[i] for i in train_idx]
    base_w = list(weights[train_idx])
    log(f"fitting before (base: {len(base_x)} rows, two seeds) and after (+{int((~held).sum())} labels "
        f"x{LABEL_WEIGHT:g})")
    before_model = fit(base_x, base_y, weights=base_w)
    reseeded = fit(base_x, base_y, weights=base_w, seed=SEED + 1)
    learn = np.flatnonzero(~held)
    after_model = fit(base_x + [label_norm[i] for i in learn], base_y + [label_cls[i] for i in learn],
                      weights=base_w + [LABEL_WEIGHT] * len(learn))
    for m in (before_model, reseeded, after_model):
        m.temperature, m.offset = current.temperature, current.offset
        m.meta = dict(current.meta)
    guard_x = [norm[i] for i in np.flatnonzero(guard)]
    guard_y = [classes[i] for i in np.flatnonzero(guard)]
    before = metrics(before_model.category_probabilities(guard_x), guard_y)
    after = metrics(after_model.category_probabilities(guard_x), guard_y)
    # What retraining alone moves each metric (same rows, another seed): a drop within it is not the labels' doing.
    other = metrics(reseeded.category_probabilities(guard_x), guard_y)
    noise = {k: abs(before[k] - other[k]) for k in before}
    if held.any():
        hx = [label_norm[i] for i in np.flatnonzero(held)]
        hy = [label_cls[i] for i in np.flatnonzero(held)]
        before["reviewed_holdout_macro_f1"] = metrics(before_model.category_probabilities(hx), hy)["macro_f1"]
        after["reviewed_holdout_macro_f1"] = metrics(after_model.category_probabilities(hx), hy)["macro_f1"]
    failed = failed_guards(before, after, {k: t + noise.get(k, 0.0) for k, t in (tolerances or GUARDS).items()})
    after_model.version = f"{current.version.split('+')[0]}+reviewed{len(learn)}"
    after_model.meta["reviewed_labels"] = int(len(learn))
    candidate_dir = out / "candidate"
    candidate = after_model.save(candidate_dir)
    target = out / MODEL_FILE
    shipped = not failed
    if shipped:
        tmp = out / (MODEL_FILE + ".tmp")
        shutil.copyfile(candidate, tmp)
        os.replace(tmp, target)  # atomic: a server loading the model never sees half a file
    return RetrainResult(before, after, failed, shipped, candidate, target, int(len(learn)), int(held.sum()),
                         len(base_x), len(guard_x), after_model.version, noise=noise)
