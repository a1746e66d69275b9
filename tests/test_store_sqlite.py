"""What only the SQLite store does: numbers never reach the file in clear, the key file is private, the
database is in WAL mode and survives reopening; number normalisation. The store contract (save, get, search,
counts, idempotent saves, migrations, concurrent writers) runs on SQLite and PostgreSQL in test_store_backends.py."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from skyshield.config import load_settings
from skyshield.store import normalise_number, open_store, pseudonymise
from store_helpers import sample_message as _message
from store_helpers import sample_verdict as _verdict


@pytest.fixture
def settings(tmp_path):
    return load_settings(f"sqlite:///{tmp_path / 'verdicts.db'}")


@pytest.fixture
def store(settings):
    with open_store(settings) as s:
        yield s


def test_phone_numbers_are_pseudonymised_at_rest(store, settings):
    [vid] = store.save([(_message(sender="+86 138-0013-8000"), _verdict())])
    got = store.get(vid)
    assert got.numbers_pseudonymised
    assert got.sender.startswith("h:") and "13800138000" not in got.sender
    # The same number written another way has the same pseudonym, so a sender's history stays together.
    assert got.sender == pseudonymise("008613800138000", settings.hmac_key())
    # Neither number appears anywhere in the database files.
    store.close()
    raw = b"".join(p.read_bytes() for p in settings.sqlite_path.parent.glob("verdicts.db*"))
    assert b"13800138000" not in raw and b"13900139000" not in raw
    assert b"h:" in raw


def test_the_key_file_is_private_and_reused(settings):
    key = settings.hmac_key()
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(settings.key_file).st_mode) == 0o600
    assert settings.hmac_key() == key
    assert settings.key_file == settings.sqlite_path.with_suffix(".key")


def test_numbers_written_differently_normalise_alike():
    assert normalise_number("+86 138-0013-8000") == "13800138000"
    assert normalise_number("008613800138000") == "13800138000"
    assert normalise_number("13800138000") == "13800138000"
    assert normalise_number("+44 7700 900123") == "+447700900123"
    assert normalise_number("AMAZON") == "AMAZON"
    key = b"k" * 32
    assert pseudonymise("13800138000", key) != pseudonymise("13800138001", key)
    assert pseudonymise("13800138000", key) != pseudonymise("13800138000", b"j" * 32)
    assert pseudonymise("", key) == ""


def test_database_is_wal_and_survives_reopening(settings):
    with open_store(settings) as store:
        [vid] = store.save([(_message(), _verdict())])
    conn = sqlite3.connect(settings.sqlite_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version WHERE component = 'core'").fetchone()[0] == 1
    conn.close()
    with open_store(settings) as store:
        assert store.get(vid).text.startswith("【某宝】")
