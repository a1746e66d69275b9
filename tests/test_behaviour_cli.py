"""The behaviour commands end to end: simulate, features, lists import, profile, and bad input."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from skyshield.cli import main


def test_simulate_features_profile(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sim"
    assert main(["simulate", "--subscribers", "1000", "--days", "1", "--seed", "3", "--out", str(out)]) == 0
    assert "calls" in capsys.readouterr().out
    assert main(["behaviour-features", "--calls", str(out), "--out", str(tmp_path / "f.parquet")]) == 0
    features = pl.read_parquet(tmp_path / "f.parquet")
    labels = pl.read_parquet(out / "labels.parquet")
    assert features.height > 1000 and "gap_cv_24h" in features.columns
    simbox = labels.filter(pl.col("kind") == "simbox")["number"][0]
    capsys.readouterr()
    assert main(["profile", simbox, "--calls", str(out)]) == 0
    text = capsys.readouterr().out
    assert '"simbox"' in text and "numbers_on_device" in text and "fraud_probability" in text
    assert main(["profile", "19999999999", "--calls", str(out)]) == 1


def test_lists_import_command_and_bad_input(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SKYSHIELD_DB", f"sqlite:///{tmp_path / 'x.db'}")
    src = tmp_path / "l.csv"
    src.write_text("number\n2025550123\nabc\n")
    assert main(["lists", "import", str(src), "--source", "mine"]) == 0
    assert "imported 1 distinct numbers from 2 rows into list 'mine'" in capsys.readouterr().out
    assert (tmp_path / "x.db").exists()
    assert main(["lists", "import", str(tmp_path / "absent.csv"), "--source", "mine"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["simulate", "--subscribers", "1", "--out", str(tmp_path / "s")]) == 2
