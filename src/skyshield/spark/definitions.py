"""The behaviour window features written once, as data, for every engine that computes them in batch.

Each feature of :mod:`skyshield.behaviour.features` (same names, windows and formulas; see its table) is a
:class:`WindowFeature`: which side of an event it belongs to (the number that *made* a call, *received*
one, or *sent* a message), the aggregate (count, share of a flag, quantile of a value, coefficient of
variation of the gaps, distinct values, or a ratio of two other features) and the event columns it reads.
The per-event facts (``ts``, ``night``, ``is_new``, ``gap``) are defined here too, once.

Two small compilers turn the table into a query: :func:`polars_features` (Polars, one machine) and
:func:`skyshield.spark.job.spark_features` (Spark, a cluster). The tests check both against
``behaviour.features.batch_features`` on simulated records, so the three agree to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from skyshield.behaviour.features import FEATURE_NAMES, HISTORY, NIGHT_END_HOUR, PER_WINDOW, WINDOWS

MADE, RECEIVED, SENT = "made", "received", "sent"


@dataclass(frozen=True, slots=True)
class WindowFeature:
    """One per-window feature. ``agg``: count | share | quantile | cv | distinct | ratio."""

    name: str
    side: str  # made | received | sent | derived (ratio of two features)
    agg: str
    of: str | None = None  # the event column it reads (a flag, a value, a key), or for ratio the numerator
    when: str | None = None  # an event flag that must also hold (answered, for durations)
    q: float = 0.0  # quantile
    denominator: str | None = None  # ratio: of / (denominator + 1)


FEATURES: tuple[WindowFeature, ...] = (
    WindowFeature("out_calls", MADE, "count"),
    WindowFeature("in_calls", RECEIVED, "count"),
    WindowFeature("distinct_callees", MADE, "distinct", of="callee"),
    WindowFeature("answer_rate", MADE, "share", of="answered"),
    WindowFeature("dur_p50", MADE, "quantile", of="duration", when="answered", q=0.5),
    WindowFeature("dur_p90", MADE, "quantile", of="duration", when="answered", q=0.9),
    WindowFeature("out_in_ratio", "derived", "ratio", of="out_calls", denominator="in_calls"),
    WindowFeature("night_share", MADE, "share", of="night"),
    WindowFeature("new_callee_share", MADE, "share", of="is_new"),
    WindowFeature("gap_cv", MADE, "cv", of="gap"),
    WindowFeature("distinct_cells", MADE, "distinct", of="cell"),
    WindowFeature("msgs_sent", SENT, "count"),
)
#: Which column holds the number each side groups by.
SIDE_KEY = {MADE: "caller", RECEIVED: "callee", SENT: "sender"}
#: The gap's own window test: the previous call must lie inside the window too.
GAP_FROM = "prev"

assert tuple(f.name for f in FEATURES) == PER_WINDOW, "the feature table must follow behaviour.features.PER_WINDOW"


def window_bounds(t_end: float) -> dict[str, float]:
    """The exclusive lower bound of every window: an event at ``t`` is inside when ``lo < t <= t_end``."""
    return {name: t_end - seconds for name, seconds in WINDOWS.items()}


# -- Polars ---------------------------------------------------------------------------------------


def _pl_events(calls: pl.LazyFrame) -> pl.LazyFrame:
    """Per-call facts: ``ts`` (epoch s), ``night`` (record clock), ``is_new`` (first call of the pair ever)."""
    return (
        calls.sort("start", maintain_order=True)
        .with_columns((pl.col("start").dt.epoch("us").cast(pl.Float64) / 1e6).alias("ts"),
                      (pl.col("start").dt.hour() < NIGHT_END_HOUR).alias("night"))
        .with_columns(pl.struct("caller", "callee").is_first_distinct().alias("is_new"))
    )


def _pl_agg(f: WindowFeature, inw: pl.Expr, lo: float, suffix: str) -> list[pl.Expr]:
    n = inw.sum().cast(pl.Float64)
    name = f"{f.name}_{suffix}"
    if f.agg == "count":
        return [n.alias(name)]
    if f.agg == "share":
        return [((inw & pl.col(f.of)).sum() / pl.max_horizontal(n, pl.lit(1.0))).alias(name)]
    if f.agg == "quantile":
        keep = inw & pl.col(f.when) if f.when else inw
        return [pl.col(f.of).filter(keep).quantile(f.q, "linear").alias(name)]
    if f.agg == "distinct":
        return [pl.col(f.of).filter(inw).drop_nulls().n_unique().cast(pl.Float64).alias(name)]
    if f.agg == "cv":
        gaps = pl.col(f.of).filter(pl.col(GAP_FROM) > lo)
        mean, std = gaps.mean(), gaps.std(ddof=0)
        return [pl.when((gaps.count() >= 2) & (mean > 0)).then(std / mean).otherwise(0.0).alias(name)]
    raise ValueError(f"unknown aggregate {f.agg!r} for {f.name}")


def polars_features(calls: pl.DataFrame | pl.LazyFrame, messages: pl.DataFrame | pl.LazyFrame | None = None,
                    at: datetime | None = None) -> pl.DataFrame:
    """The feature table compiled to Polars: ``number`` + :data:`FEATURE_NAMES`, sorted by number."""
    c = _pl_events(calls.lazy())
    m = (messages.lazy() if messages is not None else
         pl.LazyFrame(schema={"sender": pl.String, "recipient": pl.String, "time": pl.Datetime("us")}))
    m = m.with_columns((pl.col("time").dt.epoch("us").cast(pl.Float64) / 1e6).alias("ts"))
    if at is None:
        t_end = pl.concat([c.select(pl.col("ts").max()), m.select(pl.col("ts").max())]).max().collect().item() or 0.0
    else:
        t_end = at.timestamp() if at.tzinfo else (at - datetime(1970, 1, 1)).total_seconds()
    c, m = c.filter(pl.col("ts") <= t_end), m.filter(pl.col("ts") <= t_end)
    win = c.filter(pl.col("ts") > t_end - HISTORY).with_columns(pl.col("ts").shift().over("caller").alias(GAP_FROM))
    win = win.with_columns((pl.col("ts") - pl.col(GAP_FROM)).alias("gap"))
    sides = {MADE: win, RECEIVED: win, SENT: m.filter(pl.col("ts") > t_end - HISTORY)}
    lows = window_bounds(t_end)
    tables = []
    for side, frame in sides.items():
        aggs = [e for w, lo in lows.items() for f in FEATURES if f.side == side
                for e in _pl_agg(f, pl.col("ts") > lo, lo, w)]
        tables.append(frame.group_by(SIDE_KEY[side]).agg(aggs).rename({SIDE_KEY[side]: "number"}))
    out = tables[0]
    for t in tables[1:]:
        out = out.join(t, on="number", how="full", coalesce=True)
    ratios = [(pl.col(f"{f.of}_{w}") / (pl.col(f"{f.denominator}_{w}") + 1.0)).alias(f"{f.name}_{w}")
              for w in WINDOWS for f in FEATURES if f.agg == "ratio"]
    first = pl.concat([c.select(pl.col(k).alias("number"), "ts") for k in ("caller", "callee")]
                      + [m.select(pl.col(k).alias("number"), "ts") for k in ("sender", "recipient")])
    first = first.group_by("number").agg(pl.col("ts").min().alias("first"))
    out = (
        out.with_columns(pl.exclude("number").fill_null(0.0)).with_columns(ratios)
        .join(first, on="number", how="left")
        .with_columns(((t_end - pl.col("first").fill_null(t_end)) / 86_400).clip(lower_bound=0).alias("maturity_days"))
        .select("number", *FEATURE_NAMES)
    )
    return out.collect().sort("number")
