"""Shared fixtures: where the public corpora are, and a skip with a clear message when they are not."""

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
