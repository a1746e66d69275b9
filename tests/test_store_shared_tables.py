"""Several hosts on one PostgreSQL database: the consent ledger, the blocks and their audit log are shared.

Each "host" is its own object with its own connection (as a second machine would have); each test gets a
schema of its own, dropped afterwards, and skips with a message when no PostgreSQL can be reached.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from compliance_helpers import shipped_model
from service_helpers import postgres_schema
from skyshield.compliance.detector import ComplianceDetector
from skyshield.compliance.ledger import OPT_OUT, ConsentError, ConsentLedger
from skyshield.config import load_settings
from skyshield.disposal.blocks import BlocklistDetector
from skyshield.disposal.service import Disposal
from skyshield.engine import Engine
from skyshield.events import Action, Category, Message, Verdict
from skyshield.policy import Policy
from skyshield.store import open_store
from skyshield.text.extract import analyse_batch

pytestmark = pytest.mark.service

T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
POLICY = Policy.load()


@pytest.fixture
def pg_settings(tmp_path):
    with postgres_schema() as url:
        yield load_settings(url, key_file=tmp_path / "shared.key")


@pytest.fixture
def hosts(pg_settings):
    """Two ledgers on the same database, as two hosts would open them (``SKYSHIELD_DB=postgresql://...``)."""
    a, b = ConsentLedger.from_settings(pg_settings), ConsentLedger.from_settings(pg_settings)
    yield a, b
    a.close()
    b.close()


def test_consent_and_opt_out_recorded_on_one_host_are_seen_on_another(hosts, pg_settings):
    a, b = hosts
    consent = a.record_opt_in("acme", "【京东】", "13800138000", source="web:jd.com/join",
                              disclosure="同意接收营销短信", time=T0, evidence={"ip": "203.0.113.9"})
    seen = b.state("acme", ["京东"], "+86 138 0013 8000")
    assert (seen.id, seen.status, seen.evidence) == (consent.id, "opt_in", {"ip": "203.0.113.9"})

    record, new = b.record_opt_out("acme", "京东", "008613800138000", time=T0 + timedelta(days=3))
    assert new
    assert a.state("acme", ["京东"], "13800138000").id == record.id
    _, again = a.record_opt_out("acme", "京东", "13800138000", time=T0 + timedelta(days=4))
    assert not again  # host A knows host B already confirmed this opt-out: no second confirmation
    with pytest.raises(ConsentError, match="opted out"):  # the old consent re-sent to host A does not undo it
        a.record_opt_in("acme", "京东", "13800138000", source="web:jd.com/join", disclosure="同意接收营销短信",
                        time=T0)

    # The engine of a third worker, its compliance detector built from the same settings, refuses the send.
    detector = ComplianceDetector(POLICY, settings=pg_settings)
    assert detector.ledger.state("acme", ["京东"], "13800138000").status == OPT_OUT
    engine = Engine(POLICY, analyse_batch, shipped_model(), [detector])
    promo = "【京东】双11大促，全场商品5折起，爆款手机直降1000元，点击 jd.com/sale 立即抢购，回T退订"
    [verdict] = engine.check([Message(text=promo, sender="10690001", recipient="13800138000", tenant="acme")])
    assert "OPTED_OUT" in [s.name for s in verdict.signals] and verdict.action is Action.BLOCK

    a.add_dnd(["13900139000"])
    assert b.dnd_listed([b.pseudonym("+86 139 0013 9000")]) == {b.pseudonym("13900139000")}
    now = datetime.now(UTC).timestamp()
    a.record_sends([("acme", "淘宝", "10690002", a.pseudonym("13700137000"), "promotion", now - 5)])
    assert b.last_signature("acme", "10690002", "13700137000") == "淘宝"
    assert [r.status for r in b.records("acme")] == ["opt_in", "opt_out", "opt_out"]


def test_concurrent_writers_on_two_hosts_leave_one_current_record(hosts):
    """Writers on both hosts interleave on one recipient: exactly one record stays current, the newest."""
    a, b = hosts
    errors: list[BaseException] = []

    def writer(ledger: ConsentLedger, offset: int) -> None:
        try:
            for i in range(15):
                when = T0 + timedelta(minutes=4 * i + offset)
                if (i + offset) % 2:
                    ledger.record_opt_out("acme", "京东", "13800138000", time=when)
                else:
                    try:
                        ledger.record_opt_in("acme", "京东", "13800138000", source="app", disclosure="同意",
                                             time=when)
                    except ConsentError:  # a newer opt-out got there first: refused, as it must be
                        pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(led, k)) for k, led in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    records = list(a.records("acme"))
    current = [r for r in records if r.current]
    assert len(current) == 1
    assert current[0].time == max(r.time for r in records)


