"""Call and message records: their schemas, and ingest from CSV or Parquet with row-level rejects.

A call record is one call attempt as a switch logs it (caller, callee, start, duration, answered,
direction, cell, device); a message record is one SMS as an SMS centre or aggregator logs it. Ingest
keeps every good row and reports every bad one with its row number (1 = first data row) and the reason,
so nothing is silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

CALL_SCHEMA: dict[str, pl.DataType] = {
    "caller": pl.String(),
    "callee": pl.String(),
    "start": pl.Datetime("us"),
    "duration": pl.Float64(),  # seconds; 0 for unanswered attempts
    "answered": pl.Boolean(),
    "direction": pl.String(),  # "out" (the caller's view, the default) or "in"
    "cell": pl.String(),  # cell / area id of the caller, optional
    "device": pl.String(),  # device id (IMEI hash) of the caller, optional
}
CALL_REQUIRED = ("caller", "callee", "start")

MESSAGE_SCHEMA: dict[str, pl.DataType] = {
    "sender": pl.String(),
    "recipient": pl.String(),
    "time": pl.Datetime("us"),
    "signature": pl.String(),  # 【签名】 text, optional
    "template": pl.String(),  # template fingerprint (hash of the text with variables masked), optional
    "is_code": pl.Boolean(),  # a one-time verification code
    "code_used": pl.Boolean(),  # whether the code was entered on the site (null = unknown)
}
MESSAGE_REQUIRED = ("sender", "recipient", "time")

_TRUE = ["1", "true", "t", "yes", "y"]
_FALSE = ["0", "false", "f", "no", "n"]


@dataclass
class Reject:
    row: int  # 1-based data row (CSV line number minus the header)
    reason: str


@dataclass
class IngestResult:
    frame: pl.DataFrame
    rejects: list[Reject] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.frame.height} good rows, {len(self.rejects)} rejected"
        for r in self.rejects[:10]:
            text += f"\n  row {r.row}: {r.reason}"
        if len(self.rejects) > 10:
            text += f"\n  ... and {len(self.rejects) - 10} more"
        return text


def _read_raw(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet" or path.is_dir():
        try:
            return pl.read_parquet(path if path.is_file() else str(path / "**" / "*.parquet"))
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise ValueError(f"{path}: cannot read as Parquet: {str(exc).splitlines()[0][:200]}") from exc
    if suffix in {".csv", ".txt", ".tsv"}:
        sep = "\t" if suffix == ".tsv" else ","
        try:
            return pl.read_csv(path, infer_schema=False, separator=sep, truncate_ragged_lines=False)
        except pl.exceptions.PolarsError as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{path}: cannot read as CSV: {first}") from exc
    raise ValueError(f"{path}: unknown record file type {suffix!r} (use .csv, .tsv or .parquet)")


def _parse_bool(col: pl.Expr) -> pl.Expr:
    s = col.cast(pl.String).str.strip_chars().str.to_lowercase()
    return pl.when(s.is_in(_TRUE)).then(True).when(s.is_in(_FALSE)).then(False).otherwise(None)


def _parse_time(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    s = col.cast(pl.String).str.strip_chars()
    # ISO 8601 first; plain epoch seconds as a fallback.
    iso = s.str.to_datetime(time_unit="us", strict=False, time_zone=None)
    epoch = (s.cast(pl.Float64, strict=False) * 1_000_000).cast(pl.Int64, strict=False).cast(pl.Datetime("us"))
    return pl.coalesce(iso, epoch)


def _kind(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "time (ISO 8601 or epoch seconds)"
    return {pl.Float64(): "number", pl.Boolean(): "boolean (1/0, true/false, yes/no)"}.get(dtype, str(dtype))


def _validate(raw: pl.DataFrame, schema: dict[str, pl.DataType], required: tuple[str, ...], path: Path,
              defaults: dict[str, object], timezone: str = "UTC") -> IngestResult:
    missing = [c for c in required if c not in raw.columns]
    if missing:
        have = ", ".join(repr(c[:30]) for c in raw.columns[:8]) + (", ..." if raw.width > 8 else "")
        raise ValueError(f"{path}: missing required column(s) {', '.join(missing)}; have {have}")
    df = raw.with_row_index("_row", offset=1)
    parsed: list[pl.Expr] = [pl.col("_row")]
    problems: list[pl.Expr] = []
    for name, dtype in schema.items():
        if name not in df.columns:
            parsed.append(pl.lit(defaults.get(name), dtype=dtype).alias(name))
            continue
        col = pl.col(name)
        present = col.is_not_null() & (col.cast(pl.String).str.strip_chars() != "")
        if dtype == pl.String():
            value = col.cast(pl.String).str.strip_chars()
            value = pl.when(present).then(value).otherwise(pl.lit(defaults.get(name), dtype=pl.String))
        elif isinstance(dtype, pl.Datetime):
            given = raw.schema[name]
            if isinstance(given, pl.Datetime):  # typed input: zone-aware times become local wall-clock
                value = col.dt.convert_time_zone(timezone).dt.replace_time_zone(None) if given.time_zone else col
                value = value.cast(dtype)
            else:
                value = _parse_time(col, dtype)
        elif dtype == pl.Boolean():
            value = col if raw.schema[name] == dtype else _parse_bool(col)
            if name in defaults:
                value = pl.when(present).then(value).otherwise(pl.lit(defaults[name]))
        else:
            value = col.cast(dtype, strict=False)
            if name in defaults:
                value = pl.when(present).then(value).otherwise(pl.lit(defaults[name], dtype=dtype))
        parsed.append(value.alias(name))
        if name in required:
            problems.append(pl.when(~present).then(pl.lit(f"{name} is empty")))
        problems.append(
            pl.when(present & value.is_null()).then(
                pl.lit(f"{name} is not a valid {_kind(dtype)}: ") + col.cast(pl.String).str.slice(0, 40))
        )
    if "duration" in schema and "duration" in df.columns:
        problems.append(pl.when(pl.col("duration").cast(pl.Float64, strict=False) < 0).then(pl.lit("duration < 0")))
    if "direction" in schema and "direction" in df.columns:
        d = pl.col("direction").cast(pl.String).str.strip_chars().str.to_lowercase()
        problems.append(pl.when(d.is_not_null() & (d != "") & ~d.is_in(["in", "out"]))
                        .then(pl.lit("direction must be in or out")))
    checked = df.select(
        *parsed,
        pl.concat_str(problems, separator="; ", ignore_nulls=True).alias("_problem"),
    )
    if "direction" in checked.columns:
        checked = checked.with_columns(pl.col("direction").str.to_lowercase())
    bad = checked.filter(pl.col("_problem") != "")
    good = checked.filter(pl.col("_problem") == "").drop("_row", "_problem")
    rejects = [Reject(int(r), str(p)) for r, p in zip(bad["_row"], bad["_problem"], strict=False)]
    return IngestResult(good.cast(schema), rejects)  # type: ignore[arg-type]


def read_calls(path: str | Path, timezone: str = "UTC") -> IngestResult:
    """Call records from CSV/TSV/Parquet (a file, or a folder of Parquet parts).

    Times are kept as naive local wall-clock (night hours are read from them); zone-aware Parquet times are
    converted to ``timezone`` first.
    """
    path = Path(path)
    return _validate(_read_raw(path), CALL_SCHEMA, CALL_REQUIRED, path,
                     {"duration": 0.0, "answered": False, "direction": "out"}, timezone)


def read_messages(path: str | Path, timezone: str = "UTC") -> IngestResult:
    """Message records from CSV/TSV/Parquet (a file, or a folder of Parquet parts); times as in :func:`read_calls`."""
    path = Path(path)
    return _validate(_read_raw(path), MESSAGE_SCHEMA, MESSAGE_REQUIRED, path, {"is_code": False}, timezone)
