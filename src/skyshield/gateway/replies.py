"""Replies that come back through the SMPP firewall (deliver_sm) go to the opt-out registry.

The registry (``skyshield.compliance.optout.handle_reply``) writes to SQLite, so it runs on one
worker thread, never on the event loop; the reply itself is relayed to the sender at once.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from skyshield.events import Message

log = logging.getLogger("skyshield.gateway.replies")


class OptOutReplies:
    """Callable given to the firewall as ``on_reply``: files opt-out replies in the consent ledger."""

    def __init__(self, ledger: Any, policy: Any):
        from skyshield.compliance.optout import handle_reply

        self._handle = handle_reply
        self.ledger = ledger
        self.policy = policy
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="skyshield-optout")

    def __call__(self, reply: Message) -> Future:
        return self._pool.submit(self._file, reply)

    def _file(self, reply: Message) -> Any:
        try:
            # The subscriber replies from their number (deliver_sm source) to the sending address (destination).
            outcome = self._handle(self.ledger, self.policy, text=reply.text, recipient=reply.sender,
                                   sender=reply.recipient, tenant=reply.tenant, time=reply.time)
        except Exception:  # noqa: BLE001 - log and go on: the reply was relayed already
            log.exception("could not file the reply from %s", reply.sender)
            return None
        if outcome.opt_out:
            log.info("opt-out from %s to %s (%s)%s", reply.sender, reply.recipient, outcome.keyword,
                     "" if outcome.new else ", already on record")
            if outcome.confirmation:
                # TODO: send the confirmation back as a submit_sm through the upstream bind.
                log.info("confirmation to send to %s: %s", reply.sender, outcome.confirmation)
        return outcome

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def open_reply_handler(policy: Any) -> OptOutReplies | None:
    """The opt-out hook when the compliance module and its ledger are available; ``None`` otherwise."""
    try:
        from skyshield.compliance.ledger import ConsentLedger

        return OptOutReplies(ConsentLedger.from_settings(), policy)
    except Exception as exc:  # noqa: BLE001 - replies are still relayed; say why they are not filed
        log.error("replies will be relayed but not checked for opt-outs: %s", exc)
        return None
