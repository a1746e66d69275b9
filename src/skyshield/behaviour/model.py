"""Fraud-number model: LightGBM over the behaviour features, with per-number explanations.

- :class:`FraudNumberModel` loads the shipped booster (``models/behaviour_model.txt``) and scores feature
  rows in batches with ``booster.predict(x, num_threads=1)``; :meth:`explain` turns SHAP values
  (``pred_contrib=True``) into the features that pushed one number's score most.
- :func:`train_on_simulator` reproduces the shipped model (``skyshield behaviour-train``) and measures it on
  a second, independently seeded city.
- :func:`evaluate_sichuan` measures the same learner on the public Sichuan per-user features, with and
  without neighbour-aggregated features from the user graph (stratified 5-fold CV).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from skyshield.behaviour.features import FEATURE_NAMES, batch_features

MODEL_DIR = Path(str(resources.files("skyshield"))) / "models"
MODEL_PATH = MODEL_DIR / "behaviour_model.txt"
METRICS_PATH = MODEL_DIR / "behaviour_metrics.json"

PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
}


def _lgb():
    import lightgbm as lgb

    return lgb


def train_booster(x: np.ndarray, y: np.ndarray, feature_names: list[str], rounds: int = 200,
                  threads: int = 2, params: dict[str, Any] | None = None):
    lgb = _lgb()
    p = {**PARAMS, "num_threads": threads, **(params or {})}
    return lgb.train(p, lgb.Dataset(x, label=y, feature_name=feature_names, free_raw_data=True), rounds)


def scores(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    pred = p >= threshold
    return {
        "f1": round(float(f1_score(y, pred, zero_division=0)), 4),
        "precision": round(float(precision_score(y, pred, zero_division=0)), 4),
        "recall": round(float(recall_score(y, pred, zero_division=0)), 4),
        "auc": round(float(roc_auc_score(y, p)), 4),
    }


@dataclass
class Reason:
    feature: str
    value: float
    contribution: float  # log-odds the feature added to this number's score

    def __str__(self) -> str:
        return f"{self.feature}={self.value:g} ({self.contribution:+.2f})"


class FraudNumberModel:
    """The shipped fraud-number booster over :data:`FEATURE_NAMES`."""

    def __init__(self, booster, version: str = "behaviour-lgbm"):
        self.booster = booster
        self.version = version
        names = booster.feature_name()
        if names != FEATURE_NAMES:
            raise ValueError("behaviour model was trained on other features; retrain with `skyshield behaviour-train`")

    @classmethod
    def load(cls, path: str | Path | None = None) -> FraudNumberModel:
        path = Path(path) if path else MODEL_PATH
        if not path.exists():
            raise FileNotFoundError(f"{path}: no behaviour model; run `skyshield behaviour-train`")
        return cls(_lgb().Booster(model_file=str(path)), f"behaviour-lgbm:{path.name}")

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        return self.booster.predict(x, num_threads=1)

    def explain(self, x: np.ndarray, top: int = 5) -> list[list[Reason]]:
        """Per row, the ``top`` features with the largest positive push towards fraud (SHAP values)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        contrib = self.booster.predict(x, num_threads=1, pred_contrib=True)[:, :-1]
        out = []
        for row, c in zip(x, contrib, strict=False):
            order = np.argsort(-c)[:top]
            out.append([Reason(FEATURE_NAMES[i], float(row[i]), float(c[i])) for i in order if c[i] > 0])
        return out


# --- the simulator -------------------------------------------------------------------------------------


def simulator_dataset(calls: pl.DataFrame, messages: pl.DataFrame, labels: pl.DataFrame, days: int,
                      hours: tuple[int, ...] = (10, 16, 22)) -> pl.DataFrame:
    """Feature snapshots of every active number at several times of each day, with ``is_fraud``."""
    from skyshield.behaviour.simulate import START

    activation = labels.select("number", "activated")
    # Half the snapshots see records without cell ids (as from the API or SIP), so a missing cell
    # (distinct_cells = 0) is not mistaken for evidence either way.
    no_cells = calls.with_columns(pl.lit(None, dtype=pl.String).alias("cell"))
    frames = []
    for day in range(days):
        for i, hour in enumerate(hours):
            at = START + timedelta(days=day, hours=hour)
            source = no_cells if (day * len(hours) + i) % 2 else calls
            f = batch_features(source.filter(pl.col("start") <= at), messages.filter(pl.col("time") <= at), at,
                               activation)
            frames.append(f.with_columns(pl.lit(at).alias("at")))
    data = pl.concat(frames).join(labels.select("number", "kind", "is_fraud"), on="number", how="left")
    return data.with_columns(pl.col("is_fraud").fill_null(False), pl.col("kind").fill_null("ordinary"))


