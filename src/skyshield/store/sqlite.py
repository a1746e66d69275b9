"""The embedded store: one SQLite file in WAL mode, so readers (``skyshield why``) never wait on the writer.

A batch is written with one ``executemany`` inside one ``BEGIN IMMEDIATE`` transaction; ids are
allocated inside that transaction, so several processes may write to the same file safely.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skyshield.events import Message, Verdict, utcnow
from skyshield.store.base import (
    COLUMNS,
    StoredVerdict,
    VerdictStore,
    pending_order,
    register_migration,
    row_to_stored,
)
from skyshield.store.sqlite_conn import connect_sqlite

_CORE_SCHEMA = """
CREATE TABLE verdicts (
    id            INTEGER PRIMARY KEY,
    stored_at     TEXT    NOT NULL,   -- ISO 8601 UTC, when the verdict was written
    msg_time      TEXT    NOT NULL,   -- ISO 8601 UTC, when the message was sent (as given)
    tenant        TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    external_id   TEXT,               -- the caller's id (API id, SMPP message id, input line)
    sender        TEXT    NOT NULL,   -- h:<hmac> pseudonym unless numbers_hashed = 0
    recipient     TEXT    NOT NULL,
    numbers_hashed INTEGER NOT NULL,
    text          TEXT,               -- NULL once retention has removed it
    action        TEXT    NOT NULL,
    category      TEXT    NOT NULL,
    subtype       TEXT,
    unwanted      REAL    NOT NULL,
    score         REAL    NOT NULL,
    model_version TEXT    NOT NULL,
    probabilities TEXT    NOT NULL,   -- JSON {category: probability}
    signals       TEXT    NOT NULL    -- JSON [{name, score, points, evidence}]
);
CREATE INDEX verdicts_stored_at ON verdicts (stored_at);
CREATE INDEX verdicts_sender ON verdicts (sender, stored_at);
CREATE INDEX verdicts_action ON verdicts (action, stored_at);
CREATE INDEX verdicts_category ON verdicts (category, stored_at);
CREATE INDEX verdicts_tenant_external ON verdicts (tenant, external_id);
"""

register_migration("core", 1, _CORE_SCHEMA, description="verdicts table")
register_migration(
    "core",
    2,
    "DROP INDEX IF EXISTS verdicts_tenant_external;\n"
    "CREATE INDEX verdicts_external ON verdicts (tenant, external_id, channel);",
    description="index for idempotent saves by the caller's message id",
)

_INSERT = f"INSERT INTO verdicts ({COLUMNS}) VALUES ({', '.join('?' * 18)})"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


class SQLiteStore(VerdictStore):
    """Verdicts in one SQLite file. ``path=":memory:"`` keeps them in memory (tests)."""

    def __init__(self, path: str | Path, key: bytes | None, *, pseudonymise_numbers: bool = True):
        super().__init__(key, pseudonymise_numbers=pseudonymise_numbers)
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._open()

    # -- connections and schema -------------------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        conn = connect_sqlite(self.path)
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def migrate(self) -> None:
        with self._lock:
            conn = self._conn
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " component TEXT NOT NULL, version INTEGER NOT NULL, applied_at TEXT NOT NULL, description TEXT,"
                " PRIMARY KEY (component, version))"
            )
            for m in pending_order("sqlite"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    done = conn.execute(
                        "SELECT 1 FROM schema_version WHERE component = ? AND version = ?", (m.component, m.version)
                    ).fetchone()
                    if not done:
                        if isinstance(m.apply, str):
                            # executescript would COMMIT our transaction; run statement by statement instead.
                            for statement in _split_sql(m.apply):
                                conn.execute(statement)
                        else:
                            m.apply(conn)
                        conn.execute(
                            "INSERT INTO schema_version VALUES (?, ?, ?, ?)",
                            (m.component, m.version, _iso(utcnow()), m.description),
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    _moment = staticmethod(_iso)

    # -- writing ----------------------------------------------------------------------------------

    def save(self, items: Sequence[tuple[Message, Verdict]], *, idempotent: bool = False) -> list[int]:
        if not items:
            return []
        rows = self._rows(items, utcnow())
        ids: list[int] = [0] * len(rows)
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                known: dict[tuple[str, str, str], int] = {}
                if idempotent:
                    known = self._existing_ids(conn, [(r[4], r[3], r[5]) for r in rows if r[5] is not None])
                next_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM verdicts").fetchone()[0]
                new_rows = []
                for i, row in enumerate(rows):
                    key = (row[4], row[3], row[5])  # channel, tenant, external_id
                    if idempotent and row[5] is not None and key in known:
                        ids[i] = known[key]
                        continue
                    row[0] = ids[i] = next_id
                    next_id += 1
                    new_rows.append(row)
                    if idempotent and row[5] is not None:
                        known[key] = row[0]  # a repeat later in the same batch maps to this one
                conn.executemany(_INSERT, new_rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        for (_, verdict), verdict_id in zip(items, ids, strict=True):
            verdict.id = verdict_id
        return ids

    @staticmethod
    def _existing_ids(conn: sqlite3.Connection, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
        found: dict[tuple[str, str, str], int] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), 300):
            chunk = unique[start : start + 300]
            values = ", ".join("(?, ?, ?)" for _ in chunk)
            # CROSS JOIN keeps the keys as the outer loop, so each is one index seek (not an index scan).
            sql = (
                f"WITH k(channel, tenant, ext) AS (VALUES {values}) "
                "SELECT k.channel, k.tenant, k.ext, MIN(v.id) FROM k CROSS JOIN verdicts v "
                "ON v.tenant = k.tenant AND v.external_id = k.ext AND v.channel = k.channel "
                "GROUP BY k.channel, k.tenant, k.ext"
            )
            for channel, tenant, external_id, vid in conn.execute(sql, [x for key in chunk for x in key]):
                found[(channel, tenant, external_id)] = vid
        return found

    def find_external(
        self, keys: Sequence[tuple[str, str]], channel: str = "api"
    ) -> dict[tuple[str, str], StoredVerdict]:
        if not keys:
            return {}
        with self._lock:
            ids = self._existing_ids(self._conn, [(channel, tenant, ext) for tenant, ext in keys])
            out: dict[tuple[str, str], StoredVerdict] = {}
            for (_, tenant, ext), vid in ids.items():
                row = self._conn.execute(f"SELECT {COLUMNS} FROM verdicts WHERE id = ?", (vid,)).fetchone()
                out[(tenant, ext)] = row_to_stored(row, decoded=False)
        return out


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script (``sqlite3.complete_statement`` knows where each one ends)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements

