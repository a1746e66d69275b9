"""The store contract, run against every backend: SQLite (embedded default) and PostgreSQL (production).

Each PostgreSQL test gets a schema of its own, dropped afterwards; the tests skip with a message when no
PostgreSQL can be reached or started.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from service_helpers import postgres_schema
from skyshield.config import load_settings
from skyshield.events import Action, Category, Channel, Signal
from skyshield.policy import Policy
from skyshield.store import open_store, open_store_for, pseudonymise, register_migration
from skyshield.store.base import MIGRATIONS
from store_helpers import sample_message as _message
from store_helpers import sample_verdict as _verdict

pytestmark = pytest.mark.service


def _in_threads(work, stores) -> None:
    """``work(store)`` for every store at once, one thread each; returns when all are done."""
    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path):
    if request.param == "sqlite":
        yield load_settings(f"sqlite:///{tmp_path / 'verdicts.db'}")
    else:
        with postgres_schema() as url:
            yield load_settings(url, key_file=tmp_path / "verdicts.key")


@pytest.fixture
def store(settings):
    with open_store(settings) as s:
        yield s


def test_open_store_picks_the_backend_from_the_url(store, settings):
    expected = "PostgresStore" if settings.db_url.startswith("postgresql") else "SQLiteStore"
    assert type(store).__name__ == expected


def test_a_saved_verdict_comes_back_whole(store):
    verdict = _verdict()
    [vid] = store.save([(_message(), verdict)])
    assert verdict.id == vid
    got = store.get(vid)
    assert got.text == "【某宝】双11狂欢，点击 t.cn/abc 抢购，回T退订"
    assert (got.tenant, got.channel, got.external_id) == ("acme", Channel.API, "msg-1")
    assert got.time == datetime(2026, 11, 11, 8, 30, tzinfo=UTC)
    assert got.stored_at.tzinfo is not None
    v = got.verdict
    assert (v.action, v.category, v.score, v.model_version) == (Action.TAG, Category.PROMOTION, 4.5, "test-model-1")
    assert list(v.probabilities.items()) == [("promotion", 0.93), ("personal", 0.07)]
    by_name = {s.name: s for s in v.signals}
    assert by_name["SIGNATURE"].evidence == {"matched": "【某宝】", "span": [0, 4]}
    assert by_name["SIGNATURE"].points == -0.5
    assert by_name["SHORT_LINK"].evidence["links"] == ["t.cn/abc"]
    assert any("SHORT_LINK (+2)" in r for r in v.reasons())
    assert store.get(vid + 1) is None
    assert store.get(2**70) is None


def test_a_batch_gets_consecutive_ids_in_order(store):
    ids = store.save([(_message(f"message {i}"), _verdict()) for i in range(250)])
    assert ids == list(range(ids[0], ids[0] + 250))
    assert store.get(ids[137]).text == "message 137"
    assert store.save([]) == []


def test_numbers_are_pseudonymised_and_searchable_as_written(store, settings):
    [vid] = store.save([(_message(sender="+86 138-0013-8000"), _verdict())])
    got = store.get(vid)
    assert got.numbers_pseudonymised and got.sender.startswith("h:")
    assert got.sender == pseudonymise("008613800138000", settings.hmac_key())
    assert [s.id for s in store.search(sender="138 0013 8000")] == [vid]


def test_pseudonymisation_off_by_policy(settings):
    policy = Policy.from_text("[store]\npseudonymise_numbers = false\n")
    with open_store_for(policy, settings) as store:
        [vid] = store.save([(_message(sender="13800138000"), _verdict())])
        assert store.get(vid).sender == "13800138000" and not store.get(vid).numbers_pseudonymised
        assert [s.id for s in store.search(sender="13800138000")] == [vid]


def test_search_and_counts(store):
    store.save([(_message(sender="13800138000"), _verdict(Action.TAG, Category.PROMOTION))])
    store.save([(_message(sender="13700137000"), _verdict(Action.BLOCK, Category.FRAUD, 20.0))])
    store.save([(_message(sender="+8613800138000"), _verdict(Action.BLOCK, Category.FRAUD, 18.0))])
    assert [s.verdict.category for s in store.search(sender="13800138000")] == [Category.FRAUD, Category.PROMOTION]
    assert [s.verdict.score for s in store.search(action="block")] == [18.0, 20.0]
    assert len(store.search(category="promotion")) == 1
    assert len(store.search(action="block", sender="13700137000")) == 1
    assert store.search(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(store.search(until=datetime.now(UTC) + timedelta(minutes=1))) == 3
    assert len(store.search(limit=2)) == 2
    newest = store.search(limit=1)[0].id
    assert [s.id for s in store.search(before_id=newest)] == [newest - 1, newest - 2]
    assert store.search(tenant="someone-else") == []
    counts = store.counts()
    assert (counts.total, counts.by_action, counts.by_category) == (3, {"tag": 1, "block": 2},
                                                                    {"promotion": 1, "fraud": 2})
    assert store.counts(tenant="nobody").total == 0
    assert store.counts(since=datetime.now(UTC) - timedelta(minutes=5)).total == 3


def test_idempotent_saves_record_a_message_id_once(store):
    first = store.save([(_message(external_id="a"), _verdict()), (_message(external_id="b"), _verdict()),
                        (_message(external_id=None), _verdict())], idempotent=True)
    again = store.save([(_message(external_id="a"), _verdict()), (_message(external_id="c"), _verdict()),
                        (_message(external_id="c"), _verdict()), (_message(external_id=None), _verdict())],
                       idempotent=True)
    assert again[0] == first[0], "a known id maps to its stored verdict"
    assert again[1] == again[2] and again[1] not in first, "a repeat inside one batch is stored once"
    assert again[3] not in first, "messages without an id are always stored"
    other = store.save([(_message(external_id="a", tenant="other"), _verdict()),
                        (_message(external_id="a", channel=Channel.FILE), _verdict())], idempotent=True)
    assert first[0] not in other, "ids are per tenant and channel"
    assert store.counts().total == 7
    assert store.save([(_message(external_id="a"), _verdict())]) != [first[0]], "without idempotent: a new record"
    found = store.find_external([("acme", "a"), ("acme", "c"), ("acme", "zzz")])
    assert set(found) == {("acme", "a"), ("acme", "c")}
    assert found[("acme", "a")].id == first[0]


def test_concurrent_retries_of_one_message_id_give_one_record(settings):
    key = settings.hmac_key()
    stores = [open_store(settings) for _ in range(4)]
    results: list[list[int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(stores))

    def retry(store):
        barrier.wait()
        for _ in range(5):
            got = store.save([(_message(external_id=f"m{i}"), _verdict()) for i in range(20)], idempotent=True)
            with lock:
                results.append(got)

    _in_threads(retry, stores)
    assert all(r == results[0] for r in results), "every retry maps each message id to the same verdict"
    assert stores[0].counts().total == 20
    assert key == settings.hmac_key()
    for s in stores:
        s.close()


def test_two_writers_never_reuse_an_id(settings):
    stores = [open_store(settings), open_store(settings)]
    ids: list[int] = []
    lock = threading.Lock()

    def write(store):
        for _ in range(10):
            got = store.save([(_message(), _verdict()) for _ in range(25)])
            assert got == list(range(got[0], got[0] + 25))
            with lock:
                ids.extend(got)

    _in_threads(write, stores)
    assert len(ids) == len(set(ids)) == 500
    assert stores[0].counts().total == 500
    for s in stores:
        s.close()


def test_other_areas_register_their_own_tables(settings):
    dialect = "postgresql" if settings.db_url.startswith("postgresql") else "sqlite"
    calls = []

    def add_index(conn):
        calls.append(1)
        conn.execute("CREATE INDEX test_area_notes_note ON test_area_notes (note)")

    register_migration("test_area", 1, "CREATE TABLE test_area_notes (id INTEGER PRIMARY KEY, note TEXT);",
                       dialect=dialect)
    register_migration("test_area", 2, add_index, dialect=dialect)
    register_migration("test_area", 1, "this would fail if it ran twice", dialect=dialect)  # same version: ignored
    try:
        with open_store(settings) as store:
            assert store.schema_versions()["test_area"] == 2
            conn = store.connect()
            conn.execute("INSERT INTO test_area_notes (id, note) VALUES (1, 'hello')")
            assert conn.execute("SELECT note FROM test_area_notes").fetchone() == ("hello",)
            conn.close()
        with open_store(settings) as store:
            store.migrate()
        assert calls == [1], "reopening applies nothing twice"
    finally:
        MIGRATIONS[:] = [m for m in MIGRATIONS if m.component != "test_area"]


def test_a_failing_migration_leaves_no_half_applied_step(settings):
    dialect = "postgresql" if settings.db_url.startswith("postgresql") else "sqlite"
    register_migration("broken_area", 1, "CREATE TABLE broken_area_t (x INTEGER);\nTHIS IS NOT SQL;", dialect=dialect)
    try:
        with pytest.raises(sqlite3.OperationalError if dialect == "sqlite" else Exception, match="(?i)syntax"):
            open_store(settings)
        if dialect == "sqlite":
            raw = sqlite3.connect(settings.sqlite_path)
        else:
            import psycopg

            raw = psycopg.connect(settings.db_url)
        assert raw.execute("SELECT COUNT(*) FROM verdicts").fetchone() == (0,), "the steps before it stay applied"
        raw.close()
    finally:
        MIGRATIONS[:] = [m for m in MIGRATIONS if m.component != "broken_area"]
    with open_store(settings) as store:  # without the broken step the same database opens, minus its table
        conn = store.connect()
        with pytest.raises(Exception, match="broken_area_t"):
            conn.execute("SELECT * FROM broken_area_t")
        conn.close()
        assert "broken_area" not in store.schema_versions()


def test_odd_text_and_evidence_are_kept(store):
    verdict = _verdict()
    verdict.signals.append(Signal("ODD", 1.0, {"when": datetime(2026, 1, 1, tzinfo=UTC), "set": {"a"},
                                               "nul": "a\x00b"}, points=0.0))
    [vid] = store.save([(_message(text="emoji 😀 and a NUL \x00 here"), verdict)])
    got = store.get(vid)
    ev = {s.name: s for s in got.verdict.signals}["ODD"].evidence
    assert ev["when"].startswith("2026-01-01") and ev["set"] == "{'a'}" and ev["nul"] == "a\x00b"
    assert got.text.startswith("emoji 😀 and a NUL ") and got.text.endswith(" here")


def test_postgres_store_reconnects_after_the_server_drops_it(settings):
    if not settings.db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: a SQLite file cannot drop its connection")
    import psycopg

    with open_store(settings) as store:
        [first] = store.save([(_message(), _verdict())])
        with psycopg.connect(settings.db_url, autocommit=True) as admin:
            pid = store._conn.info.backend_pid
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            for _ in range(100):  # termination is asynchronous: wait until the server process is gone
                if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                    break
                time.sleep(0.05)
        with pytest.raises(psycopg.OperationalError):
            store.save([(_message("lost with the connection"), _verdict())])
        [again] = store.save([(_message("after reconnecting"), _verdict())])
        assert again > first and store.get(again).text == "after reconnecting"
        assert store.counts().total == 2, "the batch that met the broken connection was not half-stored"
