"""Batch behaviour features: the table in :mod:`skyshield.behaviour.definitions` compiled to Polars.

:func:`batch_features` computes every feature of every number at once (Polars lazy). The names, windows and
formulas live in ``definitions`` (see its table); this module only turns each :class:`WindowFeature` into
Polars expressions. ``stream.StreamFeatures`` computes the same table incrementally and ``spark.job`` compiles
it to Spark; tests check all three agree on simulator output.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from skyshield.behaviour.definitions import (
    FEATURE_NAMES,
    FEATURES,
    GAP_FROM,
    HISTORY,
    MADE,
    NIGHT_END_HOUR,
    PER_WINDOW,
    RECEIVED,
    SENT,
    SIDE_KEY,
    WINDOWS,
    WindowFeature,
    window_bounds,
)

# Re-exported: older code imports the constants from here.
__all__ = ["FEATURE_NAMES", "HISTORY", "NIGHT_END_HOUR", "PER_WINDOW", "WINDOWS", "batch_features", "prepare_calls",
           "to_seconds"]

#: 64-bit hashes of the number columns: group-bys and joins on integers are several times faster than on
#: strings (two numbers sharing a hash, odds ~n²/2⁶⁴, would merge; the stream keeps exact strings).
_HASHED = {"caller": "_ch", "callee": "_eh", "sender": "_sh"}


def to_seconds(col: str) -> pl.Expr:
    return pl.col(col).dt.epoch("us").cast(pl.Float64) / 1e6


def prepare_calls(calls: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Calls sorted by time with the per-event facts of the definitions: ``ts``, ``night``, ``is_new``."""
    lf = calls.lazy() if isinstance(calls, pl.DataFrame) else calls
    return (
        lf.sort("start", maintain_order=True)
        .with_columns(
            to_seconds("start").alias("ts"),
            (pl.col("start").dt.hour() < NIGHT_END_HOUR).alias("night"),
            pl.col("caller").hash().alias(_HASHED["caller"]),
            pl.col("callee").hash().alias(_HASHED["callee"]),
        )
        .with_columns((pl.col("_ch") ^ (pl.col("_eh") * 0x9E3779B97F4A7C15)).is_first_distinct().alias("is_new"))
    )


class _SideQuery:
    """The Polars query of one side (made / received / sent). Every per-window quantity first becomes an
    ordinary column (a flag, or a value that is null outside the window) so the group-by runs only Polars'
    native aggregations; ``finish`` turns helper aggregates into features after the group-by."""

    def __init__(self) -> None:
        self.cols: dict[str, pl.Expr] = {}
        self.aggs: list[pl.Expr] = []
        self.finish: list[pl.Expr] = []
        self.helpers: list[str] = []
        self.distinct: list[WindowFeature] = []

    def add(self, f: WindowFeature, window: str, lo: float) -> None:
        name = f"{f.name}_{window}"
        inw = pl.col("ts") > lo
        self.cols.setdefault(f"_in_{window}", inw)
        n = pl.col(f"_in_{window}").sum().cast(pl.Float64)
        if f.agg == "count":
            self.aggs.append(n.alias(name))
        elif f.agg == "share":
            self.cols.setdefault(f"_{f.of}_{window}", inw & pl.col(f.of))
            self.aggs.append((pl.col(f"_{f.of}_{window}").sum() / pl.max_horizontal(n, pl.lit(1.0))).alias(name))
        elif f.agg == "quantile":
            col = f"_{f.of}_{f.when}_{window}"
            keep = inw & pl.col(f.when) if f.when else inw
            self.cols.setdefault(col, pl.when(keep).then(pl.col(f.of)))
            self.aggs.append(pl.col(col).quantile(f.q, "linear").alias(name))
        elif f.agg == "cv":
            col = f"_{f.of}_{window}"
            self.cols.setdefault(col, pl.when(pl.col(GAP_FROM) > lo).then(pl.col(f.of)))
            mean, std, k = (f"_{name}_{s}" for s in ("mean", "std", "n"))
            self.aggs += [pl.col(col).mean().alias(mean), pl.col(col).std(ddof=0).alias(std),
                          pl.col(col).count().alias(k)]
            self.finish.append(pl.when((pl.col(k) >= 2) & (pl.col(mean) > 0)).then(pl.col(std) / pl.col(mean))
                               .otherwise(0.0).alias(name))
            self.helpers += [mean, std, k]
        elif f.agg == "distinct":
            if f not in self.distinct:
                self.distinct.append(f)
        else:
            raise ValueError(f"unknown aggregate {f.agg!r} for {f.name}")

    def run(self, frame: pl.LazyFrame, key: str, lows: dict[str, float]) -> pl.LazyFrame:
        """One row per number of ``frame[key]``: ``_k`` (its hash), ``number`` and this side's features."""
        k = _HASHED[key]
        table = (
            frame.with_columns(**self.cols).group_by(k).agg(pl.col(key).first().alias("number"), *self.aggs)
            .with_columns(*self.finish).drop(self.helpers)
        )
        for f in self.distinct:
            # distinct values in a window = values whose latest event falls inside it: one small group-by per
            # feature instead of a distinct aggregate per window
            of = _HASHED.get(f.of, f.of)
            latest = frame.filter(pl.col(of).is_not_null()).group_by(k, of).agg(pl.col("ts").max().alias("_last"))
            counts = latest.group_by(k).agg(*[(pl.col("_last") > lo).sum().cast(pl.Float64).alias(f"{f.name}_{w}")
                                              for w, lo in lows.items()])
            table = table.join(counts, on=k, how="left")
        return table.rename({k: "_k"})


