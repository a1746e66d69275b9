"""Behaviour subcommands: simulate, behaviour-features, behaviour-train, behaviour-eval, lists import, profile."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write a synthetic city's call/SMS records with ground truth (Parquet)")
    p.add_argument("--subscribers", type=int, default=10_000)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(handler=_simulate)

    p = sub.add_parser("behaviour-features", help="per-number window features of call/message records (batch)")
    p.add_argument("--calls", required=True, help="call records: CSV/TSV/Parquet file or a simulate folder")
    p.add_argument("--messages", help="message records (CSV/TSV/Parquet)")
    p.add_argument("--out", required=True, help="Parquet file to write")
    p.set_defaults(handler=_features)

    p = sub.add_parser("behaviour-train",
                       help="train the fraud-number model on the simulator (reproduces the shipped one)")
    p.add_argument("--subscribers", type=int, default=20_000)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="model file (default: the one shipped in the package)")
    p.set_defaults(handler=_train)

    p = sub.add_parser("behaviour-eval", help="evaluate the behaviour engine (Sichuan CV, bombing, rotation)")
    p.add_argument("--data", default=str(Path.cwd().parent / "shared" / "data"), help="public corpora folder")
    p.add_argument("--subscribers", type=int, default=20_000)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="print only; do not update behaviour_metrics.json")
    p.set_defaults(handler=_eval)

    p = sub.add_parser("lists", help="number reputation lists")
    lsub = p.add_subparsers(dest="lists_command", metavar="ACTION", required=True)
    q = lsub.add_parser("import", help="import a file of reported numbers under a source name")
    q.add_argument("file")
    q.add_argument("--source", required=True, help="list name shown in REPUTATION_LISTED evidence, e.g. ftc-dnc")
    q.add_argument("--db", help="SQLite file or postgresql:// URL (default: SKYSHIELD_DB / skyshield.db)")
    q.set_defaults(handler=_lists_import)

    p = sub.add_parser("profile", help="a number's behaviour profile from call/message records")
    p.add_argument("number")
    p.add_argument("--calls", required=True, help="call records: CSV/TSV/Parquet file or a simulate folder")
    p.add_argument("--messages", help="message records")
    p.set_defaults(handler=_profile)


def _zone(args: argparse.Namespace) -> str:
    from skyshield.policy import Policy

    return Policy.load(getattr(args, "policy", None)).section("detectors.behaviour")["timezone"]


def _read_calls(path: str, zone: str = "UTC"):
    from skyshield.behaviour.records import read_calls

    p = Path(path)
    if p.is_dir() and (p / "calls").is_dir():
        p = p / "calls"
    result = read_calls(p, zone)
    if result.rejects:
        print(f"calls: {result.summary()}", file=sys.stderr)
    return result.frame


def _read_messages(path: str | None, calls_path: str, zone: str = "UTC"):
    from skyshield.behaviour.records import read_messages

    if path is None and (Path(calls_path) / "messages").is_dir():
        path = str(Path(calls_path) / "messages")
    if path is None:
        return None
    result = read_messages(path, zone)
    if result.rejects:
        print(f"messages: {result.summary()}", file=sys.stderr)
    return result.frame


def _simulate(args: argparse.Namespace) -> int:
    from skyshield.behaviour.simulate import SimConfig, simulate, write

    if args.subscribers < 10 or args.days < 1:
        raise ValueError("--subscribers must be at least 10 and --days at least 1")
    t0 = time.perf_counter()
    frames = simulate(SimConfig(subscribers=args.subscribers, days=args.days, seed=args.seed))
    counts = write(args.out, *frames)
    print(f"wrote {counts['calls']:,} calls, {counts['messages']:,} messages, {counts['numbers']:,} labelled numbers, "
          f"{counts['attacks']} bombing attacks to {args.out} in {time.perf_counter() - t0:.1f}s")
    return 0


def _features(args: argparse.Namespace) -> int:
    from skyshield.behaviour.features import batch_features

    calls = _read_calls(args.calls, _zone(args))
    messages = _read_messages(args.messages, args.calls, _zone(args))
    t0 = time.perf_counter()
    f = batch_features(calls, messages)
    f.write_parquet(args.out)
    n_msgs = messages.height if messages is not None else 0
    print(f"{f.height:,} numbers x {f.width - 1} features from {calls.height:,} calls and {n_msgs:,} messages in "
          f"{time.perf_counter() - t0:.2f}s -> {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from skyshield.behaviour.model import MODEL_PATH, train_on_simulator, write_metrics

    metrics = train_on_simulator(args.subscribers, args.days, args.seed, args.out)
    if not args.out or Path(args.out) == MODEL_PATH:
        write_metrics({"simulator": metrics})
    print(json.dumps(metrics, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from skyshield.behaviour import bombing, rotation, simbox
    from skyshield.behaviour.model import evaluate_sichuan, write_metrics
    from skyshield.behaviour.simulate import SimConfig, simulate

    out: dict = {}
    if (Path(args.data) / "sichuan_fraud_calls").is_dir():
        out["sichuan"] = evaluate_sichuan(args.data)
    else:
        print(f"{args.data}/sichuan_fraud_calls not found: Sichuan evaluation skipped", file=sys.stderr)
    calls, messages, labels, attacks = simulate(SimConfig(args.subscribers, args.days, seed=11))
    setup = f"simulated city seed 11, {args.subscribers} subscribers x {args.days} days"
    out["bombing"] = {**bombing.evaluate(messages, attacks), "setup": setup}
    out["rotation"] = {
        "callee_overlap_and_device": rotation.evaluate(calls, messages, labels),
        "callee_overlap_only": rotation.evaluate(calls, messages, labels, use_devices=False),
        "setup": setup + "; the carrier blocks each fraud number at its ground-truth blocked_at",
    }
    out["simbox"] = {**simbox.evaluate(calls, labels, args.days), "setup": setup}
    if not args.no_write:
        write_metrics(out)
    print(json.dumps(out, indent=2))
    return 0


def _lists_import(args: argparse.Namespace) -> int:
    from skyshield.behaviour.lists import import_file

    print(import_file(args.file, args.source, args.db).summary())
    return 0


def _profile(args: argparse.Namespace) -> int:
    import polars as pl

    from skyshield.behaviour.features import prepare_calls
    from skyshield.behaviour.service import BehaviourService
    from skyshield.policy import Policy

    policy = Policy.load(getattr(args, "policy", None))
    svc = BehaviourService(policy)
    calls = prepare_calls(_read_calls(args.calls, svc.timezone)).collect()
    for r in calls.select("caller", "callee", "ts", "duration", "answered", "cell", "device").iter_rows():
        svc.observe_call(*r)
    messages = _read_messages(args.messages, args.calls, svc.timezone)
    if messages is not None:
        m = messages.sort("time").with_columns(pl.col("time").dt.epoch("us").alias("us"))
        for s, r, us, tpl in m.select("sender", "recipient", "us", "template").iter_rows():
            svc.stream.add_message(s, r, us / 1e6)
            if tpl:
                svc.templates_of[s].add(tpl)
    profile = svc.profile(args.number)
    known = profile["seen"] or profile["stored_profile"] is not None
    if not known:
        print(f"{args.number}: not in these records" + (" nor in the stored profiles" if svc.profiles else ""),
              file=sys.stderr)
    profile["features"] = {k: round(v, 3) for k, v in profile["features"].items() if v}
    print(json.dumps(profile, indent=2, ensure_ascii=False, default=str))
    return 0 if known else 1
