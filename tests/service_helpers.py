"""PostgreSQL and Redis for tests of the production path: use the running ones, start them from Debian's
packages when they are installed but stopped, skip with a clear message when neither works."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

PG_BASE = os.environ.get("SKYSHIELD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SKYSHIELD_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(port: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _port_open(port):
            return True
        time.sleep(0.2)
    return False


def _start_postgres() -> None:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if versions and shutil.which("pg_ctlcluster"):
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                       capture_output=True, timeout=30, check=False)


def _start_redis() -> None:
    if shutil.which("redis-server"):
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
                        "--save", "", "--appendonly", "no"], capture_output=True, timeout=30, check=False)


def require_postgres() -> str:
    """The base URL of a reachable PostgreSQL, else skip."""
    if not _port_open(5432):
        _start_postgres()
        if not _wait(5432):
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started "
                        "(apt-get install postgresql, or set SKYSHIELD_TEST_PG)")
    import psycopg

    try:
        psycopg.connect(PG_BASE, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_BASE} refuses connections: {exc}")
    return PG_BASE


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose tables land in a fresh schema of their own, dropped afterwards."""
    import psycopg

    base = require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def require_redis() -> str:
    """The URL of a reachable Redis (database 15, emptied by the caller's keys only), else skip."""
    if not _port_open(6379):
        _start_redis()
        if not _wait(6379):
            pytest.skip("Redis is not reachable on 127.0.0.1:6379 and could not be started "
                        "(apt-get install redis-server, or set SKYSHIELD_TEST_REDIS)")
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} does not answer: {exc}")
    return REDIS_URL
