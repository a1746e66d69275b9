"""``skyshield keys``, ``skyshield purge`` and ``skyshield audit-log``: API keys, text retention, the audit log."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--policy", default=argparse.SUPPRESS, help="operator policy TOML merged over the defaults")
    common.add_argument("--db", help="database URL (default $SKYSHIELD_DB or sqlite:///skyshield.db)")

    keys = sub.add_parser("keys", help="API keys per tenant with scopes (create, list, revoke)",
                          description="Once any key exists, every /v1 API route needs Authorization: Bearer <key>.")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    p = ksub.add_parser("create", parents=[common], help="create a key and print it (once: only its hash is kept)")
    p.add_argument("--tenant", required=True, help="the tenant whose data the key reaches")
    p.add_argument("--scopes", default="check,read", help="comma-separated: check, read, admin (default check,read)")
    p.add_argument("--label", default="", help="a note: who or what uses the key")
    p.add_argument("--json", action="store_true", help="print the key and its record as JSON")
    p.set_defaults(handler=_keys_create)
    p = ksub.add_parser("list", parents=[common], help="list keys (ids, tenants, scopes; never the secrets)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_keys_list)
    p = ksub.add_parser("revoke", parents=[common], help="revoke a key at once (by key id or the whole key)")
    p.add_argument("key_id")
    p.set_defaults(handler=_keys_revoke)

    p = sub.add_parser("purge", parents=[common], help="delete message text older than [privacy] retain_text",
                       description="Deletes the text of stored messages older than the retention period; verdicts, "
                                   "signals and evidence stay. `skyshield serve` also does this at start and hourly.")
    p.add_argument("--older-than", help="override the policy's retain_text, e.g. 30d")
    p.set_defaults(handler=_purge)

    audit = sub.add_parser("audit-log", help="the append-only audit log: show entries, verify the hash chain")
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    p = asub.add_parser("verify", parents=[common], help="recompute the hash chain; exit 1 at the first broken row")
    p.set_defaults(handler=_audit_verify)
    p = asub.add_parser("show", parents=[common], help="print the latest entries as JSON lines")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=_audit_show)


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name (containers): still an actor
        return "cli"


def _open(args: argparse.Namespace) -> Any:
    from skyshield.commands import _policy, _settings
    from skyshield.store import open_store_for

    return open_store_for(_policy(args), _settings(args))


def _keys_create(args: argparse.Namespace) -> int:
    from skyshield.security.keys import KeyRequestError, KeyRing

    with _open(args) as store:
        ring = KeyRing(store)
        try:
            full, record = ring.create(args.tenant, args.scopes, label=args.label, actor=actor())
        except KeyRequestError as exc:
            print(f"skyshield keys: error: {exc}", file=sys.stderr)
            return 2
        finally:
            ring.close()
    if args.json:
        print(json.dumps({"key": full, **record.to_dict()}, ensure_ascii=False))
    else:
        print(full)
        print(f"key id {record.key_id}, tenant {record.tenant}, scopes {','.join(sorted(record.scopes))}. "
              "This is the only time the key is shown; store it now.", file=sys.stderr)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from skyshield.security.keys import KeyRing

    with _open(args) as store:
        ring = KeyRing(store)
        keys = ring.list()
        ring.close()
    if args.json:
        for k in keys:
            print(json.dumps(k.to_dict(), ensure_ascii=False))
        return 0
    if not keys:
        print("no API keys: the API runs in open local mode (loopback only)")
        return 0
    print(f"{'key id':<10} {'tenant':<20} {'scopes':<18} {'created':<26} {'status':<8} label")
    for k in keys:
        status = "revoked" if k.revoked_at else "active"
        scopes = ",".join(sorted(k.scopes))
        print(f"{k.key_id:<10} {k.tenant:<20} {scopes:<18} {k.created_at:<26} {status:<8} {k.label}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from skyshield.security.keys import KeyRequestError, KeyRing

    with _open(args) as store:
        ring = KeyRing(store)
        try:
            record = ring.revoke(args.key_id, actor=actor())
        except KeyRequestError as exc:
            print(f"skyshield keys: error: {exc}", file=sys.stderr)
            return 1
        finally:
            ring.close()
    print(f"revoked {record.key_id} (tenant {record.tenant}) at {record.revoked_at}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from skyshield.commands import _policy
    from skyshield.policy import parse_duration
    from skyshield.security.retention import purge_text, retention_seconds

    keep = parse_duration(args.older_than) if args.older_than else retention_seconds(_policy(args))
    if keep is None:
        print("skyshield purge: [privacy] retain_text is empty (keep forever); nothing to do", file=sys.stderr)
        return 0
    with _open(args) as store:
        n = purge_text(store, keep)
    print(f"deleted the text of {n:,} messages older than {keep // 86400} days ({keep:,} s); verdicts kept")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from skyshield.security.audit import verify

    with _open(args) as store:
        check = verify(store)
    if check.ok:
        print(f"audit log OK: {check.entries} entries, hash chain intact")
        return 0
    print(f"audit log BROKEN at entry {check.broken_id}: {check.problem} ({check.entries} entries)")
    return 1


def _audit_show(args: argparse.Namespace) -> int:
    from skyshield.security.audit import entries

    with _open(args) as store:
        for e in entries(store, limit=args.limit):
            print(json.dumps(e.to_dict(), ensure_ascii=False))
    return 0
