"""SIM-box rule: one device, many SIMs, all calling out, none receiving, none moving.

A SIM-box (GSM gateway) terminates bypassed international traffic as if it were local calls: a rack of SIMs
in one place, each SIM making many calls and receiving none (Murynets et al., INFOCOM 2014). The rule reads
four facts per number; the streaming service and the batch evaluation both call :meth:`SimboxRule.fires`.
Call centres are stationary too and get few call-backs: where device ids are known they pass because
each agent's phone carries one number; without device ids the rule cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import polars as pl

from skyshield.behaviour.definitions import HISTORY
from skyshield.behaviour.features import batch_features


@dataclass
class SimboxRule:
    min_calls_24h: int = 40
    min_numbers_per_device: int = 4

    def fires(self, out_calls_24h: float, in_calls_24h: float, distinct_cells_24h: float,
              numbers_on_device: int | None) -> bool:
        """``numbers_on_device`` is None where the records carry no device ids."""
        # exactly one cell: zero means the records carry no cell, and then "never moves" is unknown
        if out_calls_24h < self.min_calls_24h or in_calls_24h > 0 or distinct_cells_24h != 1:
            return False
        return numbers_on_device is None or numbers_on_device >= self.min_numbers_per_device


def evaluate(calls: pl.DataFrame, labels: pl.DataFrame, days: int, rule: SimboxRule | None = None) -> dict[str, Any]:
    """Apply the rule at the end of each simulated day; a number counts as flagged if it ever fired."""
    from skyshield.behaviour.simulate import START

    rule = rule or SimboxRule()
    flagged: set[str] = set()
    for day in range(1, days + 1):
        at = START + timedelta(days=day)
        c = calls.filter(pl.col("start") <= at)
        f = batch_features(c, at=at)
        recent = c.filter(pl.col("start") > at - timedelta(seconds=HISTORY))
        per_device = recent.filter(pl.col("device").is_not_null()).group_by("device").agg(
            pl.col("caller").n_unique().alias("n"))
        dev = (recent.select("caller", "device").unique().join(per_device, on="device")
               .group_by("caller").agg(pl.col("n").max()).rename({"caller": "number"}))
        f = f.join(dev, on="number", how="left")
        for number, out24, in24, cells, n in f.select("number", "out_calls_24h", "in_calls_24h",
                                                       "distinct_cells_24h", "n").iter_rows():
            if rule.fires(out24, in24, cells, n):
                flagged.add(number)
    kinds = dict(labels.select("number", "kind").iter_rows())
    truth = {n for n, k in kinds.items() if k == "simbox"}
    tp = len(flagged & truth)
    return {
        "flagged": len(flagged), "simbox_numbers": len(truth), "precision": round(tp / max(1, len(flagged)), 4),
        "recall": round(tp / max(1, len(truth)), 4),
        "false_positives_by_kind": {k: sum(1 for n in flagged - truth if kinds.get(n) == k)
                                    for k in sorted({kinds.get(n, "unknown") for n in flagged - truth})},
    }
