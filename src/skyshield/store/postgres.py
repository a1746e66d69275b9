"""The production store: verdicts in PostgreSQL (``SKYSHIELD_DB=postgresql://user@host/db``), psycopg 3.

Same contract as the SQLite store (:class:`skyshield.store.base.VerdictStore`), so workers on many hosts
can share one record. A batch is written with ``COPY`` inside one transaction. Ids come from a
sequence, reserved a block per batch under an advisory lock, so a batch gets consecutive ids while
other writers go on in parallel (the lock is held only for the reservation, not until commit).
Idempotent saves lock their (tenant, channel, external id) keys with transaction advisory locks, so
concurrent retries of one message id from several workers still give one record.

Other areas register ``dialect="postgresql"`` migrations for their tables; a migration is applied in
its own transaction under an advisory lock, so two workers starting at once apply it once.
PostgreSQL text cannot hold NUL characters: a NUL in a message text is stored as U+2400 (␀).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg

from skyshield.events import Message, Verdict, utcnow
from skyshield.store.base import (
    COLUMNS,
    StoredVerdict,
    VerdictStore,
    pending_order,
    register_migration,
    row_to_stored,
)
from skyshield.store.sql import lock_key

DIALECT = "postgresql"

_CORE_SCHEMA = """
CREATE TABLE verdicts (
    id            BIGINT PRIMARY KEY,
    stored_at     TIMESTAMPTZ NOT NULL,
    msg_time      TIMESTAMPTZ NOT NULL,
    tenant        TEXT NOT NULL,
    channel       TEXT NOT NULL,
    external_id   TEXT,
    sender        TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    numbers_hashed BOOLEAN NOT NULL,
    text          TEXT,
    action        TEXT NOT NULL,
    category      TEXT NOT NULL,
    subtype       TEXT,
    unwanted      DOUBLE PRECISION NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    model_version TEXT NOT NULL,
    probabilities JSON NOT NULL,   -- json, not jsonb: keeps the key order and the text exactly as written
    signals       JSON NOT NULL
);
CREATE SEQUENCE verdicts_id_seq AS BIGINT OWNED BY verdicts.id;
CREATE INDEX verdicts_stored_at ON verdicts (stored_at);
CREATE INDEX verdicts_sender ON verdicts (sender, stored_at);
CREATE INDEX verdicts_action ON verdicts (action, stored_at);
CREATE INDEX verdicts_category ON verdicts (category, stored_at);
CREATE INDEX verdicts_external ON verdicts (tenant, external_id, channel);
-- A block of n consecutive ids. Sequence calls are not transactional, so the session lock is released
-- at once and other writers do not wait for this batch's commit.
CREATE FUNCTION verdicts_reserve_ids(n BIGINT) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE first_id BIGINT;
BEGIN
    PERFORM pg_advisory_lock(735001);
    first_id := nextval('verdicts_id_seq');
    IF n > 1 THEN
        PERFORM setval('verdicts_id_seq', first_id + n - 1);
    END IF;
    PERFORM pg_advisory_unlock(735001);
    RETURN first_id;
