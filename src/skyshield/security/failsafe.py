"""Fail open or fail closed: the verdict the API gives when the engine or the store is down.

``[engine] on_failure`` in the policy names the action: ``"open"`` delivers (the firewall must not become
the outage), ``"closed"`` blocks (nothing unjudged goes out). Either way the verdict carries a signal
(``ENGINE_UNAVAILABLE`` or ``STORE_UNAVAILABLE``) with the error as evidence, the metric
``skyshield_failsafe_total{reason}`` rises (alert on it), and a verdict the store could not take is
appended to a journal file (``<database>.failsafe.jsonl``) so the decision is still on record.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import Counter

from skyshield.config import Settings
from skyshield.events import Action, Category, Message, Signal, Verdict
from skyshield.policy import Policy, PolicyError

log = logging.getLogger("skyshield.failsafe")

FAILSAFE = Counter(
    "skyshield_failsafe_total",
    "Messages given a fail-safe verdict because the engine or the store was unavailable, by reason.",
    ["reason"],
)
ENGINE_UNAVAILABLE = "ENGINE_UNAVAILABLE"
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
_journal_lock = threading.Lock()


def failure_action(policy: Policy) -> Action:
    """The action ``[engine] on_failure`` names (checked when the API starts)."""
    mode = policy.section("engine")["on_failure"]
    if mode == "open":
        return Action.DELIVER
    if mode == "closed":
        return Action.BLOCK
    raise PolicyError(f"{policy.source}: [engine] on_failure = {mode!r}: write \"open\" or \"closed\"")


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def engine_failed(policy: Policy, messages: Sequence[Message], exc: BaseException, model_version: str) -> list[Verdict]:
    """One fail-safe verdict per message the engine could not judge."""
    action = failure_action(policy)
    FAILSAFE.labels("engine").inc(len(messages))
    log.error("engine failed on a batch of %d: %s; answering %s (on_failure)", len(messages), _error_text(exc),
              action.value, exc_info=exc)
    evidence = {"why": f"engine failed ({_error_text(exc)}); on_failure = {policy.section('engine')['on_failure']}"}
    return [
        Verdict(action, Category.PERSONAL if action is Action.DELIVER else Category.FRAUD, None, 0.0, 0.0,
                [Signal(ENGINE_UNAVAILABLE, 1.0, dict(evidence))], model_version)
        for _ in messages
    ]


def store_failed(policy: Policy, verdicts: Sequence[Verdict], exc: BaseException) -> None:
    """Mark verdicts that could not be stored; failing closed also turns them into blocks."""
    action = failure_action(policy)
    FAILSAFE.labels("store").inc(len(verdicts))
    log.error("store failed on a batch of %d: %s; answering %s (on_failure)", len(verdicts), _error_text(exc),
              "the engine's verdicts" if action is Action.DELIVER else "block")
    why = f"verdict not stored ({_error_text(exc)}); on_failure = {policy.section('engine')['on_failure']}"
    for v in verdicts:
        v.id = None
        v.signals.append(Signal(STORE_UNAVAILABLE, 1.0, {"why": why}))
        if action is Action.BLOCK:
            v.action = Action.BLOCK


def journal_path(settings: Settings) -> Path:
    """``<database>.failsafe.jsonl`` beside a SQLite file, else beside the pseudonymisation key file."""
    base = settings.sqlite_path if settings.db_url.startswith("sqlite:///") else settings.key_file
    return base.with_name(base.stem + ".failsafe.jsonl")


def journal(path: Path, messages: Sequence[Message], verdicts: Sequence[Verdict]) -> None:
    """Append the unstored decisions (no text, no numbers: tenant, id, action, signals) to a JSON-lines file."""
    try:
        with _journal_lock, path.open("a", encoding="utf-8") as f:
            for m, v in zip(messages, verdicts, strict=True):
                row = {"time": m.time.isoformat(), "tenant": m.tenant, "channel": m.channel.value,
                       "message_id": m.external_id, "action": v.action.value, "category": v.category.value,
                       "score": round(v.score, 3), "signals": [s.name for s in v.signals]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    except OSError as exc:  # the disk is gone too: the log line and the metric are what is left
        log.error("could not write the fail-safe journal %s: %s", path, exc)
