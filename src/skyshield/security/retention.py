"""Message-body retention: text older than ``[privacy] retain_text`` is deleted; verdicts and signals stay.

``skyshield purge`` runs it by hand; ``skyshield serve`` runs it at start and every ``purge_every``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from skyshield.policy import Policy, parse_duration
from skyshield.security.db import q, write_transaction
from skyshield.store import VerdictStore

log = logging.getLogger("skyshield.retention")


def retention_seconds(policy: Policy) -> int | None:
    """How long message text is kept, or None for forever (``retain_text = ""``)."""
    raw = str(policy.section("privacy")["retain_text"]).strip()
    return parse_duration(raw) if raw else None


def purge_text(store: VerdictStore, older_than_s: int, *, now: datetime | None = None) -> int:
    """Delete the text of verdicts stored more than ``older_than_s`` seconds before ``now``; returns how many."""
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(seconds=older_than_s)).astimezone(UTC).isoformat(timespec="microseconds")
    conn = store.connect()
    try:
        with write_transaction(conn):
            cur = conn.execute(q(conn, "UPDATE verdicts SET text = NULL WHERE text IS NOT NULL AND stored_at < ?"),
                               (cutoff,))
            n = cur.rowcount
    finally:
        conn.close()
    if n:
        log.info("retention: deleted the text of %d messages stored before %s", n, cutoff)
    return max(n, 0)


def start_purger(store: VerdictStore, policy: Policy) -> Callable[[], None]:
    """Purge now (in the background) and every ``purge_every``; returns a function that stops it."""
    keep = retention_seconds(policy)
    if keep is None:
        return lambda: None
    every = parse_duration(str(policy.section("privacy")["purge_every"]))
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                purge_text(store, keep)
            except Exception as exc:  # noqa: BLE001 - a failed purge is retried next round, never kills the server
                log.warning("retention purge failed (retrying in %d s): %s", every, exc)
            stop.wait(every)

    thread = threading.Thread(target=loop, name="skyshield-retention", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(timeout=5)

    return halt
