"""The consent ledger: evidence required, pseudonymised at rest, exportable, imports report bad rows, retention."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time

import pytest

from compliance_helpers import open_ledger
from skyshield.compliance.ledger import MIN_RETENTION_S, ConsentError, ConsentLedger


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    with open_ledger(request.param, tmp_path) as led:
        yield led


@pytest.fixture
def sqlite_ledger(tmp_path):
    with open_ledger("sqlite", tmp_path) as led:
        yield led


def test_opt_in_needs_its_evidence(ledger):
    for missing in ("source", "disclosure"):
        kwargs = {"source": "web", "disclosure": "同意接收营销短信"} | {missing: " "}
        with pytest.raises(ConsentError, match=missing):
            ledger.record_opt_in("default", "京东", "13800138000", **kwargs)
    with pytest.raises(ConsentError, match="signature"):
        ledger.record_opt_in("default", "【】", "13800138000", source="web", disclosure="x")
    with pytest.raises(ConsentError, match="future"):
        ledger.record_opt_in("default", "京东", "13800138000", source="web", disclosure="x", time="2099-01-01T00:00Z")
    with pytest.raises(ValueError, match="ISO 8601"):
        ledger.record_opt_in("default", "京东", "13800138000", source="web", disclosure="x", time="yesterday")


def test_numbers_are_stored_only_as_pseudonyms(tmp_path, sqlite_ledger):
    ledger = sqlite_ledger
    ledger.record_opt_in("default", "京东", "+86 138 0013 8000", source="web", disclosure="同意")
    ledger.add_dnd(["13900139000"])
    raw = (tmp_path / "c.db").read_bytes() + (tmp_path / "c.db-wal").read_bytes()
    assert b"13800138000" not in raw and b"13900139000" not in raw
    # the same number written differently is the same recipient
    assert ledger.state("default", ["京东"], "008613800138000").status == "opt_in"
    other_key = ConsentLedger(tmp_path / "c.db", b"x" * 32)
    assert other_key.state("default", ["京东"], "13800138000") is None
    other_key.close()


def test_latest_evidence_wins_even_when_filed_late(ledger):
    newer = ledger.record_opt_in("default", "京东", "13800138000", source="app", disclosure="同意",
                                 time="2026-05-01T00:00:00Z")
    late = ledger.record_opt_in("default", "京东", "13800138000", source="paper", disclosure="同意",
                                time="2026-03-01T00:00:00Z")  # an older paper form imported afterwards
    assert not late.current
    assert ledger.state("default", ["京东"], "13800138000").id == newer.id
    assert len(list(ledger.records())) == 2  # both kept as evidence


def test_export_csv_and_jsonl_keep_every_record_with_evidence(ledger):
    ledger.record_opt_in("t1", "京东", "13800138000", source="web:jd.com/join", disclosure="同意接收京东营销短信",
                         campaign="双11", time="2026-10-01T08:00:00+08:00", evidence={"ip": "203.0.113.9"})
    ledger.record_opt_out("t1", "京东", "13800138000", time="2026-11-01T00:00:00Z", evidence={"keyword": "退订"})
    out = io.StringIO()
    assert ledger.export(out, "csv") == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["status"] for r in rows] == ["opt_in", "opt_out"]
    assert rows[0]["disclosure"] == "同意接收京东营销短信" and rows[0]["campaign"] == "双11"
    assert rows[0]["time"] == "2026-10-01T00:00:00+00:00" and rows[0]["current"] == "False"
    assert json.loads(rows[0]["evidence"]) == {"ip": "203.0.113.9"}
    assert rows[0]["recipient"].startswith("h:")
    out = io.StringIO()
    ledger.export(out, "jsonl", tenant="t1")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[1]["evidence"]["keyword"] == "退订" and lines[1]["current"] is True
    out = io.StringIO()
    assert ledger.export(out, "jsonl", tenant="nobody") == 0


def test_import_reports_bad_rows_by_number_and_keeps_the_rest(ledger):
    text = (
        "recipient,status,signature,time,source,disclosure,campaign\n"
        "13800138000,opt_in,京东,2026-10-01T00:00:00Z,web,同意接收营销短信,双11\n"
        "13800138001,opt_in,京东,2026-10-01T00:00:00Z,web,,双11\n"  # no disclosure
        "13800138002,maybe,京东,,,,\n"
        ",opt_out,京东,,,,\n"
        "13800138003,opt_out,京东,2026-10-02T00:00:00Z,paper,,\n"
        "13800138004,dnd,,,,,\n"
        "13800138005,opt_in,京东,not a time,web,同意,x\n"
        "13800138006,opt_in,京东,2026-10-01T00:00:00Z,web,同意,x,extra\n"
    )
    report = ledger.import_records(text, "csv")
    assert report.imported == 3
    assert [e.split(":")[0] for e in report.errors] == ["row 3", "row 4", "row 5", "row 8", "row 9"]
    assert "disclosure" in report.errors[0] and "maybe" in report.errors[1] and "ISO 8601" in report.errors[3]
    assert ledger.dnd_listed([ledger.pseudonym("13800138004")])
    with pytest.raises(ValueError, match="unknown column"):
        ledger.import_records("recipient,stauts\n1,opt_in\n", "csv")
    jl = ledger.import_records('{"recipient": "13800138007", "status": "opt_out", "signature": "京东"}\n'
                               '[1, 2]\n{"recipient": "1", "status": "opt_in", "colour": "red"}\nnot json\n', "jsonl")
    assert jl.imported == 1 and [e.split(":")[0] for e in jl.errors] == ["row 2", "row 3", "row 4"]


def test_purge_keeps_current_records_and_at_least_five_months(tmp_path, ledger):
    ledger.record_opt_in("default", "京东", "13800138000", source="web", disclosure="同意", time="2026-01-01T00:00Z")
    ledger.record_opt_out("default", "京东", "13800138000", time="2026-02-01T00:00Z")
    with pytest.raises(ConsentError, match="150 days"):
        ledger.purge(30 * 86400)
    assert ledger.purge(MIN_RETENTION_S) == 0  # superseded just now: kept
    assert ledger.purge(MIN_RETENTION_S, now=time.time() + MIN_RETENTION_S + 60) == 1
    remaining = list(ledger.records())
    assert [r.status for r in remaining] == ["opt_out"]


def test_wal_mode(tmp_path, sqlite_ledger):
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
