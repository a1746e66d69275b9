"""Persistence behind one small interface: SQLite by default, PostgreSQL for production.

``open_store()`` gives the store the settings (``SKYSHIELD_DB``) and the policy (``[store]``) ask for.
"""

from __future__ import annotations

from skyshield.config import Settings, load_settings
from skyshield.policy import Policy
from skyshield.store.base import (
    Counts,
    StoredVerdict,
    VerdictStore,
    normalise_number,
    pseudonymise,
    register_migration,
)

__all__ = [
    "Counts",
    "StoredVerdict",
    "VerdictStore",
    "normalise_number",
    "open_store",
    "open_store_for",
    "pseudonymise",
    "register_migration",
]


def open_store(settings: Settings | None = None, *, pseudonymise_numbers: bool = True) -> VerdictStore:
    """Open (creating and migrating as needed) the database named by ``settings.db_url``."""
    settings = settings or load_settings()
    if settings.db_url.startswith("sqlite:///"):
        from skyshield.store.sqlite import SQLiteStore

        return SQLiteStore(settings.sqlite_path, settings.hmac_key(), pseudonymise_numbers=pseudonymise_numbers)
    if settings.db_url.startswith(("postgresql://", "postgres://")):
        from skyshield.store.postgres import PostgresStore

        return PostgresStore(settings.db_url, settings.hmac_key(), pseudonymise_numbers=pseudonymise_numbers)
    raise ValueError(
        f"unsupported database URL {settings.db_url!r}: write sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    )


def open_store_for(policy: Policy, settings: Settings | None = None) -> VerdictStore:
    """``open_store`` with the options the policy's ``[store]`` section sets."""
    section = policy.section("store")
    return open_store(settings, pseudonymise_numbers=bool(section["pseudonymise_numbers"]))
