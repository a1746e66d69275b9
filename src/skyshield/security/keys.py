"""API keys per tenant with scopes, kept in the store's database as SHA-256 hashes.

A key reads ``sks_<key id>_<secret>``; the key id (8 hex digits) is public (shown by ``keys list``, written in
the audit log), the secret is shown once at creation and never stored. Keys are 160 random bits, so one
SHA-256 is enough (no slow password hash is needed for a secret nobody chose).

Scopes: ``check`` (POST routes: check messages and calls, record consents, ...), ``read`` (GET routes) and
``admin`` (everything, any tenant: a request's own ``tenant`` fields are then honoured).

While no key was ever created the API runs in *open local mode* (the tenant comes from the request body);
once one exists every ``/v1`` route needs ``Authorization: Bearer <key>``. Revoking every key does not
reopen the API.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from skyshield.security.audit import append as audit_append
from skyshield.security.audit import ensure_schema
from skyshield.security.db import q, write_transaction
from skyshield.store import VerdictStore, register_migration

SCOPES = ("check", "read", "admin")
KEY_PREFIX = "sks_"
_KEY_FORMAT = re.compile(r"sks_([0-9a-f]{8})_([A-Za-z0-9_-]{20,64})")
_TENANT_FORMAT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_SCHEMA = """
CREATE TABLE api_keys (
    key_id     TEXT PRIMARY KEY,   -- the public part of the key: sks_<key_id>_<secret>
    tenant     TEXT NOT NULL,
    scopes     TEXT NOT NULL,      -- comma-separated: check,read,admin
    key_hash   TEXT NOT NULL,      -- SHA-256 of the whole key, hex
    label      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT                -- NULL while the key works
);
"""
_KEY_COLUMNS = "key_id, tenant, scopes, label, created_at, revoked_at"
register_migration("security", 1, _SCHEMA, description="API keys per tenant (hashes only)")


class KeyRequestError(ValueError):
    """A key request that cannot be honoured (unknown scope, bad tenant name, unknown key id)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    tenant: str
    scopes: frozenset[str]
    label: str
    created_at: str
    revoked_at: str | None = None

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def allows(self, scope: str) -> bool:
        return self.admin or scope in self.scopes

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "tenant": self.tenant,
            "scopes": sorted(self.scopes),
            "label": self.label,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def parse_scopes(text: str | list[str]) -> frozenset[str]:
    items = text.split(",") if isinstance(text, str) else text
    scopes = frozenset(s.strip().lower() for s in items if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        problem = f"unknown scope {unknown[0]!r}" if unknown else "no scope given"
        raise KeyRequestError(f"{problem} (use {', '.join(SCOPES)})")
    return scopes


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyRing:
    """The API keys in one store's database. Thread-safe; every lookup reads the database, so a key created
    or revoked by ``skyshield keys`` in another process takes effect on the next request."""

    def __init__(self, store: VerdictStore):
        ensure_schema(store)
        self._store = store
        self._conn = store.connect()
        self._lock = threading.Lock()
        #: Once a key exists it always will (rows are revoked, never deleted): no need to ask again.
        self._ever = False

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def any_keys(self) -> bool:
        """True once any key was created (revoked ones count: revoking all keys does not reopen the API)."""
        if self._ever:
            return True
        with self._lock:
            self._ever = self._conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None
        return self._ever

    def create(
        self, tenant: str, scopes: str | list[str], *, label: str = "", actor: str = "cli"
    ) -> tuple[str, ApiKey]:
        """A new key (the full secret, to show once) and its record; audited as ``key.create``."""
        if not _TENANT_FORMAT.fullmatch(tenant or ""):
            raise KeyRequestError(f"tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-'")
        parsed = parse_scopes(scopes)
        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(20)
        full = f"{KEY_PREFIX}{key_id}_{secret}"
        record = ApiKey(key_id, tenant, parsed, label, _now())
        with self._lock, write_transaction(self._conn):
            self._conn.execute(
                q(self._conn, "INSERT INTO api_keys (key_id, tenant, scopes, key_hash, label, created_at) "
                              "VALUES (?, ?, ?, ?, ?, ?)"),
                (key_id, tenant, ",".join(sorted(parsed)), _digest(full), label, record.created_at),
            )
        self._ever = True
        self._audit(actor, "key.create", key_id, {"tenant": tenant, "scopes": sorted(parsed), "label": label})
        return full, record

    def revoke(self, key_id: str, *, actor: str = "cli") -> ApiKey:
        key_id = key_id.removeprefix(KEY_PREFIX).split("_")[0]
        with self._lock, write_transaction(self._conn):
            found = self._row(key_id)
            if found is None:
                raise KeyRequestError(f"no key with id {key_id!r} (see skyshield keys list)")
            if found.revoked_at is None:
                self._conn.execute(q(self._conn, "UPDATE api_keys SET revoked_at = ? WHERE key_id = ?"),
                                   (_now(), key_id))
        record = self.get(key_id)
        assert record is not None
        if found.revoked_at is None:
            self._audit(actor, "key.revoke", key_id, {"tenant": record.tenant})
        return record

    def get(self, key_id: str) -> ApiKey | None:
        with self._lock:
            return self._row(key_id)

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key_id, tenant, scopes, label, created_at, revoked_at FROM api_keys ORDER BY created_at, key_id"
            ).fetchall()
        return [_to_key(r) for r in rows]

    def authenticate(self, presented: str) -> ApiKey | None:
        """The live key record for a presented key, or None (unknown, wrong secret, revoked)."""
        m = _KEY_FORMAT.fullmatch(presented.strip())
        if not m:
            return None
        with self._lock:
            row = self._conn.execute(
                q(self._conn, "SELECT key_id, tenant, scopes, label, created_at, revoked_at, key_hash "
                              "FROM api_keys WHERE key_id = ?"),
                (m.group(1),),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[6], _digest(presented.strip())):
            return None
        key = _to_key(row[:6])
        return None if key.revoked_at else key

    def _row(self, key_id: str) -> ApiKey | None:
        row = self._conn.execute(
            q(self._conn, f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = ?"),
            (key_id,),
        ).fetchone()
        return _to_key(row) if row else None

    def _audit(self, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
        conn = self._store.connect()
        try:
            audit_append(conn, actor, action, subject, details)
        finally:
            conn.close()


def _to_key(row: tuple) -> ApiKey:
    key_id, tenant, scopes, label, created_at, revoked_at = row
    return ApiKey(key_id, tenant, frozenset(scopes.split(",")), label, created_at, revoked_at)
