"""Keep a record of every gateway decision without slowing the traffic path.

Decisions go onto a queue; one background thread writes them to the store in batches (one
transaction each). If the store fails, the gateway keeps running and the failure is logged.

What a crash can lose: :meth:`Recorder.close` (on a clean stop: SIGTERM, Ctrl-C) writes everything queued.
A process killed outright (SIGKILL, OOM, power) loses the decisions still queued and the batch being written
(its transaction rolls back): normally the last few milliseconds of traffic, at most what piled up while the
store was slow (plus ``linger``, where a gateway sets one: the SIP proxy waits up to 50 ms to fill a batch).
Committed batches survive (SQLite WAL with ``synchronous=NORMAL``: a process crash loses no
commit). This bound holds for everything queued with
:meth:`Recorder.record` (the SIP proxy's decisions); what :meth:`Recorder.write` stores is committed on return.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from skyshield.events import Call, Channel, Message, Verdict

log = logging.getLogger("skyshield.gateway")


class Recorder:
    """Writes ``(message, verdict)`` pairs to a ``VerdictStore`` from a background thread."""

    def __init__(self, store: Any, batch: int = 500, linger: float = 0.0):
        self.store = store
        self.batch = batch
        #: Seconds to wait for more decisions before writing a batch that is not full: at low rates one
        #: transaction per decision costs more CPU than the decision itself (and a crash loses up to this more).
        self.linger = linger
        self.saved = 0
        self.failed = 0
        self._queue: queue.SimpleQueue[tuple[Message, Verdict] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="skyshield-recorder", daemon=True)
        self._thread.start()

    def record(self, items: Sequence[tuple[Message, Verdict]]) -> None:
        """Queue ``items`` for the background thread."""
        for item in items:
            self._queue.put(item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            items = [item]
            stop = False
            deadline = time.monotonic() + self.linger
            while len(items) < self.batch:
                try:
                    wait = deadline - time.monotonic()
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            self.write(items)
            if stop:
                return

    def write(self, items: Sequence[tuple[Message, Verdict]]) -> list[int] | None:
        """Store ``items`` now, in the caller's thread (one transaction); the verdict ids, or ``None`` when the
        store failed (logged and counted: a store outage must not stop the traffic)."""
        try:
            ids = self.store.save(items)
        except Exception:  # noqa: BLE001 - a store outage must not stop the traffic
            self.failed += len(items)
            log.exception("could not record %d verdicts", len(items))
            return None
        self.saved += len(items)
        return ids

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)


def call_message(call: Call, call_id: str | None = None) -> Message:
    """A screened call as the store keeps it: the caller as sender, the callee as recipient, no text, channel
    ``call`` and the SIP Call-ID as the external id (what an operator quotes when asking about a call)."""
    return Message(text="", sender=call.caller, recipient=call.callee, time=call.start, channel=Channel.CALL,
                   tenant=call.tenant, external_id=call_id)


def open_recorder(policy: Any, linger: float = 0.0) -> Recorder | None:
    """A recorder on the store the settings name; ``None`` (with a log line) when it cannot be opened."""
    try:
        from skyshield.store import open_store_for

        return Recorder(open_store_for(policy), linger=linger)
    except Exception as exc:  # noqa: BLE001 - run unrecorded rather than not at all, and say so
        log.error("verdicts will not be recorded: cannot open the store: %s", exc)
        return None
