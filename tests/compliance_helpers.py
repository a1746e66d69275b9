"""Test helpers for the compliance tests: an engine with the shipped text model and only the compliance
detector, so each test sees exactly the compliance signals (the other detectors have their own tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from skyshield.compliance.detector import ComplianceDetector
from skyshield.compliance.ledger import ConsentLedger
from skyshield.engine import Engine, TextModel
from skyshield.policy import Policy
from skyshield.text.extract import analyse_batch


@cache
def shipped_model() -> TextModel:
    from skyshield.text.classify import load_model

    return load_model(None)


@contextmanager
def open_ledger(backend: str, tmp_path: Path, key: bytes = b"k" * 32) -> Iterator[ConsentLedger]:
    """A ledger on SQLite (``tmp_path/c.db``) or on PostgreSQL (a schema of its own, dropped afterwards; the
    test skips with a message when no PostgreSQL can be reached)."""
    if backend == "sqlite":
        ledger = ConsentLedger(tmp_path / "c.db", key)
        try:
            yield ledger
        finally:
            ledger.close()
        return
    from service_helpers import postgres_schema
    from skyshield.config import load_settings
    from skyshield.store import open_store

    with postgres_schema() as url:
        store = open_store(load_settings(url, key_file=tmp_path / "pg.key"))
        ledger = ConsentLedger.from_store(store, key)
        store.close()
        try:
            yield ledger
        finally:
            ledger.close()


def make_engine(policy: Policy, ledger: ConsentLedger, **kwargs) -> tuple[Engine, ComplianceDetector]:
    detector = ComplianceDetector(policy, ledger, **kwargs)
    return Engine(policy, analyse_batch, shipped_model(), [detector]), detector
