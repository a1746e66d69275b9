"""Call screening: one call attempt in, one verdict out (allow / suspect / block, with reasons).

The API for every call ingress (the SIP proxy, ``POST /v1/calls:check``)::

    from skyshield.behaviour.calls import CallScreener
    screener = CallScreener(policy)             # shares state with the message detector of the same policy
    verdict = screener.screen(call)             # events.Call -> events.Verdict; updates the caller's state
    screener.outcome(verdict_call, duration=42.0, answered=True)   # optional, when the call ends

``verdict.action`` is deliver/tag/fold/hold/block like for messages; :func:`call_decision` maps it to the
three words a switch needs: ``allow`` (deliver, tag), ``suspect`` (fold, hold: connect with a warning label),
``block`` (refuse with SIP 607/603). ``verdict.reasons()`` says why. Thread-safe; a call takes a few
hundred microseconds (features of the caller's last 7 days, the model at most every ``rescore_every``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from skyshield.behaviour.service import BehaviourService, shared_service
from skyshield.events import Action, Call, Category, Verdict
from skyshield.policy import Policy

#: Signals that make a call's category "fraud" rather than "personal".
FRAUD_SIGNALS = frozenset({"SENDER_FRAUD_SCORE", "ROTATED_NUMBER", "BLOCKED_NUMBER", "SIMBOX",
                           "REPUTATION_LISTED"})


def epoch(t: datetime, zone: str | None = None) -> float:
    """The engine's clock: local wall-clock seconds (a zone-aware time is first moved to ``zone``), counted
    as if UTC, so records, API and SIP agree on what "night" is."""
    if t.tzinfo is not None and zone:
        t = t.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def call_decision(verdict: Verdict) -> str:
    """``allow``, ``suspect`` or ``block`` for a call verdict."""
    if verdict.action == Action.BLOCK:
        return "block"
    if verdict.action in (Action.FOLD, Action.HOLD):
        return "suspect"
    return "allow"


class CallScreener:
    def __init__(self, policy: Policy | None = None, service: BehaviourService | None = None):
        self.policy = policy or Policy.load()
        self.service = service or shared_service(self.policy)

    @property
    def enabled(self) -> bool:
        return bool(self.policy.section("detectors.behaviour")["enabled"])

    def screen(self, call: Call, cell: str | None = None, device: str | None = None) -> Verdict:
        """Record the attempt in the caller's history and judge it."""
        svc = self.service
        ts = epoch(call.start, svc.timezone)
        with svc.lock:
            svc.observe_call(call.caller, call.callee, ts, call.duration, call.answered, cell, device)
            signals, prob = svc.call_signals(call.caller, ts)
        category = Category.FRAUD if any(s.name in FRAUD_SIGNALS for s in signals) else Category.PERSONAL
        version = getattr(svc.model, "version", "behaviour-rules")
        return self.policy.decide(category, "other" if category == Category.FRAUD else None, prob, {}, signals, version)

    def outcome(self, call: Call, duration: float, answered: bool) -> bool:
        """The screened call ended: fill in its duration and whether it was answered."""
        with self.service.lock:
            return self.service.stream.complete_call(call.caller, call.callee, epoch(call.start, self.service.timezone),
                                                     duration, answered)
