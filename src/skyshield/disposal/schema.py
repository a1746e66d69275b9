"""The disposal area's tables (reports, campaigns, blocks, appeals, review queue, console users) and the
one object that reads and writes them: :class:`DisposalDB`.

Everything lives in the same database as the verdicts (``store.connect()``: SQLite or PostgreSQL, the same
SQL through :class:`skyshield.store.sql.Database`), so a report can be tied to the verdict it complains about
and a regulator report can join both. Numbers are kept as the store's
pseudonyms (``h:…``) plus a masked form people can read (``138****8000``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from skyshield.store import VerdictStore, pseudonymise, register_migration
from skyshield.store.base import normalise_number
from skyshield.store.sql import Database

SCHEMA_V1 = """
CREATE TABLE disposal_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE disposal_campaigns (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    template_hash TEXT NOT NULL,      -- hash of the slotted text of the first message
    template TEXT NOT NULL,           -- that slotted text, for people to read
    example TEXT NOT NULL,            -- one original text
    minhash BLOB NOT NULL,            -- MinHash of the first message (uint64 hash values)
    size INTEGER NOT NULL DEFAULT 0,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE INDEX disposal_campaigns_size ON disposal_campaigns (size);
CREATE TABLE disposal_campaign_messages (
    verdict_id INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES disposal_campaigns(id),
    sender TEXT NOT NULL,
    time TEXT NOT NULL,
    action TEXT NOT NULL,
    category TEXT NOT NULL
);
CREATE INDEX disposal_campaign_messages_campaign ON disposal_campaign_messages (campaign_id, time);
CREATE TABLE disposal_reports (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    time TEXT NOT NULL,               -- when the reported message arrived, as the reporter says
    tenant TEXT NOT NULL,
    channel TEXT NOT NULL,            -- api, sms-7726, sms-12321
    reporter TEXT NOT NULL,           -- pseudonym
    sender TEXT NOT NULL,             -- pseudonym of the reported number
    sender_masked TEXT NOT NULL,
    text TEXT NOT NULL,
    verdict_id INTEGER,
    campaign_id INTEGER,
    verdict_action TEXT,              -- what the engine did with the reported message, when matched
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX disposal_reports_sender ON disposal_reports (sender);
CREATE INDEX disposal_reports_time ON disposal_reports (received_at);
CREATE TABLE disposal_sms_sessions (
    reporter TEXT PRIMARY KEY,        -- pseudonym: one pending 7726 report per reporter
    tenant TEXT NOT NULL,
    text TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE TABLE disposal_blocks (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('number', 'signature', 'template', 'link_domain', 'campaign')),
    value TEXT NOT NULL,              -- pseudonym, signature, template hash, domain or campaign id
    display TEXT NOT NULL,            -- what a person sees (masked number, template text...)
    tenant TEXT NOT NULL DEFAULT '',  -- '' blocks for every tenant
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL DEFAULT '{}',
    decided_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'lifted'))
);
CREATE TABLE disposal_appeals (
    id INTEGER PRIMARY KEY,
    block_id INTEGER NOT NULL REFERENCES disposal_blocks(id),
    appellant TEXT NOT NULL,
    statement TEXT NOT NULL,
    filed_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'kept', 'lifted')),
    decided_by TEXT,
    decided_at TEXT,
    decision_note TEXT
);
-- Append-only: every decision about a block (create, appeal, keep, lift, expire) is one row, never changed.
CREATE TABLE disposal_audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    block_id INTEGER,
    appeal_id INTEGER,
    note TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER disposal_audit_no_update BEFORE UPDATE ON disposal_audit
