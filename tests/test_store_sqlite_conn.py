"""SQLite connections as skyshield opens them, and WAL checkpoints moved to a background thread."""

from __future__ import annotations

import os
import time

from skyshield.store.sqlite_conn import BackgroundCheckpoints, connect_sqlite


def fill(conn, rows: int = 3000) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
    for _ in range(rows // 100):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (body) VALUES (?)", [("x" * 2000,)] * 100)
        conn.execute("COMMIT")


def test_connections_checkpoint_on_commit_by_default(tmp_path):
    conn = connect_sqlite(str(tmp_path / "a.db"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    fill(conn)  # ~6 MB: the commits copy the log back into the database file as it passes 1,000 pages
    assert os.path.getsize(tmp_path / "a.db") > 4_000_000
    conn.close()


def test_background_checkpoints_take_the_copying_off_the_commits(tmp_path):
    db = str(tmp_path / "b.db")
    checkpoints = BackgroundCheckpoints(interval=3600).start()  # no round before stop(): commits alone
    try:
        conn = connect_sqlite(db)
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        fill(conn)
        assert os.path.getsize(db) < 100_000  # nothing copied back on commit: all of it is still in the log
        assert db in checkpoints.paths
    finally:
        checkpoints.stop()  # one last round
    assert os.path.getsize(db) > 4_000_000
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 3000
    conn.close()
    after = connect_sqlite(str(tmp_path / "c.db"))  # stopped: new connections checkpoint on commit again
    assert after.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    after.close()


def test_background_round_runs_while_writes_go_on(tmp_path):
    db = str(tmp_path / "d.db")
    checkpoints = BackgroundCheckpoints(interval=0.05).start()
    try:
        conn = connect_sqlite(db)
        fill(conn)
        deadline = time.monotonic() + 5
        while os.path.getsize(db) < 4_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(db) > 4_000_000
        conn.close()
    finally:
        checkpoints.stop()
