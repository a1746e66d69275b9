"""The ``behaviour`` detector: each message feeds its sender's and recipient's state and gets signals back.

Signals: SENDER_FRAUD_SCORE, SENDER_FAN_OUT, SMS_BOMBING, ROTATED_NUMBER, BLOCKED_NUMBER,
REPUTATION_LISTED (weights in ``[signals]``, knobs in ``[detectors.behaviour]``). State is shared with
:class:`skyshield.behaviour.calls.CallScreener` through :func:`shared_service`.
"""

from __future__ import annotations

import hashlib
import re

from skyshield.behaviour.calls import epoch
from skyshield.behaviour.service import BehaviourService, shared_service
from skyshield.engine import BatchContext
from skyshield.events import Signal
from skyshield.policy import Policy

_VARIABLE = re.compile(r"\d+")


def template_fingerprint(text: str) -> str:
    """A short hash of the text with its numbers masked: sends of one template share it."""
    return hashlib.blake2b(_VARIABLE.sub("#", text).encode("utf-8"), digest_size=8).hexdigest()


class BehaviourDetector:
    name = "behaviour"

    def __init__(self, policy: Policy, service: BehaviourService | None = None):
        self.service = service or shared_service(policy)

    def detect(self, ctx: BatchContext) -> list[list[Signal]]:
        svc = self.service
        out: list[list[Signal]] = [[] for _ in ctx.messages]
        senders = [i for i, msg in enumerate(ctx.messages) if msg.sender]
        # one fingerprint per distinct analysed text (bulk sends repeat a text; the analyses are shared)
        fingerprints: dict[int, str] = {}
        rows = []
        for i in senders:
            msg, analysis = ctx.messages[i], ctx.analyses[i]
            fp = fingerprints.get(id(analysis))
            if fp is None:
                fp = fingerprints[id(analysis)] = template_fingerprint(analysis.normalised)
            rows.append((msg.sender, msg.recipient, epoch(msg.time, svc.timezone), bool(analysis.entities.codes), fp))
        with svc.lock:
            found = svc.observe_messages(rows)
        for i, signals in zip(senders, found, strict=True):
            out[i] = signals
        return out
