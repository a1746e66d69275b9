"""Keep a record of every gateway decision without slowing the traffic path.

Decisions go onto a queue; one background thread writes them to the store in batches (one
transaction each). If the store fails, the gateway keeps running and the failure is logged.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any

from skyshield.events import Message, Verdict

log = logging.getLogger("skyshield.gateway")


class Recorder:
    """Writes ``(message, verdict)`` pairs to a ``VerdictStore`` from a background thread."""

    def __init__(self, store: Any, batch: int = 500):
        self.store = store
        self.batch = batch
        self.saved = 0
        self.failed = 0
        self._queue: queue.SimpleQueue[tuple[Message, Verdict] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="skyshield-recorder", daemon=True)
        self._thread.start()

    def record(self, items: Sequence[tuple[Message, Verdict]]) -> None:
        for item in items:
            self._queue.put(item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            items = [item]
            stop = False
            while len(items) < self.batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            try:
                self.store.save(items)
                self.saved += len(items)
            except Exception:  # noqa: BLE001 - a store outage must not stop the traffic
                self.failed += len(items)
                log.exception("could not record %d verdicts", len(items))
            if stop:
                return

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)


def open_recorder(policy: Any) -> Recorder | None:
    """A recorder on the store the settings name; ``None`` (with a log line) when it cannot be opened."""
    try:
        from skyshield.store import open_store_for

        return Recorder(open_store_for(policy))
    except Exception as exc:  # noqa: BLE001 - run unrecorded rather than not at all, and say so
        log.error("verdicts will not be recorded: cannot open the store: %s", exc)
        return None
