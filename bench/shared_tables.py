"""Consent ledger and blocks on SQLite (baseline, one host) and PostgreSQL (shared by hosts), in the same run.

Prints, per backend: opt-outs recorded per second (one transaction each, with the per-recipient lock on
PostgreSQL), consent lookups per second as the compliance detector makes them (``current`` + ``dnd_listed`` for a
batch of 500 recipients), and blocks created per second (block row + audit row in one transaction).

    .venv/bin/python bench/shared_tables.py            # needs PostgreSQL on 127.0.0.1:5432 (SKYSHIELD_TEST_PG)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from skyshield.compliance.ledger import ConsentLedger
from skyshield.config import load_settings
from skyshield.disposal.blocks import BlockBook
from skyshield.disposal.schema import DisposalDB
from skyshield.store import open_store

PG_BASE = os.environ.get("SKYSHIELD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
N_WRITES = 1000
BATCH = 500
ROUNDS = 40


def run(label: str, db_url: str, key_file: Path) -> None:
    settings = load_settings(db_url, key_file=key_file)
    ledger = ConsentLedger.from_settings(settings)
    numbers = [f"138{i:08d}" for i in range(N_WRITES)]
    t0 = time.perf_counter()
    for n in numbers:
        ledger.record_opt_out("acme", "京东", n)
    opt_out_s = time.perf_counter() - t0
    ledger.add_dnd(numbers[::10])
    pseudos = [ledger.pseudonym(f"138{i:08d}") for i in range(BATCH)]
    t0 = time.perf_counter()
    for _ in range(ROUNDS):
        ledger.current("acme", pseudos)
        ledger.dnd_listed(pseudos)
    lookup_s = time.perf_counter() - t0
    ledger.close()

    store = open_store(settings)
    blocks = BlockBook(DisposalDB(store, settings.hmac_key()))
    t0 = time.perf_counter()
    for i in range(200):
        blocks.create("number", f"170{i:08d}", reason="bench", decided_by="bench")
    block_s = time.perf_counter() - t0
    blocks.db.close()
    store.close()
    print(f"{label:<22} {N_WRITES / opt_out_s:>10,.0f} opt-outs/s {ROUNDS * BATCH / lookup_s:>12,.0f} recipients "
          f"looked up/s {200 / block_s:>8,.0f} blocks/s")


def main() -> int:
    print(f"{'backend':<22} {'record_opt_out':>21} {'current+dnd, 500 a batch':>35} {'create block':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite (WAL, baseline)", f"sqlite:///{tmp}/bench.db", Path(tmp) / "bench.key")
        try:
            import psycopg

            schema = f"bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_BASE, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
        except Exception as exc:  # noqa: BLE001 - say why and stop
            print(f"PostgreSQL at {PG_BASE} not reachable: {exc}", file=sys.stderr)
            return 1
        try:
            run("PostgreSQL", f"{PG_BASE}?options={quote(f'-csearch_path={schema}')}", Path(tmp) / "bench.key")
        finally:
            with psycopg.connect(PG_BASE, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
