"""Privacy: phone numbers masked in logs, message text deleted after the retention period (verdicts kept),
and the append-only, hash-chained audit log."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest

from skyshield.config import load_settings
from skyshield.events import Action, Category, Message, Signal, Verdict, utcnow
from skyshield.policy import Policy
from skyshield.security.audit import entries, record_audit, record_policy_if_changed, verify
from skyshield.security.logmask import install_log_masking, mask_numbers, remove_log_masking
from skyshield.security.retention import purge_text, retention_seconds
from skyshield.store import open_store


@pytest.fixture
def store(tmp_path):
    with open_store(load_settings(f"sqlite:///{tmp_path / 'p.db'}")) as s:
        yield s


def _verdict() -> Verdict:
    return Verdict(Action.FOLD, Category.FRAUD, "authority", 0.9, 16.0,
                   [Signal("MODEL_FRAUD", 0.9, {"why": "model"}, 14.4)], "test-model", {"fraud": 0.9})


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("sender 13800138000 sent", "sender 138****8000 sent"),
        ("to +86 138-0013-8000.", "to +86 138****8000."),
        ("call 008613800138000", "call 008****8000"),
        ("landline 010-12345678", "landline 010****5678"),
        ("short code 95588 and port 8080", "short code 95588 and port 8080"),
        ("took 0.12345678 s from 127.0.0.1:8080", "took 0.12345678 s from 127.0.0.1:8080"),
    ],
)
def test_phone_numbers_are_masked_in_text(text, masked):
    assert mask_numbers(text) == masked


def test_log_records_are_masked_once_installed(caplog):
    log = logging.getLogger("skyshield.test_privacy")
    install_log_masking()
    try:
        with caplog.at_level(logging.INFO, logger="skyshield.test_privacy"):
            log.info("message from %s to %s", "13800138000", "13900139000")
    finally:
        remove_log_masking()
    [line] = [r.getMessage() for r in caplog.records]
    assert line == "message from 138****8000 to 139****9000"
    assert "13800138000" not in caplog.text


def test_purge_deletes_old_text_but_keeps_verdicts_and_signals(store):
    old = Message("您好，这里是市公安局，请配合调查", sender="13800138000")
    [old_id] = store.save([(old, _verdict())])
    keep = retention_seconds(Policy.load())
    assert keep == 90 * 86400

    # 89 days later nothing is old enough; 91 days later the first message's text goes
    assert purge_text(store, keep, now=utcnow() + timedelta(days=89)) == 0
    assert store.get(old_id).text == old.text
    assert purge_text(store, keep, now=utcnow() + timedelta(days=91)) == 1
    [recent_id] = store.save([(Message("新消息"), _verdict())])
    assert purge_text(store, keep) == 0

    purged = store.get(old_id)
    assert purged.text is None
    assert purged.verdict.action is Action.FOLD and [s.name for s in purged.verdict.signals] == ["MODEL_FRAUD"]
    assert purged.verdict.signals[0].evidence == {"why": "model"} and purged.sender.startswith("h:")
    assert store.get(recent_id).text == "新消息"


def test_purge_empties_the_pdus_of_held_messages_that_are_done(store):
    held_mod = pytest.importorskip("skyshield.disposal.held", reason="SMPP hold queue not installed")
    book = held_mod.HeldMessages(store)
    part = b"\x00\x00\x00\x10" + b"x" * 12  # a 16-octet "PDU": what matters is that it is kept, then emptied
    msg = Message("您好，这里是市公安局，请配合调查", sender="13800138000", tenant="acme")
    forwarded = book.keep(msg, _verdict(), [(part, "m1", 1)], wants_receipt=True)
    waiting = book.keep(msg, _verdict(), [(part, "m2", 1)], wants_receipt=True)
    refused = book.keep(msg, _verdict(), [(part, "m3", 0)], wants_receipt=False)
    with book.db.transaction() as db:
        db.execute("UPDATE smpp_held SET status = 'released' WHERE id = ?", (forwarded,))
        db.execute("UPDATE smpp_held SET status = 'rejected' WHERE id = ?", (refused,))
    (claimed,) = book.claim("w1", ["acme"], [])
    book.finish(claimed.id, "forwarded", ["up1"])

    def pdus() -> dict[int, bytes]:
        return {r["id"]: bytes(r["pdus"]) for r in book.db.rows("SELECT id, pdus FROM smpp_held")}

    keep = retention_seconds(Policy.load())
    purge_text(store, keep, now=utcnow() + timedelta(days=89))
    assert pdus() == {forwarded: part, waiting: part, refused: part}
    purge_text(store, keep, now=utcnow() + timedelta(days=91))
    # Still held for review: kept; forwarded, or rejected with no receipt owed: the text is gone.
    assert pdus() == {forwarded: b"", waiting: part, refused: b""}
    book.close()


def test_empty_retention_keeps_text_forever():
    assert retention_seconds(Policy.from_text('[privacy]\nretain_text = ""\n')) is None


def test_audit_log_chains_entries_and_detects_edits(store, tmp_path):
    record_audit("console:alice", "block.create", "number:h:ab12", {"reason": "fraud reports"}, store=store)
    record_audit("console:bob", "appeal.accept", "number:h:ab12", {"note": "申诉通过"}, store=store)
    third = record_audit("system", "label.add", "verdict:7", None, store=store)
    got = entries(store)
    assert [e.action for e in got] == ["block.create", "appeal.accept", "label.add"]
    assert got[1].prev_hash == got[0].hash and got[2].hash == third.hash
    assert verify(store).ok and verify(store).entries == 3

    conn = sqlite3.connect(tmp_path / "p.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit_log WHERE id = 2")
    # someone with the file drops the guard and edits a row: the chain names it
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET details = '{\"note\":\"拒绝\"}' WHERE id = 2")
    conn.commit()
    check = verify(store)
    assert not check.ok and check.broken_id == 2 and "edited" in check.problem

    env = {**os.environ, "SKYSHIELD_DB": f"sqlite:///{tmp_path / 'p.db'}"}
    env.pop("SKYSHIELD_KEY_FILE", None)
    r = subprocess.run([sys.executable, "-m", "skyshield.cli", "audit-log", "verify"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "BROKEN at entry 2" in r.stdout


def test_a_deleted_row_breaks_the_chain(store, tmp_path):
    for n in range(3):
        record_audit("system", "policy.change", f"p{n}", {"n": n}, store=store)
    conn = sqlite3.connect(tmp_path / "p.db")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE id = 2")
    conn.commit()
    check = verify(store)
    assert not check.ok and check.broken_id == 3


def test_policy_changes_are_audited_once_per_change(store):
    assert record_policy_if_changed(store, Policy.load()) is not None
    assert record_policy_if_changed(store, Policy.load()) is None, "the same policy again is not a change"
    changed = record_policy_if_changed(store, Policy.from_text("[actions]\nblock = 14.0\n"))
    assert changed is not None and changed.details["previous_sha256"]
    assert [e.action for e in entries(store)] == ["policy.change", "policy.change"]


def test_record_audit_refuses_an_empty_actor(store):
    with pytest.raises(ValueError, match="actor"):
        record_audit("", "x", "y", store=store)


def test_the_server_purges_old_text_when_it_starts(tmp_path):
    import time

    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app
    from skyshield.assembly import build_engine

    settings = load_settings(f"sqlite:///{tmp_path / 'p.db'}")
    with open_store(settings) as s:
        [old_id, new_id] = s.save([(Message("旧消息 13800138000"), _verdict()), (Message("新消息"), _verdict())])
    conn = sqlite3.connect(tmp_path / "p.db")
    conn.execute("UPDATE verdicts SET stored_at = '2020-01-01T00:00:00.000000+00:00' WHERE id = ?", (old_id,))
    conn.commit()
    policy = Policy.load()
    with TestClient(create_app(policy, settings, engine=build_engine(policy, settings))) as client:
        store = client.app.state.skyshield.store
        deadline = time.monotonic() + 30
        while store.get(old_id).text is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.get(old_id).text is None and store.get(new_id).text == "新消息"