END $$;
"""

register_migration("core", 1, _CORE_SCHEMA, dialect=DIALECT, description="verdicts table")
# SQLite's core 2 changed an index that PostgreSQL's version 1 already has in its final form.
register_migration("core", 2, "SELECT 1", dialect=DIALECT, description="(index already in version 1)")

# Other areas' tables whose code is already portable (``skyshield.security.db.q`` / ``write_transaction``):
# the PostgreSQL form of their SQLite migrations. Keep in step when those areas add a version.
register_migration("security", 1, """
CREATE TABLE api_keys (
    key_id     TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    key_hash   TEXT NOT NULL,
    label      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
""", dialect=DIALECT, description="API keys per tenant (hashes only)")
register_migration("audit", 1, """
CREATE TABLE audit_log (
    id        BIGINT PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
""", dialect=DIALECT, description="append-only audit log with a hash chain")

_MIGRATION_LOCK = 735000


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _no_nul(text: str | None) -> str | None:
    return text.replace("\x00", "\u2400") if text and "\x00" in text else text


def _key_lock(channel: str, tenant: str, external_id: str) -> int:
    """A 63-bit advisory lock id for one message id (collisions only make two saves wait for each other)."""
    return lock_key(f"{channel}\x1f{tenant}\x1f{external_id}")


class PostgresStore(VerdictStore):
    """Verdicts in a PostgreSQL database; one connection per store, shared by threads under a lock."""

    placeholder: ClassVar[str] = "%s"
    decoded_rows: ClassVar[bool] = True  # psycopg gives datetimes and decodes json columns

    def __init__(self, url: str, key: bytes | None, *, pseudonymise_numbers: bool = True):
        super().__init__(key, pseudonymise_numbers=pseudonymise_numbers)
        self.url = url
        self._open()

    # -- connections and schema -------------------------------------------------------------------

    def connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"cannot connect to PostgreSQL at {_safe_url(self.url)}: {exc}".strip()) from exc
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    def _live(self) -> psycopg.Connection:
        """The store's connection, opened again if the server dropped it (restart, failover); call under the lock.

        The statement that met the broken connection has already failed (its batch is not stored); the next
        one reconnects instead of failing until the process restarts.
        """
        if self._conn.broken:
            self._conn = self.connect()
        return self._conn

    def migrate(self) -> None:
        with self._lock:
            conn = self._live()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (component TEXT NOT NULL, version INTEGER NOT NULL,"
                    " applied_at TIMESTAMPTZ NOT NULL, description TEXT, PRIMARY KEY (component, version))"
                )
            for m in pending_order(DIALECT):
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    done = conn.execute(
                        "SELECT 1 FROM schema_version WHERE component = %s AND version = %s", (m.component, m.version)
                    ).fetchone()
                    if done:
                        continue
                    if isinstance(m.apply, str):
                        conn.execute(m.apply.encode())  # no parameters: simple protocol, several statements
                    else:
                        m.apply(conn)
                    conn.execute(
                        "INSERT INTO schema_version VALUES (%s, %s, now(), %s)", (m.component, m.version, m.description)
                    )

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._live().execute(sql, args).fetchall()

    _moment = staticmethod(_utc)
    _text = staticmethod(_no_nul)

    def _any_of(self, column: str, values: list[str]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s)", [values]  # one array parameter

    # -- writing ----------------------------------------------------------------------------------

    def save(self, items: Sequence[tuple[Message, Verdict]], *, idempotent: bool = False) -> list[int]:
        if not items:
            return []
        rows = self._rows(items, utcnow())
        ids: list[int] = [0] * len(rows)
        with self._lock, self._live().transaction():
            conn = self._conn
            known: dict[tuple[str, str, str], int] = {}
            keys = sorted({(r[4], r[3], r[5]) for r in rows if r[5] is not None}) if idempotent else []
            if keys:
                # Sorted, so two batches with overlapping ids lock them in one order (no deadlock).
                locks = sorted({_key_lock(*k) for k in keys})
                conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", (locks,))
                known = _existing_ids(conn, keys)
            new_rows = []
            first_in_batch: dict[tuple[str, str, str], int] = {}
            repeats: list[tuple[int, int]] = []  # (row, the earlier row of this batch with the same message id)
            for i, row in enumerate(rows):
                key = (row[4], row[3], row[5])  # channel, tenant, external_id
                if idempotent and row[5] is not None:
                    if key in known:
                        ids[i] = known[key]
                        continue
                    if key in first_in_batch:
                        repeats.append((i, first_in_batch[key]))
                        continue
                    first_in_batch[key] = i
                new_rows.append((i, row))
            if new_rows:
                first = conn.execute("SELECT verdicts_reserve_ids(%s)", (len(new_rows),)).fetchone()[0]
                for offset, (i, row) in enumerate(new_rows):
                    row[0] = ids[i] = first + offset
                with conn.cursor().copy(f"COPY verdicts ({COLUMNS}) FROM STDIN") as copy:
                    for _, row in new_rows:
                        copy.write_row(row)
            for i, j in repeats:
                ids[i] = ids[j]
        for (_, verdict), verdict_id in zip(items, ids, strict=True):
            verdict.id = verdict_id
        return ids

    def find_external(
        self, keys: Sequence[tuple[str, str]], channel: str = "api"
    ) -> dict[tuple[str, str], StoredVerdict]:
        if not keys:
            return {}
        with self._lock:
            ids = _existing_ids(self._live(), [(channel, tenant, ext) for tenant, ext in keys])
            if not ids:
                return {}
            rows = self._conn.execute(f"SELECT {COLUMNS} FROM verdicts WHERE id = ANY(%s)", (list(ids.values()),))
            by_id = {r[0]: r for r in rows}
        return {(tenant, ext): row_to_stored(by_id[vid], decoded=True) for (_, tenant, ext), vid in ids.items()}


def _existing_ids(conn: psycopg.Connection, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    """The oldest stored verdict id per (channel, tenant, external_id)."""
    if not keys:
        return {}
    channels, tenants, exts = (list(col) for col in zip(*sorted(set(keys)), strict=True))
    rows = conn.execute(
        "SELECT k.channel, k.tenant, k.ext, MIN(v.id) FROM unnest(%s::text[], %s::text[], %s::text[]) "
        "AS k(channel, tenant, ext) JOIN verdicts v ON v.tenant = k.tenant AND v.external_id = k.ext "
        "AND v.channel = k.channel GROUP BY k.channel, k.tenant, k.ext",
        (channels, tenants, exts),
    )
    return {(c, t, e): vid for c, t, e, vid in rows}


def _safe_url(url: str) -> str:
    """The URL without a password, for error messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unreadable URL)"
    info.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in info.items())

