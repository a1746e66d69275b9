"""The embedded store: one SQLite file in WAL mode, so readers (``skyshield why``) never wait on the writer.

A batch is written with one ``executemany`` inside one ``BEGIN IMMEDIATE`` transaction; ids are
allocated inside that transaction, so several processes may write to the same file safely.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skyshield.events import Action, Category, Channel, Message, Signal, Verdict, utcnow
from skyshield.store.base import MIGRATIONS, Counts, StoredVerdict, VerdictStore, pseudonymise, register_migration

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

_COLUMNS = (
    "id, stored_at, msg_time, tenant, channel, external_id, sender, recipient, numbers_hashed, text, action, "
    "category, subtype, unwanted, score, model_version, probabilities, signals"
)
_INSERT = f"INSERT INTO verdicts ({_COLUMNS}) VALUES ({', '.join('?' * 18)})"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


# default=str: evidence may carry values JSON cannot (sets, Paths); keep what they say, never fail the batch.
# One encoder for every row: json.dumps with options builds a new one per call.
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
#: Enum member → its value; ``.value`` is a slow descriptor and this runs several times per stored row.
_VALUE: dict[Any, str] = {m: m.value for enum in (Action, Category, Channel) for m in enum}


def _signal_dict(s: Signal) -> dict[str, Any]:
    return {"name": s.name, "score": s.score, "points": s.points, "evidence": s.evidence}


class SQLiteStore(VerdictStore):
    """Verdicts in one SQLite file. ``path=":memory:"`` keeps them in memory (tests)."""

    def __init__(self, path: str | Path, key: bytes | None, *, pseudonymise_numbers: bool = True):
        if pseudonymise_numbers and not key:
            raise ValueError("pseudonymising phone numbers needs a key (Settings.hmac_key())")
        self.path = str(path)
        self._key = key
        self.pseudonymise_numbers = pseudonymise_numbers
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = self.connect()
        try:
            self.migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- connections and schema -------------------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a process crash; only an OS crash may lose the last commits.
        conn.execute("PRAGMA synchronous=NORMAL")
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
            ours = (m for m in MIGRATIONS if m.dialect == "sqlite")
            pending = sorted(ours, key=lambda m: (m.component != "core", m.component, m.version))
            for m in pending:
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

    def schema_versions(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT component, MAX(version) FROM schema_version GROUP BY component")
            return dict(rows.fetchall())

    # -- writing ----------------------------------------------------------------------------------

    def _number(self, number: str) -> str:
        return pseudonymise(number, self._key) if self.pseudonymise_numbers and self._key else number

    def save(self, items: Sequence[tuple[Message, Verdict]], *, idempotent: bool = False) -> list[int]:
        if not items:
            return []
        stored_at = _iso(utcnow())
        hashed = int(self.pseudonymise_numbers)
        rows = []
        for message, verdict in items:
            rows.append(
                [
                    None,
                    stored_at,
                    _iso(message.time),
                    message.tenant,
                    _VALUE[message.channel],
                    message.external_id,
                    self._number(message.sender),
                    self._number(message.recipient),
                    hashed,
                    message.text,
                    _VALUE[verdict.action],
                    _VALUE[verdict.category],
                    verdict.subtype,
                    float(verdict.unwanted),
                    float(verdict.score),
                    verdict.model_version,
                    _json(verdict.probabilities),
                    _json([_signal_dict(s) for s in verdict.signals]),
                ]
            )
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
                row = self._conn.execute(f"SELECT {_COLUMNS} FROM verdicts WHERE id = ?", (vid,)).fetchone()
                out[(tenant, ext)] = _row_to_stored(row)
        return out

    # -- reading ----------------------------------------------------------------------------------

    def get(self, verdict_id: int) -> StoredVerdict | None:
        if not -(2**63) <= verdict_id < 2**63:  # beyond SQLite's integers: there is no such row
            return None
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM verdicts WHERE id = ?", (verdict_id,)).fetchone()
        return _row_to_stored(row) if row else None

    def search(
        self,
        *,
        sender: str | None = None,
        recipient: str | None = None,
        action: str | None = None,
        category: str | None = None,
        tenant: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[StoredVerdict]:
        where: list[str] = []
        args: list[Any] = []
        for column, number in (("sender", sender), ("recipient", recipient)):
            if number:
                # Rows written with pseudonymisation off hold the number as written.
                candidates = {number}
                if self._key:
                    candidates.add(pseudonymise(number, self._key))
                where.append(f"{column} IN ({', '.join('?' * len(candidates))})")
                args.extend(sorted(candidates))
        for column, value in (("action", action), ("category", category), ("tenant", tenant)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if since:
            where.append("stored_at >= ?")
            args.append(_iso(since))
        if until:
            where.append("stored_at < ?")
            args.append(_iso(until))
        if before_id:
            where.append("id < ?")
            args.append(before_id)
        sql = f"SELECT {_COLUMNS} FROM verdicts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(0, int(limit)))
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [_row_to_stored(r) for r in rows]

    def counts(self, *, since: datetime | None = None, tenant: str | None = None) -> Counts:
        where: list[str] = []
        args: list[Any] = []
        if since:
            where.append("stored_at >= ?")
            args.append(_iso(since))
        if tenant:
            where.append("tenant = ?")
            args.append(tenant)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        result = Counts()
        with self._lock:
            for action, category, n in self._conn.execute(
                f"SELECT action, category, COUNT(*) FROM verdicts{clause} GROUP BY action, category", args
            ):
                result.total += n
                result.by_action[action] = result.by_action.get(action, 0) + n
                result.by_category[category] = result.by_category.get(category, 0) + n
        return result

    def close(self) -> None:
        with self._lock:
            self._conn.close()


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


def _row_to_stored(row: tuple) -> StoredVerdict:
    (vid, stored_at, msg_time, tenant, channel, external_id, sender, recipient, hashed, text, action, category,
     subtype, unwanted, score, model_version, probabilities, signals) = row
    verdict = Verdict.from_dict(
        {
            "id": vid,
            "action": action,
            "category": category,
            "subtype": subtype,
            "unwanted": unwanted,
            "score": score,
            "model_version": model_version,
            "probabilities": json.loads(probabilities),
            "signals": json.loads(signals),
        }
    )
    return StoredVerdict(
        id=vid,
        stored_at=datetime.fromisoformat(stored_at),
        verdict=verdict,
        text=text,
        sender=sender,
        recipient=recipient,
        time=datetime.fromisoformat(msg_time),
        channel=Channel(channel),
        tenant=tenant,
        external_id=external_id,
        numbers_pseudonymised=bool(hashed),
    )
