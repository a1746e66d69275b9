"""Regulator reports (CSV and printable HTML) and the CLI around them."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from disposal_helpers import PERSONAL, api_fixtures, check, make_client, wave

db, client = api_fixtures()


def _period() -> dict[str, str]:
    now = datetime.now(UTC)
    hour = timedelta(hours=1)
    return {"tenant": "acme", "from": (now - hour).isoformat(), "to": (now + hour).isoformat()}


def _rows(text: str) -> dict[str, dict[str, str]]:
    return {r["signature"]: r for r in csv.DictReader(io.StringIO(text))}


def test_the_report_counts_volumes_blocks_complaints_and_opt_outs_per_signature(client, db):
    from skyshield.compliance.ledger import ConsentLedger
    from skyshield.config import load_settings
    from skyshield.events import Action, Category, Message, Verdict

    acme = [m | {"tenant": "acme"} for m in wave(4)]
    notice = {"text": "【顺丰】您的快递已到驿站，取件码 4821", "sender": "95338", "recipient": "13800000002",
              "tenant": "acme"}
    check(client, [*acme, notice, PERSONAL])  # PERSONAL is the default tenant's: not in acme's report
    client.post("/v1/reports", json={"reporter": "13800000009", "sender": "17000000001", "text": acme[1]["text"],
                                     "tenant": "acme"})
    settings = load_settings(db)
    ledger = ConsentLedger.from_settings(settings)
    now = datetime.now(UTC)
    ledger.record_opt_out("acme", "顺丰", "13800000002", time=now - timedelta(minutes=5))
    ledger.record_opt_out("acme", "顺丰", "13800000003", time=now - timedelta(minutes=2))
    ledger.close()
    # A marketing send that went out after 13800000003 opted out (the ledger was not consulted): a violation.
    store = client.app.state.skyshield.store
    late = Message("【顺丰】寄件五折，回T退订", "95338", "13800000003", now + timedelta(minutes=1), tenant="acme")
    store.save([(late, Verdict(Action.TAG, Category.PROMOTION, None, 0.9, 4.0, [], "test"))])

    r = client.get("/v1/regulator-report", params=_period() | {"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = _rows(r.text)
    assert set(rows) == {"优选", "速贷", "金服", "易借", "顺丰", "(all)"}
    assert rows["速贷"]["messages"] == "1" and rows["速贷"]["complaints"] == "1"
    total = rows["(all)"]
    categories = ("promotion", "fraud", "illicit", "personal", "notification", "verification")
    assert int(total["block"]) == sum(int(total[f"blocked_{c}"]) for c in categories) >= 1
    assert rows["顺丰"]["messages"] == "2" and rows["顺丰"]["opt_outs"] == "2"
    assert rows["顺丰"]["opt_outs_honoured"] == "1"
    assert 100 <= float(rows["顺丰"]["opt_out_delay_max_s"]) <= 400  # 5 minutes from reply to record
    assert rows["(all)"]["messages"] == "6"

    page = client.get("/v1/regulator-report", params=_period() | {"format": "html"}).text
    assert "@media print" in page and "顺丰" in page and "Opt-outs not honoured" in page
    assert "170****0001" in page  # the reported sender is a top offender, masked


def test_an_empty_or_backwards_period_is_refused(client):
    r = client.get("/v1/regulator-report", params={"tenant": "acme", "from": "2026-02-02", "to": "2026-02-01"})
    assert r.status_code == 422 and "period is empty" in r.json()["error"]["message"]
    r = client.get("/v1/regulator-report", params={"tenant": "acme", "from": "soon", "to": "2026-02-01"})
    assert r.status_code == 422


def test_cli_report_campaigns_and_blocks(tmp_path, monkeypatch, capsys, db):
    from skyshield.cli import main

    with make_client(tmp_path, monkeypatch, db) as client:
        check(client, [m | {"tenant": "acme"} for m in wave(5)])
    assert main(["campaigns", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:3] == ["1", "5", "5"]
    assert main(["block", "campaign", "1", "--reason", "loan wave", "--by", "ops", "--expires", "7d", "--db", db]) == 0
    assert "block 1: campaign" in capsys.readouterr().out
    assert main(["blocks", "--active", "--db", db]) == 0
    assert "active" in capsys.readouterr().out
    out_file = tmp_path / "r.html"
    period = _period()
    assert main(["report", "--tenant", "acme", "--from", period["from"], "--to", period["to"], "--format", "html",
                 "--out", str(out_file), "--db", db]) == 0
    assert "优选" in out_file.read_text(encoding="utf-8")
    assert main(["report", "--tenant", "acme", "--from", "tomorrow", "--to", "x", "--db", db]) == 2
    assert "ISO 8601" in capsys.readouterr().err
