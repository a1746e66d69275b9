"""Message-body retention: text older than ``[privacy] retain_text`` is deleted; verdicts and signals stay.

``skyshield purge`` runs it by hand; ``skyshield serve`` runs it at start and every ``purge_every``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

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
    held_table = "smpp_hold" in store.schema_versions()
    conn = store.connect()
    try:
        with write_transaction(conn):
            cur = conn.execute(q(conn, "UPDATE verdicts SET text = NULL WHERE text IS NOT NULL AND stored_at < ?"),
                               (cutoff,))
            n = cur.rowcount
            held = _purge_held(conn, cutoff) if held_table else 0
    finally:
        conn.close()
    if n or held:
        log.info("retention: deleted the text of %d messages and the PDUs of %d held ones from before %s",
                 max(n, 0), held, cutoff)
    return max(n, 0)


def _purge_held(conn: Any, cutoff: str) -> int:
    """Empty the PDUs (the text) of SMPP held messages from before ``cutoff`` that need them no more: forwarded
    or answered (done), or rejected/expired with no receipt to send. Held ones, released ones not yet forwarded
    and claimed ones not done (a claim can be given back) keep theirs."""
    cur = conn.execute(q(conn, "UPDATE smpp_held SET pdus = ? WHERE held_at < ? AND length(pdus) > 0 AND"
                               " (done_at IS NOT NULL OR (status IN ('rejected', 'expired') AND wants_receipt = 0))"),
                       (b"", cutoff))
    return max(cur.rowcount, 0)


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
