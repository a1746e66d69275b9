"""An append-only audit log with a hash chain: who changed what (policy, API keys, blocks, appeals, labels).

Each row stores the hash of the row before it and its own hash over (previous hash, id, time, actor, action,
subject, details), so editing or deleting a row in the database file breaks the chain at that row, and
``skyshield audit-log verify`` names it. SQLite triggers also refuse UPDATE and DELETE on the table.

Other areas call :func:`record_audit`::

    from skyshield.security.audit import record_audit
    record_audit("console:alice", "block.create", "number:h:ab12...", {"reason": "fraud reports", "expires": "..."},
                 store=state.store)

Keep phone numbers out of ``subject``/``details`` (use the store's pseudonyms): the log is kept forever.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from skyshield.security.db import is_sqlite, q, write_transaction
from skyshield.store import VerdictStore, register_migration

GENESIS = "0" * 64

_SCHEMA = """
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,      -- ISO 8601 UTC
    actor     TEXT NOT NULL,      -- who: "cli:<user>", "key:<key id>", "console:<login>", "system"
    action    TEXT NOT NULL,      -- what: "key.create", "key.revoke", "policy.change", "block.create", ...
    subject   TEXT NOT NULL,      -- on what: a key id, a policy source, a number's pseudonym
    details   TEXT NOT NULL,      -- JSON object
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"""
register_migration("audit", 1, _SCHEMA, description="append-only audit log with a hash chain")

_migrated: weakref.WeakSet = weakref.WeakSet()


def ensure_schema(store: VerdictStore) -> None:
    """Apply the security migrations to a store opened before this module was imported."""
    if store not in _migrated:
        store.migrate()
        _migrated.add(store)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def entry_hash(prev_hash: str, entry_id: int, at: str, actor: str, action: str, subject: str, details: str) -> str:
    canonical = json.dumps([prev_hash, entry_id, at, actor, action, subject, details], ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _details_json(details: dict[str, Any] | None) -> str:
    return json.dumps(details or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def append(conn: Any, actor: str, action: str, subject: str, details: dict[str, Any] | None = None) -> AuditEntry:
    """Append one entry on ``conn`` (in its own write transaction)."""
    for name, value in (("actor", actor), ("action", action)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"audit {name} must be a non-empty string")
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    body = _details_json(details)
    with write_transaction(conn):
        if not is_sqlite(conn):  # SQLite's BEGIN IMMEDIATE already serialises appends; PostgreSQL needs a lock
            conn.execute("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
        row = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        entry_id, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        digest = entry_hash(prev, entry_id, at, actor, action, subject, body)
        conn.execute(
            q(conn, "INSERT INTO audit_log (id, at, actor, action, subject, details, prev_hash, hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            (entry_id, at, actor, action, subject, body, prev, digest),
        )
    return AuditEntry(entry_id, at, actor, action, subject, json.loads(body), prev, digest)


def record_audit(
    actor: str, action: str, subject: str, details: dict[str, Any] | None = None, *, store: VerdictStore
) -> AuditEntry:
    """Append an entry to the audit log in ``store``'s database; returns it (with its chain hash)."""
    ensure_schema(store)
    conn = store.connect()
    try:
        return append(conn, actor, action, subject, details)
    finally:
        conn.close()


def entries(store: VerdictStore, *, limit: int | None = None) -> list[AuditEntry]:
    """Entries oldest first (the last ``limit`` when given)."""
    ensure_schema(store)
    conn = store.connect()
    try:
        sql = "SELECT id, at, actor, action, subject, details, prev_hash, hash FROM audit_log ORDER BY id"
        rows = conn.execute(sql).fetchall()
    finally:
        conn.close()
    if limit is not None:
        rows = rows[-limit:]
    return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]


@dataclass(frozen=True, slots=True)
class ChainCheck:
    ok: bool
    entries: int
    #: The first row that does not verify, and why.
    broken_id: int | None = None
    problem: str = ""


def verify(store: VerdictStore) -> ChainCheck:
    """Recompute the chain from the first row: every row must link to the one before and hash to itself."""
    ensure_schema(store)
    conn = store.connect()
    try:
        rows = conn.execute(
            "SELECT id, at, actor, action, subject, details, prev_hash, hash FROM audit_log ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    prev, expected_id = GENESIS, 1
    for entry_id, at, actor, action, subject, details, prev_hash, digest in rows:
        if entry_id != expected_id:
            return ChainCheck(False, len(rows), entry_id, f"row {expected_id} is missing (next id is {entry_id})")
        if prev_hash != prev:
            return ChainCheck(False, len(rows), entry_id, "prev_hash does not match the row before")
        if entry_hash(prev_hash, entry_id, at, actor, action, subject, details) != digest:
            return ChainCheck(False, len(rows), entry_id, "the row's content does not match its hash (edited)")
        prev, expected_id = digest, expected_id + 1
    return ChainCheck(True, len(rows))


def policy_digest(policy: Any) -> str:
    """SHA-256 of the merged policy (defaults + the operator's file), independent of key order."""
    return hashlib.sha256(json.dumps(policy.data, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def record_policy_if_changed(store: VerdictStore, policy: Any, actor: str = "system") -> AuditEntry | None:
    """Audit ``policy.change`` when the policy a server starts with differs from the last one on record."""
    digest = policy_digest(policy)
    ensure_schema(store)
    conn = store.connect()
    try:
        row = conn.execute(
            "SELECT details FROM audit_log WHERE action = 'policy.change' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row and json.loads(row[0]).get("sha256") == digest:
            return None
        previous = json.loads(row[0]).get("sha256") if row else None
        return append(conn, actor, "policy.change", policy.source, {"sha256": digest, "previous_sha256": previous})
    finally:
        conn.close()
