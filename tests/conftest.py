"""Shared fixtures: where the public corpora are (a skip with a clear message when they are not), and the real
engine for API tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SKYSHIELD_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` (or $SKYSHIELD_DATA); tests that need it skip when it is absent."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"public corpora not found at {DATA_DIR} (set SKYSHIELD_DATA); data-driven test skipped")
    return DATA_DIR


@pytest.fixture
def loop():
    """An asyncio loop on a background thread (gateway tests: blocking peers such as smpplib run in the test)."""
    from gateway_helpers import LoopThread

    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The real engine (``build_engine(None)``), one per test module; skips when the text model is missing."""
    try:
        import skyshield.text.classify  # noqa: F401
        import skyshield.text.rules  # noqa: F401
    except ModuleNotFoundError as exc:
        pytest.skip(f"the text model is not in the tree yet ({exc.name}); API tests need the real engine")
    from skyshield.assembly import build_engine

    # Detectors with their own tables (the consent ledger) open $SKYSHIELD_DB: keep them out of the repo.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYSHIELD_DB", f"sqlite:///{tmp_path_factory.mktemp('engine') / 'engine.db'}")
        mp.delenv("SKYSHIELD_KEY_FILE", raising=False)
        yield build_engine(None)


@pytest.fixture(scope="module")
def api_client(engine, tmp_path_factory):
    """A TestClient on the real app (real engine, SQLite store in a temp folder) that returns 500s as responses."""
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app
    from skyshield.config import load_settings

    folder = tmp_path_factory.mktemp("api")
    app = create_app(None, load_settings(f"sqlite:///{folder / 'api.db'}"), engine=engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
