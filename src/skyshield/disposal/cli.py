"""Commands for after sending: ``report``, ``retrain``, ``campaigns``, ``block``/``unblock``/``blocks``, ``user``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--policy", default=argparse.SUPPRESS, help="operator policy TOML merged over the defaults")
    common.add_argument("--db", help="database URL (default $SKYSHIELD_DB or sqlite:///skyshield.db)")

    p = sub.add_parser("report", parents=[common], help="regulator report for a tenant and period (CSV or HTML)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--from", dest="start", required=True, help="start, ISO 8601 (2026-11-23 or with a time)")
    p.add_argument("--to", dest="end", required=True, help="end (exclusive), ISO 8601")
    p.add_argument("--format", choices=["csv", "html"], default="csv")
    p.add_argument("--out", help="write here instead of stdout")
    p.set_defaults(handler=report_command)

    p = sub.add_parser("retrain", parents=[common],
                       help="fold reviewers' labels into the text model; ship it only if no guarded metric drops")
    p.add_argument("--data", default=os.environ.get("SKYSHIELD_DATA", "../shared/data"),
                   help="public corpora (default ../shared/data); without them the seed set is the base")
    p.add_argument("--out", default="models", help="folder for candidate/ and the shipped text_model.npz")
    p.set_defaults(handler=retrain_command)

    p = sub.add_parser("campaigns", parents=[common], help="cluster new verdicts and list the biggest campaigns")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--min-size", type=int, default=2)
    p.set_defaults(handler=campaigns_command)

    p = sub.add_parser("block", parents=[common], help="block a number, signature, template, link domain or campaign")
    p.add_argument("kind", choices=["number", "signature", "template", "link_domain", "campaign"])
    p.add_argument("value")
    p.add_argument("--reason", required=True)
    p.add_argument("--by", required=True, help="who decided")
    p.add_argument("--expires", help="a duration (30d) or ISO time; default never")
    p.add_argument("--tenant", default="", help="only this tenant's traffic (default all)")
    p.set_defaults(handler=block_command)

    p = sub.add_parser("unblock", parents=[common], help="lift a block (recorded in the audit log)")
    p.add_argument("id", type=int)
    p.add_argument("--by", required=True)
    p.add_argument("--note", required=True)
    p.set_defaults(handler=unblock_command)

    p = sub.add_parser("blocks", parents=[common], help="list blocks (--active: only those in force)")
    p.add_argument("--active", action="store_true")
    p.set_defaults(handler=blocks_command)

    p = sub.add_parser("user", parents=[common],
                       help="add a console user (password from $SKYSHIELD_PASSWORD or prompt)")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=["operator", "reviewer", "auditor"])
    p.set_defaults(handler=user_command)


def _open(args: argparse.Namespace) -> Any:
    from skyshield.commands import _policy, _settings
    from skyshield.disposal.service import Disposal

    return Disposal.open(_policy(args), _settings(args))


def report_command(args: argparse.Namespace) -> int:
    from skyshield.disposal import regulator
    from skyshield.disposal.schema import parse_time

    disposal = _open(args)
    try:
        report = regulator.build(disposal.db, args.tenant, parse_time(args.start), parse_time(args.end))
    finally:
        disposal.close()
    text = regulator.to_csv(report) if args.format == "csv" else regulator.to_html(report)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}: {len(report.rows)} signatures, {report.totals().messages} messages", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def retrain_command(args: argparse.Namespace) -> int:
    from skyshield.disposal.retrain import retrain
    from skyshield.text.classify import load_model

    disposal = _open(args)
    try:
        disposal.refresh()
        labels = disposal.review.labelled()
        path = disposal.policy.section("detectors.text_model")["path"] or None
        result = retrain(labels, Path(args.out), data_dir=Path(args.data), current=load_model(path),
                         log=lambda m: print(m, file=sys.stderr))
        print(f"labels: {result.labels_used} learnt, {result.labels_held_out} held out; base rows "
              f"{result.base_rows}; guard rows {result.guard_rows}")
        print(result.table())
        if result.shipped:
            disposal.review.mark_trained([r["id"] for r in labels], result.version)
            print(f"shipped {result.version} -> {result.target} (set [detectors.text_model] path to use it)")
            return 0
        print(f"NOT shipped: guard(s) failed: {', '.join(result.failed_guards)}; candidate left at {result.candidate}")
        return 1
    finally:
        disposal.close()


def campaigns_command(args: argparse.Namespace) -> int:
    disposal = _open(args)
    try:
        done = disposal.refresh()
        print(f"clustered {done['verdicts']} new verdicts; queued {done['queued']} for review", file=sys.stderr)
        print(f"{'id':>5} {'size':>6} {'senders':>7} {'reports':>7} {'blocked':>7}  template")
        for c in disposal.campaigns.top(min_size=args.min_size, limit=args.limit):
            print(f"{c['id']:>5} {c['size']:>6} {c['senders']:>7} {c['reports']:>7} {c['blocked']:>7}  "
                  f"{c['template'][:70]}")
    finally:
        disposal.close()
    return 0


def block_command(args: argparse.Namespace) -> int:
    disposal = _open(args)
    try:
        if args.kind == "campaign":
            disposal.refresh()
        b = disposal.blocks.create(args.kind, args.value, reason=args.reason, decided_by=args.by,
                                   tenant=args.tenant, expires=args.expires)
        print(f"block {b['id']}: {b['kind']} {b['display']} until {b['expires_at'] or 'lifted'} ({b['reason']})")
    finally:
        disposal.close()
    return 0


def unblock_command(args: argparse.Namespace) -> int:
    disposal = _open(args)
    try:
        b = disposal.blocks.lift(args.id, actor=args.by, note=args.note)
        print(f"block {b['id']} lifted")
    finally:
        disposal.close()
    return 0


def blocks_command(args: argparse.Namespace) -> int:
    disposal = _open(args)
    try:
        for b in disposal.blocks.list(active_only=args.active):
            state = "active" if b["active"] else ("expired" if b["status"] == "active" else b["status"])
            print(f"{b['id']:>5} {state:<8} {b['kind']:<12} {b['display'][:40]:<40} by {b['decided_by']}: "
                  f"{b['reason']}")
    finally:
        disposal.close()
    return 0


def user_command(args: argparse.Namespace) -> int:
    import getpass

    from skyshield.console.auth import Users

    password = os.environ.get("SKYSHIELD_PASSWORD") or getpass.getpass(f"password for {args.name}: ")
    disposal = _open(args)
    try:
        Users(disposal.db).add(args.name, args.role, password)
        print(f"user {args.name} ({args.role}) saved")
    finally:
        disposal.close()
    return 0
