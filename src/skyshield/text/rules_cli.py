"""``skyshield analyse``: show what the normaliser and the entity extractor make of a message.

For operators writing policy and for debugging a verdict: the normalised text the model reads, and
every entity with its span in the original text and the structure signals it raises.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyse",
        help="show a message's normalised text, entities (links, numbers, codes, opt-out...) and structure signals",
    )
    p.add_argument("text", nargs="?", help="the message text; '-' or none reads one message per line from stdin")
    p.add_argument(
        "--policy", default=argparse.SUPPRESS,  # keep `skyshield --policy X analyse` working too
        help="operator policy TOML merged over the defaults (for short_link_domains)",
    )
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from skyshield.policy import Policy
    from skyshield.text.extract import analyse_batch
    from skyshield.text.rules import structure_signals

    if args.text is None or args.text == "-":
        texts = [line.rstrip("\r\n") for line in sys.stdin]
    else:
        texts = [args.text]
    policy = Policy.load(getattr(args, "policy", None))
    short = frozenset(str(d).lower() for d in policy.section("detectors.structure")["short_link_domains"])
    for analysis in analyse_batch(texts):
        entities = {k: v for k, v in asdict(analysis.entities).items() if v}
        signals = structure_signals(analysis.entities, None, short)
        out: dict[str, Any] = {
            "normalised": analysis.normalised,
            "entities": entities,
            "signals": [{"name": s.name, **s.evidence} for s in signals],
        }
        print(json.dumps(out, ensure_ascii=False))
    return 0
