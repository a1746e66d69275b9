"""Compliance subcommands: ``audit``, ``consent import|export|purge|dnd``, ``reply``, ``template add``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT = {"pass": 0, "fix": 1, "reject": 1}


def register(sub: argparse._SubParsersAction) -> None:
    db_help = "database URL (default $SKYSHIELD_DB or sqlite:///skyshield.db)"

    p = sub.add_parser("audit", help="pre-audit templates or a campaign CSV: pass / fix / reject with findings",
                       description="Audit a campaign CSV (one row per send; see docs/compliance.md), a .txt file "
                                   "with one template per line, a .jsonl file of templates, or --text. Exit status: "
                                   "0 pass, 1 fix or reject, 2 unreadable input.")
    p.add_argument("file", nargs="?", help="campaign .csv, templates .txt / .jsonl (- reads CSV from stdin)")
    p.add_argument("--text", help="audit this one template instead of a file")
    p.add_argument("--category", choices=["verification", "notification", "promotion"],
                   help="declared category of --text")
    p.add_argument("--tenant", default="default")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--deliverable", metavar="OUT.csv", help="campaign: write the rows that would not be blocked")
    p.add_argument("--db", help=db_help)
    p.set_defaults(handler=_audit)

    c = sub.add_parser("consent", help="consent ledger: import, export, purge, do-not-disturb list")
    csub = c.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    ci = csub.add_parser("import", help="import opt-ins / opt-outs / dnd rows from CSV or JSONL")
    ci.add_argument("file")
    ci.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name")
    ci.add_argument("--tenant", default="default", help="tenant for rows that name none")
    ci.add_argument("--db", help=db_help)
    ci.set_defaults(handler=_consent_import)
    ce = csub.add_parser("export", help="export every consent record with its evidence")
    ce.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    ce.add_argument("--out", help="file to write (default stdout)")
    ce.add_argument("--tenant")
    ce.add_argument("--db", help=db_help)
    ce.set_defaults(handler=_consent_export)
    cp = csub.add_parser("purge", help="delete superseded records older than the policy's retention")
    cp.add_argument("--db", help=db_help)
    cp.set_defaults(handler=_consent_purge)
    cd = csub.add_parser("dnd", help="add numbers to (or --remove them from) the do-not-disturb list")
    cd.add_argument("numbers", nargs="+")
    cd.add_argument("--remove", action="store_true")
    cd.add_argument("--db", help=db_help)
    cd.set_defaults(handler=_consent_dnd)

    r = sub.add_parser("reply", help="handle a recipient's reply (MO): record an opt-out, print the confirmation")
    r.add_argument("text")
    r.add_argument("--from", dest="sender_of_reply", required=True, help="the recipient's number the reply came from")
    r.add_argument("--to", dest="to", required=True, help="the sending number / short code the reply went to")
    r.add_argument("--signature", help="signature the reply answers (default: that of the last send to this number)")
    r.add_argument("--tenant", default="default")
    r.add_argument("--time", help="when the reply arrived (ISO 8601; default now)")
    r.add_argument("--db", help=db_help)
    r.set_defaults(handler=_reply)

    t = sub.add_parser("template", help="approved templates that live sends are matched against")
    tsub = t.add_subparsers(dest="template_command", metavar="ACTION", required=True)
    ta = tsub.add_parser("add", help="audit and register a template (approved when the audit passes)")
    ta.add_argument("text")
    ta.add_argument("--signature", default="")
    ta.add_argument("--category", choices=["verification", "notification", "promotion"])
    ta.add_argument("--var", action="append", default=[], metavar="NAME=KIND",
                    help="declare a variable, e.g. --var code=code --var name=name")
    ta.add_argument("--tenant", default="default")
    ta.add_argument("--db", help=db_help)
    ta.set_defaults(handler=_template_add)


def _policy(args: argparse.Namespace) -> Any:
    from skyshield.policy import Policy

    return Policy.load(getattr(args, "policy", None))


def _ledger(args: argparse.Namespace) -> Any:
    from skyshield.compliance.ledger import ConsentLedger
    from skyshield.config import load_settings

    return ConsentLedger.from_settings(load_settings(db_url=getattr(args, "db", None)))


def _engine(policy: Any) -> Any:
    from skyshield.assembly import build_engine

    return build_engine(policy)


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _templates_from(path: str, data: bytes) -> list[dict[str, Any]]:
    from skyshield.compliance.campaign import decode

    text, _, bad = decode(data)
    if bad:
        raise ValueError(f"{path}: line(s) {', '.join(map(str, sorted(bad)[:10]))} are not valid UTF-8 or GB18030")
    items = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if path.endswith(".jsonl"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError(f"{path}:{n}: a template is a JSON object with a \"text\" string")
            unknown = set(item) - {"text", "signature", "category", "variables"}
            if unknown:
                raise ValueError(f"{path}:{n}: unknown field(s) {', '.join(sorted(unknown))}")
            items.append(item)
        else:
            items.append({"text": line.strip()})
    return items


def _audit(args: argparse.Namespace) -> int:
    from skyshield.compliance.campaign import audit_campaign
    from skyshield.compliance.templates import Auditor

    if not args.file and not args.text:
        raise ValueError("give a FILE to audit or --text TEMPLATE")
    policy = _policy(args)
    engine = _engine(policy)
    if args.text or not (args.file == "-" or args.file.lower().endswith(".csv")):
        items = ([{"text": args.text, "category": args.category}] if args.text
                 else _templates_from(args.file, _read(args.file)))
        audits = Auditor(policy, engine.analyse, engine.model).audit(items)
        worst = max((a.outcome for a in audits), key=["pass", "fix", "reject"].index, default="pass")
        if args.json:
            print(json.dumps({"outcome": worst, "templates": [a.to_dict() for a in audits]}, ensure_ascii=False,
                             indent=1))
        else:
            for n, a in enumerate(audits, start=1):
                print(f"template {n} [{a.outcome}] {a.category}: {a.text[:70]}")
                for f in a.findings:
                    print(f"  - {f.severity} {f.code}: {f.message}")
        return EXIT[worst]
    ledger = _ledger(args)
    try:
        report = audit_campaign(_read(args.file), policy=policy, engine=engine, ledger=ledger, source=args.file,
                                tenant=args.tenant)
    finally:
        ledger.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1, default=str))
    else:
        print(report.render())
    if args.deliverable:
        with open(args.deliverable, "w", encoding="utf-8", newline="") as out:
            n = report.write_deliverable(out)
        print(f"wrote {n} deliverable row(s) to {args.deliverable}", file=sys.stderr)
    return EXIT[report.outcome]


def _consent_import(args: argparse.Namespace) -> int:
    fmt = args.format or ("jsonl" if args.file.endswith((".jsonl", ".json")) else "csv")
    from skyshield.compliance.campaign import decode

    text, encoding, bad = decode(_read(args.file))
    if bad:
        raise ValueError(f"{args.file}: line(s) {', '.join(map(str, sorted(bad)[:10]))} are not valid UTF-8 or GB18030")
    ledger = _ledger(args)
    try:
        report = ledger.import_records(text, fmt, args.tenant)
    finally:
        ledger.close()
    print(f"imported {report.imported} record(s) from {args.file}"
          + (f" (read as {encoding})" if encoding != "utf-8" else "") + f"; {len(report.errors)} row(s) refused")
    for err in report.errors[:50]:
        print(f"  {err}", file=sys.stderr)
    return 1 if report.errors else 0


def _consent_export(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    try:
        if args.out:
            with open(args.out, "w", encoding="utf-8", newline="") as out:
                n = ledger.export(out, args.format, args.tenant)
            print(f"exported {n} record(s) to {args.out}", file=sys.stderr)
        else:
            ledger.export(sys.stdout, args.format, args.tenant)
    finally:
        ledger.close()
    return 0


def _consent_purge(args: argparse.Namespace) -> int:
    from skyshield.policy import parse_duration

    retention = parse_duration(_policy(args).section("detectors.compliance.consent")["retention"])
    ledger = _ledger(args)
    try:
        n = ledger.purge(retention)
    finally:
        ledger.close()
    print(f"purged {n} superseded record(s) older than {retention // 86400} days")
    return 0


def _consent_dnd(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    try:
        if args.remove:
            ledger.remove_dnd(args.numbers)
            print(f"removed {len(args.numbers)} number(s) from the do-not-disturb list")
        else:
            n = ledger.add_dnd(args.numbers, source="cli")
            print(f"added {n} number(s) to the do-not-disturb list")
    finally:
        ledger.close()
    return 0


def _reply(args: argparse.Namespace) -> int:
    from skyshield.compliance.optout import handle_reply

    ledger = _ledger(args)
    try:
        outcome = handle_reply(ledger, _policy(args), text=args.text, recipient=args.sender_of_reply, sender=args.to,
                               tenant=args.tenant, signature=args.signature, time=args.time)
    finally:
        ledger.close()
    print(json.dumps(outcome.to_dict(), ensure_ascii=False))
    return 0


def _template_add(args: argparse.Namespace) -> int:
    from skyshield.compliance.templates import Auditor, TemplateRegistry

    variables = {}
    for decl in args.var:
        name, sep, kind = decl.partition("=")
        if not sep or not name.strip() or not kind.strip():
            raise ValueError(f"--var {decl!r}: write NAME=KIND, e.g. code=code")
        variables[name.strip()] = kind.strip()
    policy = _policy(args)
    engine = _engine(policy)
    audit = Auditor(policy, engine.analyse, engine.model).audit(
        [{"text": args.text, "signature": args.signature, "category": args.category, "variables": variables}])[0]
    ledger = _ledger(args)
    try:
        template_id = TemplateRegistry(ledger, policy).register(args.tenant, audit)
    finally:
        ledger.close()
    state = "approved" if audit.outcome == "pass" else f"not approved ({audit.outcome})"
    print(f"template {template_id} {state}: {audit.category}, signature {audit.signature or '-'}")
    for f in audit.findings:
        print(f"  - {f.severity} {f.code}: {f.message}")
    return EXIT[audit.outcome]
