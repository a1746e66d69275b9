"""The fraud-number model: the shipped booster on a city it never saw, explanations, and the Sichuan data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from skyshield.behaviour.features import FEATURE_NAMES, batch_features
from skyshield.behaviour.model import FraudNumberModel, evaluate_sichuan, scores, train_booster
from skyshield.behaviour.simulate import SimConfig, simulate


def test_shipped_model_separates_fraud_numbers_in_an_unseen_city() -> None:
    calls, messages, labels, _ = simulate(SimConfig(subscribers=3000, days=2, seed=21))
    f = batch_features(calls, messages, activation=labels.select("number", "activated"))
    f = f.join(labels.select("number", "kind", "is_fraud"), on="number")
    model = FraudNumberModel.load()
    p = model.predict(f.select(FEATURE_NAMES).to_numpy())
    y = f["is_fraud"].to_numpy()
    s = scores(y, p)
    assert s["auc"] > 0.95 and s["recall"] > 0.8 and s["precision"] > 0.8
    kinds = f["kind"].to_numpy()
    assert (p[kinds == "courier"] >= 0.5).mean() < 0.2  # legitimate heavy callers are not fraud
    fraud_row = f.filter(pl.col("kind") == "fraud").select(FEATURE_NAMES).to_numpy()[:1]
    reasons = model.explain(fraud_row)[0]
    assert reasons and all(r.contribution > 0 and r.feature in FEATURE_NAMES for r in reasons)


def test_model_with_other_features_is_refused(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((50, 2))
    booster = train_booster(x, (x[:, 0] > 0.5).astype(int), ["a", "b"], rounds=3, threads=1)
    booster.save_model(str(tmp_path / "m.txt"))
    with pytest.raises(ValueError, match="other features"):
        FraudNumberModel.load(tmp_path / "m.txt")
    with pytest.raises(FileNotFoundError, match="behaviour-train"):
        FraudNumberModel.load(tmp_path / "absent.txt")


def test_sichuan_per_user_features(data_dir: Path) -> None:
    r = evaluate_sichuan(data_dir, folds=3, rounds=60, threads=1, graph=False)
    s = r["per_user_features"]
    assert s["f1"] > 0.8 and s["auc"] > 0.9
