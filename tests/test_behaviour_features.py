"""Simulator output and the one feature definition: batch (Polars) and streaming agree."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from skyshield.behaviour.definitions import FEATURES, PER_WINDOW
from skyshield.behaviour.features import FEATURE_NAMES, batch_features, prepare_calls, to_seconds
from skyshield.behaviour.records import read_calls
from skyshield.behaviour.simulate import SimConfig, simulate, write
from skyshield.behaviour.stream import COMPUTED, StreamFeatures


@pytest.fixture(scope="module")
def city():
    return simulate(SimConfig(subscribers=2000, days=2, seed=5))


def _replay(calls: pl.DataFrame, messages: pl.DataFrame) -> StreamFeatures:
    s = StreamFeatures()
    ev = prepare_calls(calls).collect()
    cs = list(ev.select("caller", "callee", "ts", "duration", "answered", "cell", "device").iter_rows())
    ms = list(messages.with_columns(to_seconds("time").alias("ts")).select("sender", "recipient", "ts").iter_rows())
    i = j = 0
    while i < len(cs) or j < len(ms):
        if j >= len(ms) or (i < len(cs) and cs[i][2] <= ms[j][2]):
            s.add_call(*cs[i])
            i += 1
        else:
            s.add_message(*ms[j])
            j += 1
    return s


def test_batch_and_streaming_agree_on_simulator_output(city) -> None:
    calls, messages, _, _ = city
    batch = batch_features(calls, messages)
    stream = _replay(calls, messages)
    x = batch.select(FEATURE_NAMES).to_numpy()
    y = np.array([stream.vector(n) for n in batch["number"]])
    assert batch.height > 2000
    mismatched = np.argwhere(~np.isclose(x, y, rtol=1e-9, atol=1e-9))
    assert not len(mismatched), [(batch["number"][r], FEATURE_NAMES[c], x[r, c], y[r, c]) for r, c in mismatched[:5]]
    # and at an earlier reference time too (windows cut in the middle of the data)
    at = datetime(2026, 1, 5, 15, 30)
    early = batch_features(calls, messages, at=at)
    t = (at - datetime(1970, 1, 1)).total_seconds()
    y2 = np.array([stream.vector(n, t) for n in early["number"]])
    # the stream has moved past ``at`` and dropped nothing it needs (7 d window), so values must still agree
    assert np.allclose(early.select(FEATURE_NAMES).to_numpy(), y2, rtol=1e-9, atol=1e-9)


def test_calls_alone_agree_with_the_stream_mid_way(city) -> None:
    calls, _, _, _ = city
    at = datetime(2026, 1, 5, 23, 59)
    batch = batch_features(calls, None, at=at)
    stream = _replay(calls, calls.clear().select("caller", "callee", pl.col("start").alias("time"))
                     .rename({"caller": "sender", "callee": "recipient"}))
    t = (at - datetime(1970, 1, 1)).total_seconds()
    y = np.array([stream.vector(n, t) for n in batch["number"]])
    assert batch.height > 1000 and batch["msgs_sent_7d"].sum() == 0
    assert np.allclose(batch.select(FEATURE_NAMES).to_numpy(), y, rtol=1e-9, atol=1e-9)


def test_every_engine_reads_the_one_feature_table() -> None:
    assert PER_WINDOW == tuple(f.name for f in FEATURES)
    assert set(COMPUTED) == set(PER_WINDOW), "the stream needs a formula for every feature of the table"
    assert len(FEATURE_NAMES) == 3 * len(PER_WINDOW) + 1


def test_feature_values_on_a_hand_made_example() -> None:
    t0 = datetime(2026, 1, 1, 2, 0)
    calls = pl.DataFrame({
        "caller": ["A", "A", "A", "A", "B"],
        "callee": ["B", "C", "B", "D", "A"],
        "start": [t0, datetime(2026, 1, 1, 2, 10), datetime(2026, 1, 1, 9, 0), datetime(2026, 1, 1, 9, 20),
                  datetime(2026, 1, 1, 9, 30)],
        "duration": [60.0, 0.0, 120.0, 30.0, 10.0],
        "answered": [True, False, True, True, True],
        "cell": ["x", "x", "y", None, "z"],
    })
    f = batch_features(calls, at=datetime(2026, 1, 1, 9, 30)).filter(pl.col("number") == "A").row(0, named=True)
    assert f["out_calls_24h"] == 4 and f["in_calls_24h"] == 1 and f["distinct_callees_24h"] == 3
    assert f["answer_rate_24h"] == 0.75
    assert f["dur_p50_24h"] == 60.0
    assert f["night_share_24h"] == 0.5  # 02:00 and 02:10
    assert f["new_callee_share_24h"] == 0.75  # the second call to B is not new
    assert f["out_in_ratio_24h"] == 2.0
    assert f["distinct_cells_24h"] == 2
    assert f["out_calls_1h"] == 2 and f["dur_p90_1h"] == pytest.approx(111.0)
    gaps = np.array([600.0, 24600.0, 1200.0])
    assert f["gap_cv_24h"] == pytest.approx(gaps.std() / gaps.mean())
    assert f["maturity_days"] == pytest.approx(7.5 / 24)


def test_simulator_writes_day_partitions_with_ground_truth(city, tmp_path: Path) -> None:
    calls, messages, labels, attacks = city
    counts = write(tmp_path, calls, messages, labels, attacks)
    assert sorted(p.name for p in (tmp_path / "calls").iterdir()) == ["day=2026-01-05", "day=2026-01-06"]
    back = read_calls(tmp_path / "calls")
    assert back.frame.height == counts["calls"] and not back.rejects
    kinds = set(labels["kind"])
    assert {"ordinary", "fraud", "simbox", "telemarketer", "courier", "business", "website"} <= kinds
    assert attacks.height >= 1 and (tmp_path / "labels.parquet").exists()
    # replaced fraud numbers point to the number they replaced
    fraud = labels.filter(pl.col("kind") == "fraud")
    assert fraud["predecessor"].drop_nulls().is_in(fraud["number"].implode()).all()


def test_simulated_behaviours_differ_as_documented(city) -> None:
    calls, messages, labels, _ = city
    f = batch_features(calls, messages).join(labels.select("number", "kind"), on="number")
    med = f.group_by("kind").agg(pl.col("distinct_callees_24h", "answer_rate_24h", "in_calls_24h",
                                        "distinct_cells_24h").median())
    m = {r["kind"]: r for r in med.iter_rows(named=True)}
    assert m["fraud"]["distinct_callees_24h"] > 5 * m["ordinary"]["distinct_callees_24h"]
    assert m["fraud"]["answer_rate_24h"] < m["ordinary"]["answer_rate_24h"]
    assert m["simbox"]["in_calls_24h"] == 0 and m["simbox"]["distinct_cells_24h"] == 1
    assert m["courier"]["answer_rate_24h"] > m["fraud"]["answer_rate_24h"]


def test_stream_forgets_idle_numbers() -> None:
    s = StreamFeatures()
    s.add_call("A", "B", 0.0)
    s.add_call("C", "D", 8 * 86_400.0)
    assert s.prune(8 * 86_400.0) == 2  # A and B: nothing for 8 days
    assert set(s.numbers) == {"C", "D"} and s.features("A")["out_calls_7d"] == 0.0
