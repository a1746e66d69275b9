"""Shared pieces for the disposal tests: an API client on a fresh database, and a loan-spam wave."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

WAVE_SIGNATURES = ["优选", "速贷", "金服", "易借", "惠民", "快e贷", "融通", "信达"]


def wave(n: int = 8, start: int = 0) -> list[dict]:
    """A spam wave that rotates numbers, signatures, names, amounts and links but keeps its wording."""
    return [
        {"text": f"【{WAVE_SIGNATURES[i % len(WAVE_SIGNATURES)]}】尊敬的{'王李张刘'[i % 4]}先生，您的额度已提升至"
                 f"{50000 + 1000 * i}元，点击 http://loan{i}.cn/a 立即领取，回T退订",
         "sender": f"1700000{i:04d}", "recipient": f"1380013{i:04d}", "id": f"wave-{i}"}
        for i in range(start, start + n)
    ]


PERSONAL = {"text": "妈，我晚上七点到家，不用等我吃饭", "sender": "13911112222", "recipient": "13800000001",
            "id": "personal-1"}


def make_client(tmp_path, monkeypatch, db: str | None = None):
    """An API client on a fresh database: ``tmp_path/disposal.db``, or ``db`` (a PostgreSQL URL)."""
    try:
        import skyshield.text.classify  # noqa: F401
    except ModuleNotFoundError as exc:  # pragma: no cover - the text area is part of the tree
        pytest.skip(f"the text model is not in the tree ({exc.name})")
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app
    from skyshield.config import load_settings

    db = db or f"sqlite:///{tmp_path / 'disposal.db'}"
    monkeypatch.setenv("SKYSHIELD_DB", db)
    if db.startswith("sqlite:///"):
        monkeypatch.delenv("SKYSHIELD_KEY_FILE", raising=False)
    else:  # the key lives beside a SQLite file; with PostgreSQL it is a file of its own
        monkeypatch.setenv("SKYSHIELD_KEY_FILE", str(tmp_path / "disposal.key"))
    return TestClient(create_app(None, load_settings(db)))


@contextlib.contextmanager
def database_url(backend: str, tmp_path) -> Iterator[str]:
    """``sqlite:///tmp_path/disposal.db``, or a PostgreSQL schema of its own (skips when none is reachable)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'disposal.db'}"
        return
    from service_helpers import postgres_schema

    with postgres_schema() as url:
        yield url


def api_fixtures():
    """The ``db`` (SQLite, then PostgreSQL) and ``client`` fixtures of the disposal API tests:
    ``db, client = api_fixtures()`` at a test module's top level."""

    @pytest.fixture(params=["sqlite", "postgresql"])
    def db(request, tmp_path):
        with database_url(request.param, tmp_path) as url:
            yield url

    @pytest.fixture
    def client(tmp_path, monkeypatch, db):
        with make_client(tmp_path, monkeypatch, db) as c:
            yield c

    return db, client


def raw_connection(db: str):
    """A plain autocommit connection to the test's database, to poke at tables as an attacker with access would."""
    if db.startswith("sqlite:///"):
        import sqlite3

        return sqlite3.connect(db.removeprefix("sqlite:///"), isolation_level=None)
    import psycopg

    return psycopg.connect(db, autocommit=True)


def database_errors() -> tuple[type[Exception], ...]:
    import sqlite3

    try:
        import psycopg
    except ModuleNotFoundError:  # pragma: no cover - psycopg is a dependency
        return (sqlite3.DatabaseError,)
    return (sqlite3.DatabaseError, psycopg.Error)


def check(client, messages: list[dict]) -> list[dict]:
    r = client.post("/v1/messages:check", json={"messages": messages})
    assert r.status_code == 200, r.text
    return r.json()["results"]


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@contextlib.contextmanager
def live_server(app):
    """Run ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def disposal_of(app):
    """The app's disposal service (what the routes use)."""
    from types import SimpleNamespace

    from skyshield.api.disposal import get_disposal

    return get_disposal(SimpleNamespace(app=app))


def login(browser, base: str, name: str, password: str):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{base}/console/")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}/console/")
    return page
