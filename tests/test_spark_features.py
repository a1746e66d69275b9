"""The behaviour features from one shared definition: compiled to Polars and to Spark, both equal to
``behaviour.features.batch_features`` on the same simulated records. The Spark test skips with a message
when pyspark (the optional extra ``spark``) or Java is missing."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import polars as pl
import pytest

from skyshield.behaviour.features import FEATURE_NAMES, PER_WINDOW, batch_features
from skyshield.behaviour.simulate import SimConfig, simulate, write
from skyshield.cli import main
from skyshield.spark.definitions import FEATURES, polars_features


@pytest.fixture(scope="module")
def city():
    return simulate(SimConfig(subscribers=600, days=3, seed=5))


def _assert_same(expected: pl.DataFrame, got: pl.DataFrame) -> None:
    assert got.columns == ["number", *FEATURE_NAMES]
    assert got["number"].to_list() == expected["number"].to_list()
    for name in FEATURE_NAMES:
        a, b = expected[name].to_numpy(), got[name].to_numpy()
        bad = np.flatnonzero(~np.isclose(a, b, rtol=1e-9, atol=1e-9))
        assert bad.size == 0, f"{name}: {bad.size} numbers differ, e.g. {a[bad[:3]]} vs {b[bad[:3]]}"


def test_the_definition_table_covers_every_feature():
    assert tuple(f.name for f in FEATURES) == PER_WINDOW


def test_polars_from_the_shared_definition_equals_the_behaviour_features(city):
    calls, messages, _, _ = city
    expected = batch_features(calls, messages)
    assert expected.height > 500 and expected["out_calls_7d"].sum() > 0
    _assert_same(expected, polars_features(calls, messages))
    # without messages, and at an earlier reference time, they still agree
    at = calls["start"].max() - (calls["start"].max() - calls["start"].min()) / 2
    _assert_same(batch_features(calls, None, at=at), polars_features(calls, None, at=at))


@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None,
                    reason="pyspark is not installed (optional extra: pip install -e '.[spark]')")
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17+ (apt-get install openjdk-17-jre)")
def test_spark_job_writes_the_same_profiles_as_polars(city, tmp_path, capsys):
    calls, messages, labels, attacks = city
    write(tmp_path / "records", calls, messages, labels, attacks)
    code = main(["spark", "--records", str(tmp_path / "records"), "--out", str(tmp_path / "profiles")])
    assert code == 0, capsys.readouterr().err
    assert "number profiles" in capsys.readouterr().out
    from skyshield.spark.job import load_profiles

    _assert_same(batch_features(calls, messages), load_profiles(tmp_path / "profiles"))


def test_spark_refuses_a_folder_without_call_records(tmp_path, capsys):
    (tmp_path / "empty" / "calls").mkdir(parents=True)
    assert main(["spark", "--records", str(tmp_path / "empty"), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "no calls/**/*.parquet" in err or "optional extra" in err
