"""Warm start: the per-number profiles the batch jobs write are loaded by the online engine at start
(``[detectors.behaviour] profiles``), so a known fraud number is flagged at its first call after a restart."""

from __future__ import annotations

import importlib.util
import shutil
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from skyshield.behaviour.calls import CallScreener, call_decision
from skyshield.behaviour.features import batch_features
from skyshield.behaviour.lists import ReputationLists
from skyshield.behaviour.profiles import ProfileError
from skyshield.behaviour.service import BehaviourService
from skyshield.behaviour.simulate import SimConfig, simulate, write
from skyshield.cli import main
from skyshield.events import Call
from skyshield.policy import Policy


@pytest.fixture(scope="module")
def city():
    return simulate(SimConfig(subscribers=600, days=2, seed=5))


@pytest.fixture(scope="module")
def profiles_file(city, tmp_path_factory) -> Path:
    calls, messages, _, _ = city
    path = tmp_path_factory.mktemp("profiles") / "profiles.parquet"
    batch_features(calls, messages).write_parquet(path)
    return path


def _screener(tmp_path: Path, profiles: Path | str = "") -> CallScreener:
    policy = Policy.from_text(f'[detectors.behaviour]\nlists_db = "{tmp_path / "none.db"}"\nprofiles = "{profiles}"\n')
    return CallScreener(policy, BehaviourService(policy, lists=ReputationLists({})))


def _busiest(city, kind: str) -> str:
    calls, _, labels, _ = city
    numbers = labels.filter(pl.col("kind") == kind)["number"]
    counts = calls.filter(pl.col("caller").is_in(numbers.implode())).group_by("caller").len().sort("len")
    return counts["caller"][-1]


def _first_call_after_restart(city, screener: CallScreener, number: str):
    calls = city[0]
    return screener.screen(Call(number, "13999999999", calls["start"].max() + timedelta(hours=1)))


def test_known_fraud_number_is_flagged_at_its_first_call_only_with_profiles(city, profiles_file, tmp_path) -> None:
    fraud = _busiest(city, "fraud")
    cold = _first_call_after_restart(city, _screener(tmp_path), fraud)
    assert call_decision(cold) == "allow" and not cold.signals  # a cold engine has seen one call: nothing to say
    warm_screener = _screener(tmp_path, profiles_file)
    warm = _first_call_after_restart(city, warm_screener, fraud)
    scores = [s for s in warm.signals if s.name == "SENDER_FRAUD_SCORE"]
    assert scores and scores[0].score >= 0.5 and call_decision(warm) != "allow"
    profile = warm_screener.service.profile(fraud)
    assert profile["stored_profile"]["source"] == str(profiles_file)
    assert profile["stored_profile"]["written"] and profile["scored_from"] == "stored profile"
    assert profile["fraud_probability"] >= 0.5


def test_ordinary_subscribers_stay_unflagged_and_are_not_new(city, profiles_file, tmp_path) -> None:
    screener = _screener(tmp_path, profiles_file)
    labels = city[2]
    ordinary = labels.filter(pl.col("kind") == "ordinary")["number"].head(150).to_list()
    verdicts = [_first_call_after_restart(city, screener, n) for n in ordinary]
    flagged = [n for n, v in zip(ordinary, verdicts, strict=True) if call_decision(v) != "allow"]
    assert not flagged
    busy = _busiest(city, "ordinary")
    _first_call_after_restart(city, screener, busy)
    stored = screener.service.profile(busy)["stored_profile"]
    # its age comes from the profile, not from this (first) call after the restart
    assert stored["maturity_days"] > 0.5
    assert screener.service.profile(busy)["features"]["maturity_days"] >= stored["maturity_days"] - 1e-3  # rounded


def test_number_without_a_profile_has_none(profiles_file, tmp_path) -> None:
    svc = _screener(tmp_path, profiles_file).service
    assert svc.profile("19999999999")["stored_profile"] is None
    assert len(svc.profiles) > 600


@pytest.mark.parametrize("bad", ["missing", "empty_dir", "not_parquet", "wrong_columns"])
def test_bad_profiles_file_is_an_error_at_start_naming_it(bad: str, tmp_path: Path) -> None:
    path = tmp_path / f"{bad}.parquet"
    if bad == "empty_dir":
        path.mkdir()
    elif bad == "not_parquet":
        path.write_text("number,out_calls_7d\n13800000001,3\n")
    elif bad == "wrong_columns":
        pl.DataFrame({"number": ["13800000001"], "calls": [3.0]}).write_parquet(path)
    with pytest.raises(ProfileError, match=str(path)):
        _screener(tmp_path, path)


def test_cli_says_bad_profiles_file_without_traceback(tmp_path: Path, capsys) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[detectors.behaviour]\nlists_db = "{tmp_path / "none.db"}"\n'
                      f'profiles = "{tmp_path / "nope.parquet"}"\n')
    (tmp_path / "calls.csv").write_text("caller,callee,start\n13800000001,13800000002,2026-01-05 10:00:00\n")
    code = main(["--policy", str(policy), "profile", "13800000001", "--calls", str(tmp_path / "calls.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.parquet" in err and "Traceback" not in err


@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None,
                    reason="pyspark is not installed (optional extra: pip install -e '.[spark]')")
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17+ (apt-get install openjdk-17-jre)")
def test_spark_job_output_loads_the_same_way(city, profiles_file, tmp_path) -> None:
    from skyshield.spark.job import run

    calls, messages, labels, attacks = city
    write(tmp_path / "records", calls, messages, labels, attacks)
    assert run(tmp_path / "records", tmp_path / "spark-profiles") > 600
    spark = _screener(tmp_path, tmp_path / "spark-profiles")
    polars = _screener(tmp_path, profiles_file)
    assert spark.service.profiles.job.startswith("spark")
    assert len(spark.service.profiles) == len(polars.service.profiles)
    fraud = _busiest(city, "fraud")
    verdict = _first_call_after_restart(city, spark, fraud)
    assert "SENDER_FRAUD_SCORE" in {s.name for s in verdict.signals}
    assert spark.service.profile(fraud)["fraud_probability"] == pytest.approx(
        polars.service.profile(fraud)["fraud_probability"], abs=1e-6)
