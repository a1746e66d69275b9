"""The SQLite store: verdicts come back whole, numbers are pseudonymised at rest, search and counts work,
other areas can add their own tables, and several writers on one file never collide."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest

from skyshield.config import load_settings
from skyshield.events import Action, Category, Channel, Message, Signal, Verdict
from skyshield.policy import Policy
from skyshield.store import normalise_number, open_store, open_store_for, pseudonymise, register_migration
from skyshield.store.base import MIGRATIONS
from skyshield.store.sqlite import SQLiteStore


def _verdict(action: Action = Action.TAG, category: Category = Category.PROMOTION, score: float = 4.5) -> Verdict:
    return Verdict(
        action=action,
        category=category,
        subtype="authority_impersonation" if category is Category.FRAUD else None,
        unwanted=0.93,
        score=score,
        signals=[
            Signal("MODEL_PROMOTION", 0.93, {"top_terms": [["退订", 1.2], ["抢购", 0.8]]}, points=3.72),
            Signal("SIGNATURE", 1.0, {"matched": "【某宝】", "span": [0, 4]}, points=-0.5),
            Signal("SHORT_LINK", 1.0, {"links": ["t.cn/abc"]}, points=2.0),
        ],
        model_version="test-model-1",
        probabilities={"promotion": 0.93, "personal": 0.07},
    )


def _message(text: str = "【某宝】双11狂欢，点击 t.cn/abc 抢购，回T退订", sender: str = "+86 138-0013-8000") -> Message:
    return Message(
        text=text,
        sender=sender,
        recipient="13900139000",
        time=datetime(2026, 11, 11, 8, 30, tzinfo=UTC),
        channel=Channel.API,
        tenant="acme",
        external_id="msg-1",
    )


@pytest.fixture
def settings(tmp_path):
    return load_settings(f"sqlite:///{tmp_path / 'verdicts.db'}")


@pytest.fixture
def store(settings):
    with open_store(settings) as s:
        yield s


def test_a_saved_verdict_comes_back_with_message_signals_and_evidence(store):
    verdict = _verdict()
    [vid] = store.save([(_message(), verdict)])
    assert verdict.id == vid

    got = store.get(vid)
    assert got is not None
    assert got.text == "【某宝】双11狂欢，点击 t.cn/abc 抢购，回T退订"
    assert (got.tenant, got.channel, got.external_id) == ("acme", Channel.API, "msg-1")
    assert got.time == datetime(2026, 11, 11, 8, 30, tzinfo=UTC)
    v = got.verdict
    assert (v.action, v.category, v.score, v.model_version) == (Action.TAG, Category.PROMOTION, 4.5, "test-model-1")
    assert v.probabilities == {"promotion": 0.93, "personal": 0.07}
    by_name = {s.name: s for s in v.signals}
    assert by_name["SIGNATURE"].evidence == {"matched": "【某宝】", "span": [0, 4]}
    assert by_name["SIGNATURE"].points == -0.5
    assert by_name["SHORT_LINK"].evidence["links"] == ["t.cn/abc"]
    assert any("SHORT_LINK (+2)" in r for r in v.reasons())
    assert store.get(vid + 1) is None


def test_a_batch_gets_consecutive_ids_in_order(store):
    items = [(_message(f"message {i}"), _verdict()) for i in range(250)]
    ids = store.save(items)
    assert ids == list(range(ids[0], ids[0] + 250))
    assert store.get(ids[137]).text == "message 137"
    assert store.save([]) == []


def test_phone_numbers_are_pseudonymised_at_rest(store, settings):
    [vid] = store.save([(_message(sender="+86 138-0013-8000"), _verdict())])
    got = store.get(vid)
    assert got.numbers_pseudonymised
    assert got.sender.startswith("h:") and "13800138000" not in got.sender
    # The same number written another way has the same pseudonym, so a sender's history stays together.
    assert got.sender == pseudonymise("008613800138000", settings.hmac_key())
    # Neither number appears anywhere in the database files.
    store.close()
    raw = b"".join(p.read_bytes() for p in settings.sqlite_path.parent.glob("verdicts.db*"))
    assert b"13800138000" not in raw and b"13900139000" not in raw
    assert b"h:" in raw


def test_the_key_file_is_private_and_reused(settings):
    key = settings.hmac_key()
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(settings.key_file).st_mode) == 0o600
    assert settings.hmac_key() == key
    assert settings.key_file == settings.sqlite_path.with_suffix(".key")


def test_pseudonymisation_can_be_switched_off_by_policy(settings):
    policy = Policy.from_text("[store]\npseudonymise_numbers = false\n")
    with open_store_for(policy, settings) as store:
        [vid] = store.save([(_message(sender="13800138000"), _verdict())])
        got = store.get(vid)
        assert got.sender == "13800138000" and not got.numbers_pseudonymised
        assert [s.id for s in store.search(sender="13800138000")] == [vid]


def test_numbers_written_differently_normalise_alike():
    assert normalise_number("+86 138-0013-8000") == "13800138000"
    assert normalise_number("008613800138000") == "13800138000"
    assert normalise_number("13800138000") == "13800138000"
    assert normalise_number("+44 7700 900123") == "+447700900123"
    assert normalise_number("AMAZON") == "AMAZON"
    key = b"k" * 32
    assert pseudonymise("13800138000", key) != pseudonymise("13800138001", key)
    assert pseudonymise("13800138000", key) != pseudonymise("13800138000", b"j" * 32)
    assert pseudonymise("", key) == ""


def test_search_by_sender_action_category_and_time(store):
    store.save([(_message(sender="13800138000"), _verdict(Action.TAG, Category.PROMOTION))])
    store.save([(_message(sender="13700137000"), _verdict(Action.BLOCK, Category.FRAUD, 20.0))])
    store.save([(_message(sender="+8613800138000"), _verdict(Action.BLOCK, Category.FRAUD, 18.0))])

    by_sender = store.search(sender="138 0013 8000")
    assert [s.verdict.category for s in by_sender] == [Category.FRAUD, Category.PROMOTION]  # newest first
    assert [s.verdict.score for s in store.search(action="block")] == [18.0, 20.0]
    assert len(store.search(category="promotion")) == 1
    assert len(store.search(action="block", sender="13700137000")) == 1
    assert store.search(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(store.search(until=datetime.now(UTC) + timedelta(minutes=1))) == 3
    assert len(store.search(limit=2)) == 2
    newest = store.search(limit=1)[0].id
    assert [s.id for s in store.search(before_id=newest)] == [newest - 1, newest - 2]
    assert store.search(tenant="someone-else") == []


def test_counts_by_action_and_category(store):
    store.save([(_message(), _verdict(Action.TAG, Category.PROMOTION)) for _ in range(3)])
    store.save([(_message(), _verdict(Action.BLOCK, Category.FRAUD))])
    counts = store.counts()
    assert counts.total == 4
    assert counts.by_action == {"tag": 3, "block": 1}
    assert counts.by_category == {"promotion": 3, "fraud": 1}
    assert store.counts(tenant="nobody").total == 0


def test_database_is_wal_and_survives_reopening(settings):
    with open_store(settings) as store:
        [vid] = store.save([(_message(), _verdict())])
    conn = sqlite3.connect(settings.sqlite_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version WHERE component = 'core'").fetchone()[0] == 1
    conn.close()
    with open_store(settings) as store:
        assert store.get(vid).text.startswith("【某宝】")


def test_other_areas_register_their_own_tables(settings):
    calls = []

    def add_index(conn):
        calls.append(1)
        conn.execute("CREATE INDEX test_area_notes_text ON test_area_notes (note)")

    register_migration("test_area", 1, "CREATE TABLE test_area_notes (id INTEGER PRIMARY KEY, note TEXT);")
    register_migration("test_area", 2, add_index)
    register_migration("test_area", 1, "this would fail if it ran twice")  # same version again: ignored
    try:
        with open_store(settings) as store:
            assert store.schema_versions()["test_area"] == 2
            conn = store.connect()
            conn.execute("INSERT INTO test_area_notes (note) VALUES ('hello')")
            assert conn.execute("SELECT note FROM test_area_notes").fetchone() == ("hello",)
            conn.close()
        with open_store(settings) as store:  # reopening applies nothing twice
            store.migrate()
        assert calls == [1]
    finally:
        MIGRATIONS[:] = [m for m in MIGRATIONS if m.component != "test_area"]


def test_a_failing_migration_leaves_no_half_applied_step(settings):
    register_migration("broken_area", 1, "CREATE TABLE broken_area_t (x INTEGER);\nTHIS IS NOT SQL;")
    try:
        with pytest.raises(sqlite3.OperationalError):
            open_store(settings)
        conn = sqlite3.connect(settings.sqlite_path)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        conn.close()
        assert "broken_area_t" not in tables and "verdicts" in tables
    finally:
        MIGRATIONS[:] = [m for m in MIGRATIONS if m.component != "broken_area"]


def test_two_writers_on_one_file_never_reuse_an_id(settings):
    key = settings.hmac_key()
    stores = [SQLiteStore(settings.sqlite_path, key), SQLiteStore(settings.sqlite_path, key)]
    ids: list[int] = []
    lock = threading.Lock()

    def write(store):
        for _ in range(20):
            got = store.save([(_message(), _verdict()) for _ in range(25)])
            with lock:
                ids.extend(got)

    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == len(set(ids)) == 1000
    assert stores[0].counts().total == 1000
    for s in stores:
        s.close()


def test_odd_evidence_values_are_kept_as_text(store):
    verdict = _verdict()
    verdict.signals.append(Signal("ODD", 1.0, {"when": datetime(2026, 1, 1, tzinfo=UTC), "set": {"a"}}, points=0.0))
    [vid] = store.save([(_message(), verdict)])
    ev = {s.name: s for s in store.get(vid).verdict.signals}["ODD"].evidence
    assert ev["when"].startswith("2026-01-01") and ev["set"] == "{'a'}"


def test_idempotent_saves_record_a_message_id_once_per_tenant_and_channel(store):
    def msg(ext, tenant="acme", channel=Channel.API):
        m = _message()
        m.external_id, m.tenant, m.channel = ext, tenant, channel
        return m

    first = store.save([(msg("a"), _verdict()), (msg("b"), _verdict()), (msg(None), _verdict())], idempotent=True)
    again = store.save(
        [(msg("a"), _verdict()), (msg("c"), _verdict()), (msg("c"), _verdict()), (msg(None), _verdict())],
        idempotent=True,
    )
    assert again[0] == first[0], "a known id maps to its stored verdict"
    assert again[1] == again[2] and again[1] not in first, "a repeat inside one batch is stored once"
    assert again[3] not in first, "messages without an id are always stored"
    other = store.save([(msg("a", tenant="other"), _verdict()), (msg("a", channel=Channel.FILE), _verdict())],
                       idempotent=True)
    assert first[0] not in other, "ids are per tenant and channel"
    assert store.counts().total == 3 + 2 + 2
    assert store.save([(msg("a"), _verdict())]) != [first[0]], "without idempotent every save is a new record"

    found = store.find_external([("acme", "a"), ("acme", "c"), ("acme", "zzz")])
    assert set(found) == {("acme", "a"), ("acme", "c")}
    assert found[("acme", "a")].id == first[0]