LOAN = "【速贷】尊敬的客户，您的额度已提升至{amount}元，点击 http://loan{i}.cn/a 立即领取"


def test_a_write_waits_while_another_host_writes_the_same_recipient(hosts):
    """Host A holds the recipient's write lock (a transaction in flight); host B's opt-out waits for it, so
    B reads A's record before deciding (READ COMMITTED alone would let both insert a current record)."""
    a, b = hosts
    opted_out: list[bool] = []
    with a.db.transaction(a.lock_name("acme", a.pseudonym("13800138000"), "京东")):
        writer = threading.Thread(target=lambda: opted_out.append(b.record_opt_out("acme", "京东", "13800138000")[1]))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive()  # blocked on host A's lock
    writer.join(10)
    assert opted_out == [True]
    assert b.state("acme", ["京东"], "13800138000").status == OPT_OUT


def _message(sender: str, text: str = LOAN.format(amount=50000, i=1)) -> Message:
    return Message(text=text, sender=sender, recipient="13800000001", time=datetime.now(UTC), tenant="acme")


def _blocklisted(engine: Engine, message: Message) -> list[dict]:
    [verdict] = engine.check([message])
    return [s.evidence for s in verdict.signals if s.name == "BLOCKLISTED"]


def test_a_block_made_on_one_host_blocks_on_another_until_lifted(pg_settings):
    store = open_store(pg_settings)
    disposal = Disposal(store, pg_settings.hmac_key(), POLICY)  # the operator console's host
    # A firewall host: its own engine and blocklist detector, built from the same settings.
    detector = BlocklistDetector(POLICY, settings=pg_settings)
    engine = Engine(POLICY, analyse_batch, shipped_model(), [detector])
    assert _blocklisted(engine, _message("17000000001")) == []

    block = disposal.blocks.create("number", "+86 170 0000 0001", reason="fraud reports", decided_by="alice",
                                   expires="30d")
    sig_block = disposal.blocks.create("signature", "【速贷】", reason="loan spam", decided_by="alice")
    detector.invalidate()  # another host's change: picked up on the next refresh; do not wait 2 s here
    hits = _blocklisted(engine, _message("17000000001"))
    assert sorted(h["block_id"] for h in hits) == sorted([block["id"], sig_block["id"]])
    assert {h["matched_on"] for h in hits} == {"sender", "signature"}
    assert [h["block_id"] for h in _blocklisted(engine, _message("17000000002"))] == [sig_block["id"]]

    appeal = disposal.blocks.appeal(block["id"], appellant="17000000001 owner", statement="number reassigned")
    disposal.blocks.decide_appeal(appeal["id"], decision="lift", actor="bob", note="reassigned in October")
    disposal.blocks.lift(sig_block["id"], actor="bob", note="campaign over")
    detector.invalidate()
    assert _blocklisted(engine, _message("17000000001")) == []
    assert [a["action"] for a in disposal.blocks.audit()][::-1] == ["create", "create", "appeal", "appeal_lifted",
                                                                   "lift"]
    disposal.close()
    store.close()


