"""``skyshield retrain``: labels go into the text model; a candidate that worsens a guarded metric never ships."""

from __future__ import annotations

import numpy as np
import pytest

from skyshield.disposal.retrain import distinct_labels, failed_guards, metrics, retrain


def test_guards_name_each_metric_that_got_worse_beyond_its_tolerance():
    before = {"unwanted_f1": 0.90, "fraud_recall_pct": 80.0, "macro_f1": 0.8, "ham_blocked_pct": 1.0}
    assert failed_guards(before, dict(before)) == []
    assert failed_guards(before, before | {"unwanted_f1": 0.897}) == []  # within 0.005
    worse = before | {"unwanted_f1": 0.85, "ham_blocked_pct": 2.0, "fraud_recall_pct": 85.0}
    assert failed_guards(before, worse) == ["unwanted_f1", "ham_blocked_pct"]


def test_metrics_read_the_model_heads():
    probs = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.1, 0.7, 0.1], [0.6, 0.3, 0.05, 0.05], [0.2, 0.7, 0.05, 0.05]])
    m = metrics(probs, ["ham", "fraud/loan", "fraud/other", "promotion"])
    assert m["fraud_recall_pct"] == 50.0 and m["ham_blocked_pct"] == 0.0


def _labels(texts: list[str], label: str, copies: int = 1) -> list[dict]:
    return [{"text": t, "label": label} for t in texts for _ in range(copies)]


def test_retrain_on_the_seed_set_ships_when_guards_pass_and_not_when_they_fail(tmp_path):
    pytest.importorskip("sklearn")
    from skyshield.text.classify import TextModel, load_model
    from skyshield.text.datasets import read_seed

    # The seed set's guard fold is ~36 texts, so one flip moves a metric past its tolerance. Labels that are
    # correct readings of texts like the guard fold's (here: those very texts) can only help it.
    seed = read_seed()
    guard = [r for i, r in enumerate(seed) if i % 5 == 0]
    good = [{"text": r.text, "label": r.cls if r.cls != "ham" else "personal"} for r in guard for _ in range(2)]
    result = retrain(good, tmp_path, data_dir=None, log=lambda m: None)
    assert result.candidate.is_file()
    assert result.shipped and result.target.is_file() and not result.failed_guards, result.table()
    distinct = len(distinct_labels(good))
    assert distinct < len(good)  # the second copy of each label counts once
    learnt = distinct - distinct // 4
    assert TextModel.load(result.target).version.endswith(f"+reviewed{learnt}")  # every 4th label held out
    shipped_bytes = result.target.read_bytes()

    # Poison: every fraud text of the guard fold, labelled as personal.
    guard_fraud = [r.text for r in guard if r.cls.startswith("fraud")]
    assert guard_fraud
    bad = _labels(guard_fraud, "personal")
    result = retrain(bad, tmp_path, data_dir=None, log=lambda m: None, current=load_model(None))
    assert not result.shipped and result.failed_guards, result.table()
    assert result.target.read_bytes() == shipped_bytes  # the shipped model was not replaced
    assert "FAIL" in result.table()


def test_retrain_without_labels_says_so(tmp_path):
    with pytest.raises(ValueError, match="no labelled review items"):
        retrain([], tmp_path, data_dir=None)


def test_a_labelled_wave_counts_once():
    wave = [{"text": f"【店{i}】尊敬的客户，您的额度已提升至{i}万元，点击 http://a{i}.cn 领取", "label": "fraud/loan"}
            for i in range(30)]
    other = {"text": "妈，我晚上七点到家", "label": "personal"}
    assert distinct_labels([*wave, other]) == [wave[0], other]