def _window_features(calls: pl.LazyFrame, messages: pl.LazyFrame, t_end: float) -> pl.LazyFrame:
    """All features of :data:`FEATURES` (every window in one pass per side), keyed by ``_k`` and ``number``."""
    lows = window_bounds(t_end)
    win = calls.filter(pl.col("ts") > t_end - HISTORY)
    # the caller's previous call (rows are in time order; a window function is far cheaper than a sort)
    win = win.with_columns(pl.col("ts").shift().over("_ch").alias(GAP_FROM))
    win = win.with_columns((pl.col("ts") - pl.col(GAP_FROM)).alias("gap"))
    sent = messages.filter(pl.col("ts") > t_end - HISTORY).with_columns(pl.col("sender").hash().alias("_sh"))
    frames = {MADE: win, RECEIVED: win, SENT: sent}
    out: pl.LazyFrame | None = None
    for side, frame in frames.items():
        query = _SideQuery()
        for w, lo in lows.items():
            for f in FEATURES:
                if f.side == side:
                    query.add(f, w, lo)
        table = query.run(frame, SIDE_KEY[side], lows)
        if out is None:
            out = table
        else:
            out = (out.join(table, on="_k", how="full", coalesce=True)
                   .with_columns(pl.coalesce("number", "number_right").alias("number")).drop("number_right"))
    assert out is not None
    ratios = [(pl.col(f"{f.of}_{w}") / (pl.col(f"{f.denominator}_{w}") + 1.0)).alias(f"{f.name}_{w}")
              for w in WINDOWS for f in FEATURES if f.agg == "ratio"]
    return out.with_columns(pl.exclude("number", "_k").fill_null(0.0)).with_columns(ratios)


def batch_features(
    calls: pl.DataFrame | pl.LazyFrame,
    messages: pl.DataFrame | pl.LazyFrame | None = None,
    at: datetime | None = None,
    activation: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Features of every number active in the last 7 days before ``at`` (default: the last event).

    Returns ``number`` + :data:`FEATURE_NAMES`, sorted by number. ``activation`` (columns ``number``,
    ``activated``) gives number ages; without it a number's age counts from its first appearance in
    ``calls``/``messages``.
    """
    c = prepare_calls(calls)
    m_lf = (messages.lazy() if isinstance(messages, pl.DataFrame) else messages) if messages is not None else None
    if m_lf is None:
        m_lf = pl.LazyFrame(schema={"sender": pl.String, "recipient": pl.String, "time": pl.Datetime("us")})
    m = m_lf.with_columns(to_seconds("time").alias("ts"))
    if at is None:
        last = pl.concat([c.select(pl.col("ts").max()), m.select(pl.col("ts").max())]).max().collect().item()
        t_end = float(last) if last is not None else 0.0
    else:
        t_end = at.timestamp() if at.tzinfo else (at - datetime(1970, 1, 1)).total_seconds()
    c = c.filter(pl.col("ts") <= t_end)  # ``is_new`` was computed over all history first, as a stream sees it
    m = m.filter(pl.col("ts") <= t_end)
    result = _window_features(c, m, t_end)
    if activation is not None:
        act = activation.lazy().select(pl.col("number").hash().alias("_k"), to_seconds("activated").alias("first"))
    else:  # first appearance anywhere, grouped on the numbers' hashes (cheaper than on strings)
        act = pl.concat([
            c.select(pl.col("_ch").alias("_k"), "ts"), c.select(pl.col("_eh").alias("_k"), "ts"),
            m.select(pl.col("sender").hash().alias("_k"), "ts"), m.select(pl.col("recipient").hash().alias("_k"), "ts"),
        ]).group_by("_k").agg(pl.col("ts").min().alias("first"))
    result = (
        result.join(act, on="_k", how="left")
        .with_columns(((t_end - pl.col("first").fill_null(t_end)) / 86_400).clip(lower_bound=0).alias("maturity_days"))
        .with_columns(pl.exclude("number").fill_null(0.0))
        .select("number", *FEATURE_NAMES)
    )
    return result.collect().sort("number")
