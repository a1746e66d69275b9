"""How skyshield opens a SQLite file, and WAL checkpoints kept off the write path.

Every SQLite database skyshield writes (verdict store, consent ledger, reputation lists) is opened by
:func:`connect_sqlite`: autocommit (transactions are explicit), WAL, ``synchronous=NORMAL`` (a commit
survives a process crash; only an OS crash may lose the last ones), usable from any thread.

In WAL mode the connection whose commit finds the log over 1,000 pages copies it back into the database
and syncs it (a checkpoint), inside that commit: 4-6 ms every ~400 verdicts here, which is the SMPP
firewall's whole p99 when the commit is a write between two batches. A process where that matters starts
:class:`BackgroundCheckpoints` before it opens its databases: its connections then never checkpoint on
commit, and a thread of its own checkpoints every file they opened (``PASSIVE``: it waits for no reader or
writer; SQLite releases the GIL while it copies and syncs).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("skyshield.store")

_checkpoints: BackgroundCheckpoints | None = None


def connect_sqlite(path: str, busy_timeout: float = 30.0) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    checkpoints = _checkpoints
    if checkpoints is not None and path != ":memory:":
        conn.execute("PRAGMA wal_autocheckpoint=0")
        checkpoints.watch(path)
    return conn


class BackgroundCheckpoints:
    """Checkpoint the WAL of every SQLite file this process opens, every ``interval`` seconds, on one thread."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.paths: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skyshield-checkpoints", daemon=True)

    def start(self) -> BackgroundCheckpoints:
        """From now on, this process's new SQLite connections leave checkpoints to this thread."""
        global _checkpoints
        _checkpoints = self
        self._thread.start()
        return self

    def watch(self, path: str) -> None:
        with self._lock:
            self.paths.add(path)

    def _run(self) -> None:
        connections: dict[str, sqlite3.Connection] = {}
        while not self._stop.wait(self.interval):
            self._checkpoint(connections)
        self._checkpoint(connections)  # what the last writes left
        for conn in connections.values():
            conn.close()

    def _checkpoint(self, connections: dict[str, sqlite3.Connection]) -> None:
        with self._lock:
            paths = list(self.paths)
        for path in paths:
            try:
                conn = connections.get(path)
                if conn is None:
                    conn = connections[path] = sqlite3.connect(path, timeout=1.0, isolation_level=None)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # a busy or vanished file: the next round tries again
                log.debug("checkpoint of %s failed: %s", path, exc)

    def stop(self) -> None:
        """Checkpoint once more and stop; connections opened later checkpoint on commit again."""
        global _checkpoints
        if _checkpoints is self:
            _checkpoints = None
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
