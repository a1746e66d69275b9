"""Per-number behaviour features over sliding windows: ONE definition for batch and streaming.

For a number ``x`` at reference time ``T`` and each window ``w`` (1 h, 24 h, 7 d) the features read the
events with ``T - w < t <= T``:

==================== =====================================================================================
out_calls_w          calls made by ``x``
in_calls_w           calls received by ``x``
distinct_callees_w   different numbers ``x`` called
answer_rate_w        answered / made (0 with no calls)
dur_p50_w, dur_p90_w duration percentiles (linear interpolation) of ``x``'s answered calls (0 if none)
out_in_ratio_w       out_calls / (in_calls + 1)
night_share_w        share of made calls starting 00:00-05:59 (record clock)
new_callee_share_w   share of made calls that were ``x``'s first ever call to that callee
gap_cv_w             regularity: std / mean of the gaps between consecutive made calls (0 with < 2 gaps);
                     dialers are regular (low), people are bursty (high)
distinct_cells_w     different cells ``x`` called from (SIM-boxes never move)
msgs_sent_w          messages sent by ``x``
maturity_days        days since the number was activated (or first seen, without an activation table)
==================== =====================================================================================

:func:`batch_features` computes them with Polars (lazy) for every number at once; ``stream.StreamFeatures``
keeps per-number state updated per event and computes the same names with the same formulas; a test checks
the two agree on simulator output.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

WINDOWS: dict[str, int] = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
NIGHT_END_HOUR = 6
PER_WINDOW = ("out_calls", "in_calls", "distinct_callees", "answer_rate", "dur_p50", "dur_p90", "out_in_ratio",
              "night_share", "new_callee_share", "gap_cv", "distinct_cells", "msgs_sent")
FEATURE_NAMES: list[str] = [f"{f}_{w}" for w in WINDOWS for f in PER_WINDOW] + ["maturity_days"]
HISTORY = max(WINDOWS.values())


def to_seconds(col: str) -> pl.Expr:
    return pl.col(col).dt.epoch("us").cast(pl.Float64) / 1e6


def prepare_calls(calls: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Calls sorted by time with the per-event facts both paths share: ``ts``, ``night``, ``is_new``."""
    lf = calls.lazy() if isinstance(calls, pl.DataFrame) else calls
    return (
        lf.sort("start", maintain_order=True)
        .with_columns(
            to_seconds("start").alias("ts"),
            (pl.col("start").dt.hour() < NIGHT_END_HOUR).alias("night"),
            (pl.int_range(pl.len()).over("caller", "callee") == 0).alias("is_new"),
        )
    )


def _window_aggs(calls: pl.LazyFrame, messages: pl.LazyFrame, t_end: float, name: str, seconds: int) -> pl.LazyFrame:
    lo = t_end - seconds
    win = calls.filter((pl.col("ts") > lo) & (pl.col("ts") <= t_end))
    n = pl.len().cast(pl.Float64)
    gaps = pl.col("ts").diff().drop_nulls()
    out = win.group_by("caller").agg(
        n.alias("out_calls"),
        pl.col("callee").n_unique().cast(pl.Float64).alias("distinct_callees"),
        (pl.col("answered").sum() / n).alias("answer_rate"),
        pl.col("duration").filter(pl.col("answered")).quantile(0.5, "linear").fill_null(0.0).alias("dur_p50"),
        pl.col("duration").filter(pl.col("answered")).quantile(0.9, "linear").fill_null(0.0).alias("dur_p90"),
        (pl.col("night").sum() / n).alias("night_share"),
        (pl.col("is_new").sum() / n).alias("new_callee_share"),
        pl.when(pl.len() >= 3).then(
            pl.when(gaps.mean() > 0).then(gaps.std(ddof=0) / gaps.mean()).otherwise(0.0)
        ).otherwise(0.0).alias("gap_cv"),
        pl.col("cell").drop_nulls().n_unique().cast(pl.Float64).alias("distinct_cells"),
    ).rename({"caller": "number"})
    inc = win.group_by("callee").agg(pl.len().cast(pl.Float64).alias("in_calls")).rename({"callee": "number"})
    sent = (
        messages.filter((pl.col("ts") > lo) & (pl.col("ts") <= t_end))
        .group_by("sender").agg(pl.len().cast(pl.Float64).alias("msgs_sent")).rename({"sender": "number"})
    )
    joined = (
        out.join(inc, on="number", how="full", coalesce=True)
        .join(sent, on="number", how="full", coalesce=True)
        .with_columns(pl.exclude("number").fill_null(0.0))
        .with_columns((pl.col("out_calls") / (pl.col("in_calls") + 1.0)).alias("out_in_ratio"))
    )
    return joined.select("number", *[pl.col(f).alias(f"{f}_{name}") for f in PER_WINDOW])


def batch_features(
    calls: pl.DataFrame | pl.LazyFrame,
    messages: pl.DataFrame | pl.LazyFrame | None = None,
    at: datetime | None = None,
    activation: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Features of every number active in the last 7 days before ``at`` (default: the last event).

    ``activation`` (columns ``number``, ``activated``) gives number ages; without it a number's age counts
    from its first appearance in ``calls``/``messages``.
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
    frames = [_window_aggs(c, m, t_end, name, s) for name, s in WINDOWS.items()]
    result = frames[-1]  # the 7 d window holds every active number
    for f in frames[:-1]:
        result = result.join(f, on="number", how="left")
    if activation is not None:
        act = activation.lazy().select("number", to_seconds("activated").alias("first"))
    else:
        act = pl.concat([
            c.select(pl.col("caller").alias("number"), "ts"), c.select(pl.col("callee").alias("number"), "ts"),
            m.select(pl.col("sender").alias("number"), "ts"), m.select(pl.col("recipient").alias("number"), "ts"),
        ]).group_by("number").agg(pl.col("ts").min().alias("first"))
    result = (
        result.join(act, on="number", how="left")
        .with_columns(((t_end - pl.col("first").fill_null(t_end)) / 86_400).clip(lower_bound=0).alias("maturity_days"))
        .with_columns(pl.exclude("number").fill_null(0.0))
        .select("number", *FEATURE_NAMES)
    )
    return result.collect().sort("number")
