"""Portable SQL on any DB-API connection the store hands out: SQLite (embedded) or PostgreSQL (psycopg 3).

Areas write their SQL once, with ``?`` placeholders and portable forms (``ON CONFLICT ... DO NOTHING``,
``INSERT ... RETURNING id``); :class:`Database` turns ``?`` into psycopg's ``%s`` on PostgreSQL, runs write
transactions the right way for each dialect and reopens a PostgreSQL connection the server dropped. Where the
dialects really differ (types in ``CREATE TABLE``, a two-argument ``MIN``), register one migration per dialect
(``register_migration(..., dialect="postgresql")``) or branch on :attr:`Database.sqlite`.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def is_sqlite(conn: Any) -> bool:
    return isinstance(conn, sqlite3.Connection)


def q(conn: Any, sql: str) -> str:
    """The statement in the connection's placeholder style (call it only for statements given parameters:
    a literal ``%`` is doubled for psycopg)."""
    return sql if is_sqlite(conn) else sql.replace("%", "%%").replace("?", "%s")


@contextmanager
def write_transaction(conn: Any) -> Iterator[Any]:
    """One write transaction; on SQLite it takes the write lock at once (``BEGIN IMMEDIATE``), so a
    read-then-write cannot interleave with another process's. The connection must be in autocommit mode."""
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


def lock_key(name: str) -> int:
    """A signed 63-bit id for ``pg_advisory_xact_lock`` (a collision only makes two writers wait for each other)."""
    raw = name.encode("utf-8")
    return (zlib.crc32(raw) << 31) ^ zlib.adler32(raw)


class Database:
    """One connection of either dialect behind ``?`` placeholders; safe to share between threads (one lock).

    ``connect`` makes a new autocommit connection (``store.connect`` does); it is called again when a
    PostgreSQL server dropped the connection (restart, failover), so the next call works again.
    """

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self.conn = connect()
        self.sqlite = is_sqlite(self.conn)
        self.dialect = "sqlite" if self.sqlite else "postgresql"
        self.lock = threading.RLock()
        self._depth = 0  # open transactions (a dropped connection is not replaced inside one)

    def _live(self) -> Any:
        if not self.sqlite and self._depth == 0 and self.conn.broken:
            self.conn = self._connect()
        return self.conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the DB-API cursor (``fetchone``, ``fetchall``, ``rowcount``)."""
        with self.lock:
            conn = self._live()
            if not args:
                return conn.execute(sql)
            return conn.execute(q(conn, sql), args)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.lock:
            conn = self._live()
            if self.sqlite:
                conn.executemany(sql, rows)
            else:
                conn.cursor().executemany(q(conn, sql), rows)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Every row as a dict keyed by column name."""
        with self.lock:
            cur = self.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def one(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        found = self.rows(sql, args)
        return found[0] if found else None

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column IN (?, ?, ...)`` on SQLite, ``column = ANY(?)`` with one array on PostgreSQL (one parameter
        to bind and plan instead of hundreds); returns the SQL fragment and its parameters."""
        if self.sqlite:
            return f"{column} IN ({','.join('?' * len(values))})", list(values)
        return f"{column} = ANY(?)", [list(values)]

    def insert(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run an ``INSERT`` and return the new row's ``id`` (``RETURNING id``: SQLite 3.35+ and PostgreSQL)."""
        return int(self.execute(sql + " RETURNING id", args).fetchone()[0])

    @contextmanager
    def transaction(self, *lock_names: str) -> Iterator[Database]:
        """All of it or nothing. ``lock_names`` serialise writers of those keys across hosts on PostgreSQL
        (transaction advisory locks, taken in sorted order); SQLite's ``BEGIN IMMEDIATE`` already serialises
        every writer of the file."""
        with self.lock, write_transaction(self._live()) as conn:
            self._depth += 1
            try:
                if not self.sqlite and lock_names:
                    keys = sorted({lock_key(n) for n in lock_names})
                    conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", (keys,))
                yield self
            finally:
                self._depth -= 1

    def close(self) -> None:
        with self.lock:
            self.conn.close()
