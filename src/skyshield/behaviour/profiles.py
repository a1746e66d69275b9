"""Per-number profiles written by the batch jobs, loaded once at start so the online engine does not start cold.

``skyshield behaviour-features`` (Polars, one Parquet file) and ``skyshield spark`` (a Parquet folder of
``part-*.parquet``) write the same table: ``number`` + :data:`FEATURE_NAMES` as of the end of the records.
:class:`Profiles` keeps only those columns, as one float matrix and a ``number -> row`` dict, and
:class:`skyshield.behaviour.service.BehaviourService` uses it (``[detectors.behaviour] profiles``):

* a profiled number is not new: its first-seen time becomes ``now - maturity_days`` the first time it appears;
* the fraud-number model scores it from its first event on the profile's features (until the stream has
  ``model_min_events`` of its own, when the live features take over).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from skyshield.behaviour.definitions import FEATURE_NAMES

MATURITY = FEATURE_NAMES.index("maturity_days")


class ProfileError(ValueError):
    """The profiles file is missing or is not a profile table; the message names the file."""


class Profiles:
    def __init__(self, numbers: list[str], matrix: np.ndarray, source: str, job: str, written: str):
        self.index: dict[str, int] = {n: i for i, n in enumerate(numbers)}
        self.matrix = matrix  # rows in ``numbers`` order, columns in FEATURE_NAMES order
        self.source = source
        self.job = job
        self.written = written

    def __len__(self) -> int:
        return len(self.index)

    def row(self, number: str) -> np.ndarray | None:
        i = self.index.get(number)
        return None if i is None else self.matrix[i]

    def info(self, number: str) -> dict[str, Any] | None:
        """Where a number's stored profile came from (shown by ``GET /v1/numbers/{number}``), or None."""
        row = self.row(number)
        if row is None:
            return None
        return {"source": self.source, "job": self.job, "written": self.written,
                "maturity_days": round(float(row[MATURITY]), 3),
                "calls_7d": float(row[FEATURE_NAMES.index("out_calls_7d")]),
                "messages_7d": float(row[FEATURE_NAMES.index("msgs_sent_7d")])}

    @classmethod
    def load(cls, path: str | Path) -> Profiles:
        """Read a profiles Parquet file or folder (Polars, only the needed columns); :class:`ProfileError` if bad."""
        import polars as pl

        p = Path(path).expanduser()
        if p.is_dir():
            files = sorted(p.glob("*.parquet"))
            job = "spark (Parquet folder)"
        elif p.is_file():
            files = [p]
            job = "behaviour-features (Parquet file)"
        else:
            raise ProfileError(f"{p}: profiles file not found ([detectors.behaviour] profiles)")
        if not files:
            raise ProfileError(f"{p}: folder holds no *.parquet profiles ([detectors.behaviour] profiles)")
        try:
            schema = pl.scan_parquet([str(f) for f in files]).collect_schema()
            missing = [c for c in ("number", *FEATURE_NAMES) if c not in schema]
            if missing:
                raise ProfileError(f"{p}: not a behaviour profile table, missing column(s) {', '.join(missing[:5])}"
                                   + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
            frame = (pl.scan_parquet([str(f) for f in files])
                     .select(pl.col("number").cast(pl.String), *[pl.col(c).cast(pl.Float64) for c in FEATURE_NAMES])
                     .filter(pl.col("number").is_not_null())
                     .unique("number", keep="last", maintain_order=True)
                     .collect())
        except ProfileError:
            raise
        except Exception as exc:  # unreadable Parquet, wrong types: name the file, not a traceback mid-traffic
            raise ProfileError(f"{p}: cannot read behaviour profiles: {exc}") from exc
        # float32 halves the memory (counts stay exact; shares and durations keep ~7 digits)
        matrix = np.nan_to_num(frame.select(FEATURE_NAMES).to_numpy().astype(np.float32))
        written = datetime.fromtimestamp(max(f.stat().st_mtime for f in files), UTC).isoformat(timespec="seconds")
        return cls(frame["number"].to_list(), matrix, str(p), job, written)
