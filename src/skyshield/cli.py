"""The one command, ``skyshield``, with a subcommand per job.

Each area keeps its subcommands in its own ``cli`` module with a ``register(subparsers)``
function; heavy imports happen inside the handlers so ``skyshield --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that add subcommands; each has ``register(subparsers) -> None``.
COMMAND_MODULES = [
    "skyshield.commands",          # check, classify, why, serve
    "skyshield.text.cli",          # train, eval
    "skyshield.compliance.cli",    # audit, consent import/export, reply, template add
    "skyshield.gateway.cli",       # smpp, sip, smsc-sim
    "skyshield.behaviour.cli",     # simulate, behaviour-train, behaviour-eval, lists import, profile
    "skyshield.text.rules_cli",    # analyse (normalised text, entities, structure signals)
    "skyshield.security.cli",      # keys create/list/revoke, purge, audit-log verify/show
    "skyshield.disposal.cli",      # report, retrain, campaigns, block/unblock/blocks, user
    "skyshield.spark.cli",         # spark (behaviour features on Spark; optional extra)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skyshield", description=__doc__.splitlines()[0])
    parser.add_argument("--policy", help="operator policy TOML merged over the shipped defaults")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence: say what, not a traceback
        from skyshield.policy import PolicyError

        if isinstance(exc, (PolicyError, FileNotFoundError, ValueError, ConnectionError)):  # ConnectionError: a
            # database URL that cannot be reached (PostgresStore names it, without the password)
            print(f"skyshield: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
