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
        out: list[list[Signal]] = []
        svc = self.service
        with svc.lock:
            for msg, analysis in zip(ctx.messages, ctx.analyses, strict=False):
                if not msg.sender:
                    out.append([])
                    continue
                is_code = bool(analysis.entities.codes)
                out.append(svc.observe_message(msg.sender, msg.recipient, epoch(msg.time, svc.timezone), is_code,
                                               template_fingerprint(analysis.normalised)))
        return out