def train_on_simulator(subscribers: int = 20_000, days: int = 7, seed: int = 0, out: str | Path | None = None,
                       threads: int = 2) -> dict[str, Any]:
    """Train on one simulated city, test on another (seed + 1); save the booster; return metrics."""
    from skyshield.behaviour.simulate import SimConfig, simulate

    def data(s: int) -> pl.DataFrame:
        c, m, lab, _ = simulate(SimConfig(subscribers=subscribers, days=days, seed=s))
        return simulator_dataset(c, m, lab, days)

    train, test = data(seed), data(seed + 1)
    booster = train_booster(train.select(FEATURE_NAMES).to_numpy(), train["is_fraud"].to_numpy(), FEATURE_NAMES,
                            threads=threads)
    p = booster.predict(test.select(FEATURE_NAMES).to_numpy(), num_threads=1)
    y = test["is_fraud"].to_numpy()
    metrics: dict[str, Any] = {"overall": scores(y, p)}
    kinds = test["kind"].to_numpy()
    metrics["flagged_share_by_kind"] = {
        k: round(float((p[kinds == k] >= 0.5).mean()), 4) for k in sorted(set(kinds.tolist()))
    }
    metrics["setup"] = (f"train: simulated city seed {seed}, test: seed {seed + 1}; {subscribers} subscribers x "
                        f"{days} days each; snapshots at 10:00, 16:00, 22:00 each day, every other one "
                        f"without cell ids; "
                        f"{train.height} train rows, {test.height} test rows")
    gain = booster.feature_importance("gain")
    metrics["top_features_by_gain"] = [FEATURE_NAMES[i] for i in np.argsort(-gain)[:10]]
    out = Path(out) if out else MODEL_PATH
    out.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out))
    return metrics


# --- the public Sichuan per-user features --------------------------------------------------------------

SICHUAN_ANCHORS = {
    "GDFGAT (raw records, paper)": {"f1": 0.921, "auc": 0.945},
    "CDR2IMG (raw records, paper)": {"f1": 0.900},
}


def _neighbour_features(x: np.ndarray, adj) -> np.ndarray:
    """Mean of each feature over a user's neighbours (NaN-aware), plus the user's degree."""
    import scipy.sparse as sp

    a = adj.maximum(adj.T).tocsr().astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    present = ~np.isnan(x)
    filled = np.where(present, x, 0.0)
    sums = a @ filled
    counts = a @ present.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    degree = np.asarray(a.sum(axis=1)).ravel()[:, None]
    return np.hstack([mean, degree]) if sp.issparse(a) else mean


def evaluate_sichuan(data_dir: str | Path, folds: int = 5, threads: int = 2, rounds: int = 300,
                     graph: bool = True) -> dict[str, Any]:
    """Stratified k-fold CV of LightGBM on the Sichuan per-user features, without and with the user graph."""
    import scipy.sparse as sp
    from sklearn.model_selection import StratifiedKFold

    folder = Path(data_dir) / "sichuan_fraud_calls"
    df = pl.read_csv(folder / "all_feat_with_label.csv", infer_schema_length=10_000)
    y = df["label"].to_numpy().astype(int)
    names = [c for c in df.columns if c not in {"phone_no_m", "label"}]
    x = df.select(pl.col(names).cast(pl.Float64)).to_numpy()
    adj = sp.load_npz(folder / "node_adj_sparse.npz")
    if adj.shape[0] != len(y):
        raise ValueError(f"{folder}: graph has {adj.shape[0]} nodes but the CSV has {len(y)} rows")
    xg = np.hstack([x, _neighbour_features(x, adj)])
    names_g = names + [f"nbr_mean_{n}" for n in names] + ["degree"]
    a = adj.maximum(adj.T).tocsr().astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    results: dict[str, Any] = {}
    variants = (("per_user_features", x, names, False), ("plus_graph_neighbour_means", xg, names_g, False),
                ("plus_graph_neighbour_means_and_fraud_share", xg, names_g, True))
    for label, data, feat, label_share in variants if graph else variants[:1]:
        p = np.zeros(len(y))
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=42).split(data, y):
            d = data
            if label_share:
                # Share of a user's neighbours known (training fold only) to be fraud: no test label is read.
                known = np.zeros(len(y))
                known[train] = 1.0
                fraud_known = np.where(known > 0, y, 0).astype(np.float64)
                n_known = a @ known
                share = np.where(n_known > 0, (a @ fraud_known) / np.maximum(n_known, 1), np.nan)
                d = np.hstack([data, share[:, None], n_known[:, None]])
            booster = train_booster(d[train], y[train], feat + (["nbr_fraud_share", "nbr_known"] if label_share
                                                                  else []), rounds=rounds, threads=threads,
                                    params={"num_leaves": 31})
            p[test] = booster.predict(d[test], num_threads=1)
        results[label] = scores(y, p)
    results["setup"] = (f"{len(y)} users ({int(y.sum())} fraud), {len(names)} features, stratified {folds}-fold CV "
                        f"(shuffle, seed 42), LightGBM {rounds} rounds, threshold 0.5; graph: symmetrised "
                        f"adjacency, NaN-aware neighbour means + degree; fraud share among neighbours uses "
                        f"training-fold labels only")
    results["anchors_indicative_only"] = SICHUAN_ANCHORS
    return results


def write_metrics(update: dict[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """Merge ``update`` into the metrics card (JSON) beside the model."""
    path = Path(path) if path else METRICS_PATH
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(update)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n")
    return current
