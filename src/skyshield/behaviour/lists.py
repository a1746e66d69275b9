"""Number reputation lists: import a file of reported numbers once, look numbers up in memory.

``skyshield lists import FILE --source NAME`` reads a CSV/TXT (one number per row; the column named
``number``, ``pattern`` or ``phone`` if present, else the first), normalises the numbers, counts repeats
(a number reported on several days) and stores them in the database of
:func:`skyshield.config.load_settings` (table ``reputation_numbers``): the SQLite file, or with
``SKYSHIELD_DB=postgresql://...`` the shared PostgreSQL database, so every host loads the same lists. A
SQLite file named by ``--db`` / ``lists_db`` overrides it. The engine loads the table into a dict at start and
answers lookups with the sources that list a number.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from skyshield.config import load_settings
from skyshield.store.base import register_migration
from skyshield.store.sql import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reputation_numbers (
    number TEXT NOT NULL,
    source TEXT NOT NULL,
    reports INTEGER NOT NULL,
    imported_at TEXT NOT NULL,
    PRIMARY KEY (number, source)
) WITHOUT ROWID
"""
register_migration("reputation", 1, _SCHEMA.replace(" WITHOUT ROWID", ""), dialect="postgresql",
                   description="number reputation lists")
_NUMBER_COLUMNS = ("number", "pattern", "phone", "phone_number", "caller")


def normalise_number(raw: str) -> str:
    """Digits only; ``+1``/``+86``/``0086`` country codes dropped so US and CN lists match local forms."""
    s = raw.strip()
    intl = s.startswith("+") or s.startswith("00")
    digits = re.sub(r"\D", "", s)
    if s.startswith("00"):
        digits = digits[2:]
    if intl:
        if digits.startswith("1") and len(digits) == 11:
            return digits[1:]
        if digits.startswith("86") and len(digits) >= 12:
            return digits[2:]
    return digits


def _norm_expr(col: pl.Expr) -> pl.Expr:
    s = col.cast(pl.String).str.strip_chars()
    intl = s.str.starts_with("+") | s.str.starts_with("00")
    d = s.str.replace_all(r"\D", "")
    d = pl.when(s.str.starts_with("00")).then(d.str.slice(2)).otherwise(d)
    return (
        pl.when(intl & d.str.starts_with("1") & (d.str.len_chars() == 11)).then(d.str.slice(1))
        .when(intl & d.str.starts_with("86") & (d.str.len_chars() >= 12)).then(d.str.slice(2))
        .otherwise(d)
    )


@dataclass
class ImportReport:
    source: str
    rows: int
    numbers: int
    rejected: int
    seconds: float
    examples_rejected: list[tuple[int, str]]

    def summary(self) -> str:
        text = (f"imported {self.numbers} distinct numbers from {self.rows} rows into list '{self.source}' "
                f"in {self.seconds:.2f}s; {self.rejected} rows rejected")
        for row, value in self.examples_rejected:
            text += f"\n  row {row}: not a phone number: {value!r}"
        return text


def _postgres_url(db: str | Path | None) -> str | None:
    """The PostgreSQL URL the lists live in, or None for a SQLite file."""
    url = str(db) if db else load_settings().db_url
    return url if url.startswith(("postgresql://", "postgres://")) else None


def _sqlite_path(db: str | Path | None) -> Path:
    if db:
        return Path(str(db).removeprefix("sqlite:///"))
    return Path(load_settings().db_url.removeprefix("sqlite:///"))


def _connect(db: str | Path | None) -> Database:
    url = _postgres_url(db)
    if url is not None:
        from skyshield.store import open_store

        store = open_store(load_settings(url))  # applies the migrations (reputation_numbers included)
        store.close()
        return Database(store.connect)
    path = _sqlite_path(db)
    path.parent.mkdir(parents=True, exist_ok=True)

    def connect():
        from skyshield.store.sqlite_conn import connect_sqlite

        con = connect_sqlite(str(path))
        con.execute(_SCHEMA)
        return con

    return Database(connect)


def import_file(path: str | Path, source: str, db: str | Path | None = None) -> ImportReport:
    """Load ``path`` into the reputation table under ``source`` (replacing that source's earlier rows)."""
    t0 = time.perf_counter()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not source or not re.fullmatch(r"[\w.\-]+", source):
        raise ValueError(f"list source name {source!r}: use letters, digits, '.', '-' or '_'")
    try:
        raw = pl.read_csv(path, infer_schema=False, has_header=True, truncate_ragged_lines=True)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"{path}: cannot read as CSV: {str(exc).strip().splitlines()[0][:200]}") from exc
    if raw.width == 0:
        raise ValueError(f"{path}: empty file")
    col = next((c for c in raw.columns if c.strip().lower() in _NUMBER_COLUMNS), raw.columns[0])
    # a headerless file: its first line is a number, keep it as data
    if re.fullmatch(r"[+\d\s()\-]{6,}", col):
        raw = pl.read_csv(path, infer_schema=False, has_header=False, truncate_ragged_lines=True)
        col = raw.columns[0]
    df = raw.select(pl.col(col).alias("raw")).with_row_index("row", offset=1).with_columns(
        _norm_expr(pl.col("raw")).alias("number"))
    ok = pl.col("number").str.len_chars().is_between(5, 15)
    bad = df.filter(~ok | pl.col("number").is_null())
    good = df.filter(ok).group_by("number").agg(pl.len().alias("reports"))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    con = _connect(db)
    try:
        with con.transaction():
            con.execute("DELETE FROM reputation_numbers WHERE source = ?", (source,))
            con.executemany("INSERT INTO reputation_numbers (number, source, reports, imported_at) VALUES (?, ?, ?, ?)",
                            [(n, source, int(r), now) for n, r in good.iter_rows()])
    finally:
        con.close()
    return ImportReport(source, df.height, good.height, bad.height, time.perf_counter() - t0,
                        [(int(r), str(v)) for r, v in bad.select("row", "raw").head(5).iter_rows()])


class ReputationLists:
    """In-memory view of the reputation table: number -> {source: reports}."""

    def __init__(self, entries: dict[str, dict[str, int]] | None = None):
        self.entries = entries or {}

    @classmethod
    def load(cls, db: str | Path | None = None) -> ReputationLists:
        if _postgres_url(db) is None:
            path = _sqlite_path(db)
            if not path.exists():
                return cls()
            import sqlite3

            con = sqlite3.connect(path)
            try:
                rows = con.execute("SELECT number, source, reports FROM reputation_numbers").fetchall()
            except sqlite3.OperationalError:  # table not created yet: no lists imported
                rows = []
            finally:
                con.close()
        else:
            con = _connect(db)
            try:
                rows = con.execute("SELECT number, source, reports FROM reputation_numbers").fetchall()
            finally:
                con.close()
        entries: dict[str, dict[str, int]] = {}
        for number, source, reports in rows:
            entries.setdefault(number, {})[source] = reports
        return cls(entries)

    def lookup(self, number: str) -> dict[str, int]:
        """Sources listing ``number`` with their report counts (empty when listed nowhere)."""
        return self.entries.get(normalise_number(number), {})

    def sources(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for per in self.entries.values():
            for s in per:
                counts[s] = counts.get(s, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self.entries)