def test_audit_logs_stay_append_only_on_postgresql(pg_settings):
    import psycopg

    from skyshield.security.audit import record_audit, verify

    store = open_store(pg_settings)
    disposal = Disposal(store, pg_settings.hmac_key(), POLICY)
    disposal.blocks.create("link_domain", "http://loan1.cn/a", reason="phishing", decided_by="alice")
    record_audit("console:alice", "block.create", "link_domain:loan1.cn", {"reason": "phishing"}, store=store)
    with psycopg.connect(pg_settings.db_url, autocommit=True) as conn:
        for table in ("disposal_audit", "audit_log"):
            for statement in (f"UPDATE {table} SET actor = 'mallory'", f"DELETE FROM {table}",
                              f"TRUNCATE {table}"):
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    conn.execute(statement)
        assert conn.execute("SELECT actor FROM disposal_audit").fetchall() == [("alice",)]
    assert verify(store).ok
    disposal.close()
    store.close()


def test_reports_campaigns_and_review_work_on_postgresql(pg_settings):
    store = open_store(pg_settings)
    disposal = Disposal(store, pg_settings.hmac_key(), POLICY)
    texts = [LOAN.format(amount=50000 + 1000 * i, i=i) for i in range(4)]
    items = [(Message(text=t, sender=f"1700000{i:04d}", recipient=f"1380013{i:04d}", tenant="acme",
                      external_id=f"m{i}"),
              Verdict(action=Action.HOLD, category=Category.FRAUD, subtype=None, unwanted=0.7, score=5.0, signals=[],
                      model_version="test")) for i, t in enumerate(texts)]
    ids = store.save(items)
    done = disposal.refresh()
    assert done == {"verdicts": 4, "queued": 4}
    [campaign] = disposal.campaigns.top(min_size=2)
    assert campaign["size"] == 4
    report = disposal.reports.submit(reporter="13800130002", sender="17000000002", text=texts[2], tenant="acme")
    assert report["verdict_id"] == ids[2]  # tied to the stored verdict the reporter received
    assert report["campaign_id"] == campaign["id"]
    item = disposal.review.open_items(limit=1)[0]
    labelled = disposal.review.label(item["id"], "fraud", reviewer="carol")
    assert labelled["status"] == "labelled"
    with pytest.raises(Exception, match="already labelled"):
        disposal.review.label(item["id"], "fraud", reviewer="carol")
    assert disposal.review.counts() == {"labelled": 1, "open": 3}
    disposal.close()
    store.close()


def test_reputation_lists_imported_once_are_loaded_by_every_host(pg_settings, tmp_path, monkeypatch):
    from skyshield.behaviour.lists import ReputationLists, import_file

    listed = tmp_path / "reported.csv"
    listed.write_text("number,date\n+1 415 555 0100,2026-10-01\n4155550100,2026-10-02\n+86 170 0000 0001,x\nabc,y\n")
    report = import_file(listed, "ftc-dnc", pg_settings.db_url)
    assert (report.numbers, report.rejected) == (2, 1)
    monkeypatch.setenv("SKYSHIELD_DB", pg_settings.db_url)
    monkeypatch.setenv("SKYSHIELD_KEY_FILE", str(pg_settings.key_file))
    lists = ReputationLists.load()  # another host: the lists come from SKYSHIELD_DB
    assert lists.lookup("(415) 555-0100") == {"ftc-dnc": 2}
    assert lists.lookup("17000000001") == {"ftc-dnc": 1}
    import_file(listed, "ftc-dnc", pg_settings.db_url)  # imported again: replaced, not doubled
    assert ReputationLists.load().lookup("4155550100") == {"ftc-dnc": 2}


def test_a_ledger_reconnects_after_the_server_drops_its_connection(hosts, pg_settings):
    import time

    import psycopg

    a, _ = hosts
    a.record_opt_in("acme", "京东", "13800138000", source="web", disclosure="同意", time=T0)
    with psycopg.connect(pg_settings.db_url, autocommit=True) as admin:
        pid = a.db.conn.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(100):  # termination is asynchronous: wait until the server process is gone
            if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                break
            time.sleep(0.05)
    with pytest.raises(psycopg.OperationalError):  # the call in flight fails (nothing half-written) ...
        a.record_opt_out("acme", "京东", "13800138000", time=T0 + timedelta(days=1))
    record, new = a.record_opt_out("acme", "京东", "13800138000", time=T0 + timedelta(days=1))  # ... the next works
    assert new and a.state("acme", ["京东"], "13800138000").id == record.id
