"""``skyshield spark``: per-number behaviour features of Parquet call records on Spark (optional extra)."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "spark",
        help="per-number behaviour features of Parquet call records on Spark (pip install 'skyshield[spark]')",
        description="Computes the 1h/24h/7d window features of every number (the same definitions as "
        "`skyshield behaviour-features`) from calls/day=*/ and messages/day=*/ Parquet folders, on Spark, and "
        "writes one profile row per number as Parquet.",
    )
    p.add_argument("--records", required=True, help="folder with calls/ (and messages/) Parquet, as simulate writes")
    p.add_argument("--out", required=True, help="profiles folder to write (Parquet; replaced if it exists)")
    p.add_argument("--master", default="local[2]", help="Spark master (default local[2]; yarn, k8s://..., spark://...)")
    p.add_argument("--at", help="reference time, ISO 8601 (default: the last record)")
    p.set_defaults(handler=spark_command)


def spark_command(args: argparse.Namespace) -> int:
    from datetime import datetime

    from skyshield.spark.job import require_pyspark, run

    try:
        require_pyspark()
        at = datetime.fromisoformat(args.at) if args.at else None
        started = time.perf_counter()
        n = run(args.records, args.out, master=args.master, at=at)
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        print(f"skyshield spark: error: {exc}", file=sys.stderr)
        return 2
    print(f"{n:,} number profiles -> {args.out} in {time.perf_counter() - started:.1f}s (Spark {args.master})")
    return 0
