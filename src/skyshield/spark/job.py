"""``skyshield spark``: the behaviour window features on Spark, compiled from :mod:`skyshield.behaviour.definitions`.

Reads the records ``skyshield simulate`` writes (or an operator's CDR export in the same shape): Parquet
folders ``calls/day=YYYY-MM-DD/*.parquet`` and ``messages/day=.../*.parquet``, and writes one profile row
per number (``number`` + the feature names) as Parquet, the same table ``skyshield behaviour-features``
writes with Polars. Run it on a cluster with ``--master yarn`` / ``k8s://...`` / ``spark://...``; the default
``local[2]`` runs in this machine's JVM.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from skyshield.behaviour.definitions import (
    FEATURE_NAMES,
    FEATURES,
    GAP_FROM,
    HISTORY,
    MADE,
    NIGHT_END_HOUR,
    RECEIVED,
    SENT,
    SIDE_KEY,
    WINDOWS,
    WindowFeature,
    window_bounds,
)


def require_pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise RuntimeError("Spark support is an optional extra: pip install 'skyshield[spark]' (pyspark, ~500 MB; "
                           "needs Java 17+)") from None
    return pyspark


def spark_session(master: str = "local[2]", app: str = "skyshield-features", shuffle_partitions: int = 8) -> Any:
    """A Spark session with UTC times and no web UI (loopback only when local)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (
        SparkSession.builder.master(master).appName(app)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.driver.bindAddress", os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _seconds(col: Any) -> Any:
    from pyspark.sql import functions as F

    # NTZ (how Polars writes naive times) and zoned timestamps alike: the session zone is UTC
    return F.unix_micros(col.cast("timestamp")).cast("double") / 1e6


def _agg(f: WindowFeature, inw: Any, lo: float, suffix: str) -> Any:
    from pyspark.sql import functions as F

    n = F.sum(inw.cast("double"))
    name = f"{f.name}_{suffix}"
    if f.agg == "count":
        return F.coalesce(n, F.lit(0.0)).alias(name)
    if f.agg == "share":
        return (F.sum((inw & F.col(f.of)).cast("double")) / F.greatest(n, F.lit(1.0))).alias(name)
    if f.agg == "quantile":
        keep = inw & F.col(f.when) if f.when else inw
        return F.percentile(F.when(keep, F.col(f.of)), F.lit(f.q)).alias(name)
    if f.agg == "distinct":
        return F.count_distinct(F.when(inw, F.col(f.of))).cast("double").alias(name)
    if f.agg == "cv":
        gaps = F.when(F.col(GAP_FROM) > F.lit(lo), F.col(f.of))
        mean, std = F.avg(gaps), F.stddev_pop(gaps)
        return F.when((F.count(gaps) >= 2) & (mean > 0), std / mean).otherwise(F.lit(0.0)).alias(name)
    raise ValueError(f"unknown aggregate {f.agg!r} for {f.name}")


def spark_features(calls: Any, messages: Any | None = None, at: datetime | None = None) -> Any:
    """The feature table compiled to Spark: a DataFrame of ``number`` + :data:`FEATURE_NAMES`."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    c = calls.select("caller", "callee", "duration", "answered", "cell",
                     _seconds(F.col("start")).alias("ts"), (F.hour("start") < NIGHT_END_HOUR).alias("night"))
    c = c.withColumn("is_new", F.row_number().over(Window.partitionBy("caller", "callee").orderBy("ts")) == 1)
    if messages is None:
        m = calls.sparkSession.createDataFrame([], "sender string, recipient string, ts double")
    else:
        m = messages.select("sender", "recipient", _seconds(F.col("time")).alias("ts"))
    if at is None:
        last = c.agg(F.max("ts")).first()[0]
        last_m = m.agg(F.max("ts")).first()[0]
        t_end = max(x for x in (last, last_m, 0.0) if x is not None)
    else:
        t_end = at.timestamp() if at.tzinfo else (at - datetime(1970, 1, 1)).total_seconds()
    c, m = c.where(F.col("ts") <= t_end), m.where(F.col("ts") <= t_end)
    win = c.where(F.col("ts") > t_end - HISTORY)
    win = win.withColumn(GAP_FROM, F.lag("ts").over(Window.partitionBy("caller").orderBy("ts")))
    win = win.withColumn("gap", F.col("ts") - F.col(GAP_FROM))
    sides = {MADE: win, RECEIVED: win, SENT: m.where(F.col("ts") > t_end - HISTORY)}
    lows = window_bounds(t_end)
    out = None
    tables = []
    for side, frame in sides.items():
        key = SIDE_KEY[side]
        aggs = [_agg(f, F.col("ts") > F.lit(lo), lo, w) for w, lo in lows.items() for f in FEATURES
                if f.side == side and f.agg != "distinct"]
        tables.append(frame.groupBy(F.col(key).alias("number")).agg(*aggs))
        for f in (f for f in FEATURES if f.side == side and f.agg == "distinct"):
            # distinct values in a window = values whose latest event falls inside it: one small group-by per
            # feature instead of a distinct aggregate per window (which Spark expands row by row)
            latest = frame.where(F.col(f.of).isNotNull()).groupBy(key, f.of).agg(F.max("ts").alias("last"))
            tables.append(latest.groupBy(F.col(key).alias("number")).agg(
                *[F.sum((F.col("last") > F.lit(lo)).cast("double")).alias(f"{f.name}_{w}") for w, lo in lows.items()]))
    for table in tables:
        out = table if out is None else out.join(table, on="number", how="full")
    out = out.na.fill(0.0)
    for w in WINDOWS:
        for f in FEATURES:
            if f.agg == "ratio":
                out = out.withColumn(f"{f.name}_{w}", F.col(f"{f.of}_{w}") / (F.col(f"{f.denominator}_{w}") + 1.0))
    seen = c.select(F.col("caller").alias("number"), "ts").unionByName(c.select(F.col("callee").alias("number"), "ts"))
    seen = seen.unionByName(m.select(F.col("sender").alias("number"), "ts"))
    seen = seen.unionByName(m.select(F.col("recipient").alias("number"), "ts"))
    first = seen.groupBy("number").agg(F.min("ts").alias("first"))
    out = out.join(first, on="number", how="left").withColumn(
        "maturity_days", F.greatest((F.lit(t_end) - F.coalesce(F.col("first"), F.lit(t_end))) / 86_400, F.lit(0.0)))
    return out.select("number", *FEATURE_NAMES)


def check_records(records: str | Path) -> Path:
    """The ``calls`` folder under ``records``, or a clear error before any JVM starts."""
    calls_dir = Path(records) / "calls"
    if not calls_dir.is_dir() or not any(calls_dir.rglob("*.parquet")):
        raise FileNotFoundError(f"{records}: no calls/**/*.parquet (write some: skyshield simulate --out {records})")
    return calls_dir


def read_records(spark: Any, records: str | Path) -> tuple[Any, Any | None]:
    """The ``calls`` and (when present) ``messages`` Parquet folders under ``records``."""
    calls_dir = check_records(records)
    root = Path(records)
    calls = spark.read.parquet(str(calls_dir))
    missing = {"caller", "callee", "start", "duration", "answered", "cell"} - set(calls.columns)
    if missing:
        raise ValueError(f"{calls_dir}: call records lack column(s) {', '.join(sorted(missing))}")
    messages_dir = root / "messages"
    messages = spark.read.parquet(str(messages_dir)) if messages_dir.is_dir() else None
    return calls, messages


def run(records: str | Path, out: str | Path, *, master: str = "local[2]", at: datetime | None = None) -> int:
    """Compute and write the profiles; returns the number of numbers profiled."""
    check_records(records)
    spark = spark_session(master)
    try:
        calls, messages = read_records(spark, records)
        profiles = spark_features(calls, messages, at).cache()
        n = profiles.count()
        profiles.write.mode("overwrite").parquet(str(out))
        return n
    finally:
        spark.stop()


def load_profiles(path: str | Path) -> Any:
    """Profiles written by ``skyshield spark`` (a Parquet folder) or ``behaviour-features`` (a file), in Polars."""
    import polars as pl

    p = Path(path)
    return pl.read_parquet(str(p / "*.parquet") if p.is_dir() else p).sort("number")
