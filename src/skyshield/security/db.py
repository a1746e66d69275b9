"""Small helpers so the security tables work on any DB-API connection the store hands out.

SQLite takes ``?`` placeholders, psycopg takes ``%s``; the SQL here is otherwise portable. The helpers
now live in :mod:`skyshield.store.sql`, shared with the compliance ledger and the disposal tables.
"""

from __future__ import annotations

from skyshield.store.sql import is_sqlite, q, write_transaction

__all__ = ["is_sqlite", "q", "write_transaction"]