BEGIN SELECT RAISE(ABORT, 'disposal_audit is append-only'); END;
CREATE TRIGGER disposal_audit_no_delete BEFORE DELETE ON disposal_audit
BEGIN SELECT RAISE(ABORT, 'disposal_audit is append-only'); END;
CREATE TABLE disposal_review (
    id INTEGER PRIMARY KEY,
    verdict_id INTEGER UNIQUE,
    report_id INTEGER,
    source TEXT NOT NULL,             -- hold, uncertain, reported
    tenant TEXT NOT NULL,
    text TEXT NOT NULL,
    sender TEXT NOT NULL,
    action TEXT,
    category TEXT,
    unwanted REAL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'labelled', 'skipped')),
    label TEXT,                       -- a category, or category/subtype
    labelled_by TEXT,
    labelled_at TEXT,
    trained_in TEXT                   -- model version the label went into
);
CREATE INDEX disposal_review_status ON disposal_review (status, id);
CREATE TABLE console_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('operator', 'reviewer', 'auditor')),
    password TEXT NOT NULL,           -- scrypt$n$r$p$salt$hash
    created_at TEXT NOT NULL
);
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,      -- sha256 of the cookie value
    name TEXT NOT NULL REFERENCES console_users(name),
    expires_at TEXT NOT NULL
);
"""

register_migration("disposal", 1, SCHEMA_V1, description="reports, campaigns, blocks, appeals, review, console users")

# The same tables in PostgreSQL (64-bit identities, BYTEA, DOUBLE PRECISION; times stay ISO 8601 text so they
# compare the same way in both); a trigger keeps disposal_audit append-only, TRUNCATE included.
PG_SCHEMA_V1 = """
CREATE TABLE disposal_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE disposal_campaigns (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant TEXT NOT NULL,
    template_hash TEXT NOT NULL,
    template TEXT NOT NULL,
    example TEXT NOT NULL,
    minhash BYTEA NOT NULL,
    size BIGINT NOT NULL DEFAULT 0,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE INDEX disposal_campaigns_size ON disposal_campaigns (size);
CREATE TABLE disposal_campaign_messages (
    verdict_id BIGINT PRIMARY KEY,
    campaign_id BIGINT NOT NULL REFERENCES disposal_campaigns(id),
    sender TEXT NOT NULL,
    time TEXT NOT NULL,
    action TEXT NOT NULL,
    category TEXT NOT NULL
);
CREATE INDEX disposal_campaign_messages_campaign ON disposal_campaign_messages (campaign_id, time);
CREATE TABLE disposal_reports (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    received_at TEXT NOT NULL,
    time TEXT NOT NULL,
    tenant TEXT NOT NULL,
    channel TEXT NOT NULL,
    reporter TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_masked TEXT NOT NULL,
    text TEXT NOT NULL,
    verdict_id BIGINT,
    campaign_id BIGINT,
    verdict_action TEXT,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX disposal_reports_sender ON disposal_reports (sender);
CREATE INDEX disposal_reports_time ON disposal_reports (received_at);
CREATE TABLE disposal_sms_sessions (
    reporter TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    text TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE TABLE disposal_blocks (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('number', 'signature', 'template', 'link_domain', 'campaign')),
    value TEXT NOT NULL,
    display TEXT NOT NULL,
    tenant TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL DEFAULT '{}',
    decided_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'lifted'))
);
CREATE TABLE disposal_appeals (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    block_id BIGINT NOT NULL REFERENCES disposal_blocks(id),
    appellant TEXT NOT NULL,
    statement TEXT NOT NULL,
    filed_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'kept', 'lifted')),
    decided_by TEXT,
    decided_at TEXT,
    decision_note TEXT
);
CREATE TABLE disposal_audit (
    seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    block_id BIGINT,
    appeal_id BIGINT,
    note TEXT NOT NULL DEFAULT ''
);
CREATE FUNCTION disposal_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'disposal_audit is append-only'; END $$;
CREATE TRIGGER disposal_audit_no_change BEFORE UPDATE OR DELETE ON disposal_audit
    FOR EACH ROW EXECUTE FUNCTION disposal_audit_append_only();
CREATE TRIGGER disposal_audit_no_truncate BEFORE TRUNCATE ON disposal_audit
    FOR EACH STATEMENT EXECUTE FUNCTION disposal_audit_append_only();
CREATE TABLE disposal_review (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    verdict_id BIGINT UNIQUE,
    report_id BIGINT,
    source TEXT NOT NULL,
    tenant TEXT NOT NULL,
    text TEXT NOT NULL,
    sender TEXT NOT NULL,
    action TEXT,
    category TEXT,
    unwanted DOUBLE PRECISION,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'labelled', 'skipped')),
    label TEXT,
    labelled_by TEXT,
    labelled_at TEXT,
    trained_in TEXT
);
CREATE INDEX disposal_review_status ON disposal_review (status, id);
CREATE TABLE console_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('operator', 'reviewer', 'auditor')),
    password TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES console_users(name),
    expires_at TEXT NOT NULL
);
"""
register_migration("disposal", 1, PG_SCHEMA_V1, dialect="postgresql",
                   description="reports, campaigns, blocks, appeals, review, console users")


def iso(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(value: str | datetime | None) -> datetime:
    """An ISO 8601 time (``Z`` allowed; no zone means UTC) as an aware UTC datetime; ``None`` is now."""
    if value is None or value == "":
        return datetime.now(UTC)
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r} (write e.g. 2026-02-01T08:00:00+08:00)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def mask_number(number: str) -> str:
    """``13800138000`` → ``138****8000``: enough to recognise, not enough to call."""
    digits = normalise_number(number)
    if len(digits) <= 4:
        return digits
    if len(digits) <= 7:
        return digits[:2] + "*" * (len(digits) - 4) + digits[-2:]
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


class DisposalDB:
    """One connection to the shared database (SQLite or PostgreSQL) for the disposal area; safe to share
    between threads. SQL is written with ``?`` placeholders (see :class:`skyshield.store.sql.Database`)."""

    def __init__(self, store: VerdictStore, key: bytes):
        store.migrate()  # our migrations may have been registered after the store opened
        self.store = store
        self.key = key
        self.sql = Database(store.connect)
        self.sqlite = self.sql.sqlite
        self.lock = self.sql.lock

    def pseudonym(self, number: str) -> str:
        return pseudonymise(number, self.key)

    def close(self) -> None:
        self.sql.close()

    @contextmanager
    def write(self) -> Iterator[Database]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite): all of it or nothing. The object yielded
        has ``execute``, ``executemany`` and ``insert`` (returns the new id)."""
        with self.sql.transaction() as db:
            yield db

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.sql.rows(sql, args)

    def one(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        return self.sql.one(sql, args)

    def table_exists(self, name: str) -> bool:
        if self.sqlite:
            return self.one("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) is not None
        return self.one("SELECT to_regclass(?) IS NOT NULL AS x", (name,))["x"]

    def state(self, key: str, default: str = "") -> str:
        row = self.one("SELECT value FROM disposal_state WHERE key = ?", (key,))
        return row["value"] if row else default

    @staticmethod
    def set_state(conn: Database, key: str, value: str) -> None:
        conn.execute("INSERT INTO disposal_state VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                     (key, value))


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
