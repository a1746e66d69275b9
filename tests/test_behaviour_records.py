"""Ingest of call and message records: good rows kept, bad rows reported with row number and reason."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from skyshield.behaviour.records import read_calls, read_messages

CALLS_CSV = """caller,callee,start,duration,answered,direction,cell
13800000001,13800000002,2026-01-01T10:00:00,30,1,out,c1
13800000001,,2026-01-01T10:01:00,30,1,out,c1
13800000001,13800000003,notatime,30,yes,out,c1
13800000001,13800000003,2026-01-01 10:02:00,-5,no,out,c1
13800000001,13800000003,1767261720,abc,maybe,sideways,c1
13800000001,13800000004,1767261780,,,,
"""


def test_bad_call_rows_are_reported_and_good_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    path.write_text(CALLS_CSV)
    result = read_calls(path)
    assert result.frame["callee"].to_list() == ["13800000002", "13800000004"]
    reasons = {r.row: r.reason for r in result.rejects}
    assert set(reasons) == {2, 3, 4, 5}
    assert "callee is empty" in reasons[2]
    assert "start is not a valid time" in reasons[3] and "notatime" in reasons[3]
    assert "duration < 0" in reasons[4]
    assert "duration" in reasons[5] and "answered" in reasons[5] and "direction" in reasons[5]
    # defaults for optional columns left empty; epoch seconds accepted as a time
    last = result.frame.row(1, named=True)
    assert last["duration"] == 0.0 and last["answered"] is False and last["direction"] == "out"
    assert str(last["start"]) == "2026-01-01 10:03:00"


def test_parquet_and_messages(tmp_path: Path) -> None:
    frame = pl.DataFrame({"sender": ["10690001", "", "10690002"], "recipient": ["13800000001"] * 3,
                          "time": ["2026-01-01T10:00:00", "2026-01-01T10:00:01", "2026-01-01T10:00:02"],
                          "is_code": [True, True, False]})
    frame.write_parquet(tmp_path / "m.parquet")
    result = read_messages(tmp_path / "m.parquet")
    assert result.frame["sender"].to_list() == ["10690001", "10690002"]
    assert [(r.row, r.reason) for r in result.rejects] == [(2, "sender is empty")]
    assert result.frame["is_code"].to_list() == [True, False]


def test_missing_column_and_unknown_type_are_errors(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("caller,start\n1,2026-01-01T00:00:00\n")
    with pytest.raises(ValueError, match="missing required column"):
        read_calls(tmp_path / "c.csv")
    (tmp_path / "c.xls").write_text("x")
    with pytest.raises(ValueError, match="unknown record file type"):
        read_calls(tmp_path / "c.xls")
    with pytest.raises(FileNotFoundError):
        read_calls(tmp_path / "absent.csv")


def test_unreadable_files_give_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="cannot read as CSV: empty CSV"):
        read_calls(tmp_path / "empty.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="cannot read as Parquet"):
        read_calls(tmp_path / "broken.parquet")


def test_optional_columns_may_be_absent(tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    path.write_text("caller,callee,start\n13800000001,13900000002,2026-11-23 10:00:00\n", encoding="utf-8")
    result = read_calls(path)
    assert result.rejects == []
    assert result.frame.height == 1 and result.frame["caller"][0] == "13800000001"
