"""The behaviour features from one shared definition (``behaviour.definitions``): compiled to Spark, equal to
the Polars compilation ``behaviour.features.batch_features`` on the same simulated records. The Spark test
skips with a message when pyspark (the optional extra ``spark``) or Java is missing."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import polars as pl
import pytest

from skyshield.behaviour import definitions
from skyshield.behaviour.features import FEATURE_NAMES, batch_features
from skyshield.behaviour.simulate import SimConfig, simulate, write
from skyshield.cli import main
from skyshield.spark import definitions as spark_definitions


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


def test_spark_compiles_the_one_behaviour_table_not_a_copy():
    assert spark_definitions.FEATURES is definitions.FEATURES
    assert spark_definitions.WINDOWS is definitions.WINDOWS and spark_definitions.FEATURE_NAMES is FEATURE_NAMES


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
