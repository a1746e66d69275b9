"""Small helpers so the security tables work on any DB-API connection the store hands out.

SQLite takes ``?`` placeholders, psycopg takes ``%s``; the SQL here is otherwise portable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def is_sqlite(conn: Any) -> bool:
    return isinstance(conn, sqlite3.Connection)


def q(conn: Any, sql: str) -> str:
    """The statement in the connection's placeholder style."""
    return sql if is_sqlite(conn) else sql.replace("?", "%s")


@contextmanager
def write_transaction(conn: Any) -> Iterator[Any]:
    """One write transaction; on SQLite it takes the write lock at once (``BEGIN IMMEDIATE``), so a
    read-then-insert (the audit chain) cannot interleave with another process's."""
    if is_sqlite(conn):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    else:
        with conn.transaction():
            yield conn
