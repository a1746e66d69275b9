"""The SMPP firewall's hold queue (``hold_response = "queue"``): keep, then release or reject.

A message whose verdict is ``hold`` is stored durably (:class:`skyshield.disposal.held.HeldMessages`) and only
then answered "accepted" with a message id of the firewall's own. A reviewer's label decides it; a task on the
event loop polls every ``hold_poll_interval`` for decisions about the tenants bound here:

* released: the original part PDUs go upstream unchanged (new sequence numbers) over a transmitting bind of the
  tenant; the SMS centre's delivery receipts for them reach the sender under the id the firewall gave it.
* rejected, or expired (``hold_expiry``): a sender that asked for a receipt gets ``stat:REJECTD``.

Every database call runs on one worker thread of this class, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from skyshield.events import Message, Verdict
from skyshield.gateway import smpp_pdu as P
from skyshield.gateway.smpp_text import Group, decode, split_udh

if TYPE_CHECKING:
    from skyshield.disposal.held import HeldMessage, HeldMessages
    from skyshield.gateway.smpp import EsmeSession, Firewall, Tenant

log = logging.getLogger("skyshield.gateway.smpp")

#: How long the firewall remembers which SMS-centre id of a released message maps to the id its sender knows.
RECEIPT_MEMORY = timedelta(days=3)
#: Forwarded rows are re-read this far behind the last one seen: another worker commits its row a moment after
#: the time it wrote in it.
RECEIPT_SLACK = timedelta(minutes=1)


@dataclass(slots=True)
class Forwarding:
    """A released message on its way upstream: the SMS centre's answer per part."""

    held: HeldMessage
    session: EsmeSession
    statuses: list[int | None]
    upstream_ids: list[str]
    timer: asyncio.TimerHandle | None = None
    done: bool = False


def parse_part(pdu: bytes) -> P.ShortMessage:
    body = pdu[P.HEADER_LEN:]
    return P.parse_data_sm(body) if int.from_bytes(pdu[4:8], "big") == P.DATA_SM else P.parse_short_message(body)


def part_text(sm: P.ShortMessage) -> str:
    try:
        return decode(split_udh(sm)[1], sm.data_coding)
    except (P.PduError, ValueError):
        return ""


class HoldQueue:
    """Keeps held messages for one firewall and acts on reviewers' decisions about them."""

    def __init__(self, firewall: Firewall, book: HeldMessages):
        self.fw = firewall
        self.book = book
        self.settings = firewall.settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="skyshield-hold")
        self._task: asyncio.Task | None = None
        #: (tenant, SMS centre's id) -> the firewall's id, for receipts of released messages (oldest first).
        self.receipt_ids: OrderedDict[tuple[str, str], tuple[str, datetime]] = OrderedDict()
        self._seen_until = datetime.now(UTC) - RECEIPT_MEMORY
        self.forwarding: set[int] = set()
        #: Held messages being stored, not yet answered.
        self.keeping: set[asyncio.Future] = set()

    # -- keeping ------------------------------------------------------------------------------------

    def keep(self, session: EsmeSession, group: Group, message: Message, verdict: Verdict) -> None:
        """Store the held message; answer its parts "accepted" once it is committed, or ``hold_status`` when the
        store failed (the sender keeps the message and may try again: nothing is lost)."""
        ids = [self.fw.fake_message_id() for _ in group.parts]
        parts = [(p.pdu, i, p.sm.registered_delivery) for p, i in zip(group.parts, ids, strict=True)]
        wants = any(P.receipt_wanted(p.sm.registered_delivery, "REJECTD") for p in group.parts)
        future = asyncio.get_running_loop().run_in_executor(self._pool, self.book.keep, message, verdict, parts, wants)
        self.keeping.add(future)
        future.add_done_callback(lambda f: self.kept(session, group, ids, f))

    def kept(self, session: EsmeSession, group: Group, ids: list[str], future: asyncio.Future) -> None:
        self.keeping.discard(future)
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        if error is not None:
            log.error("%s: could not keep a held message; answering hold_status", session.peer, exc_info=error)
        elif session.closed:
            log.warning("%s: held message %s kept, but the bind closed before it was answered", session.peer,
                        future.result())
        for part, message_id in zip(group.parts, ids, strict=True):
            session.outstanding -= 1
            if error is None:
                session.write(P.refusal(part.command_id, P.ESME_ROK, part.sequence, message_id))
            else:
                session.write(P.refusal(part.command_id, self.settings.hold_status, part.sequence))
        self.fw.counts["held_kept" if error is None else "held_not_kept"] += 1

    # -- polling for decisions ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        # A write under way (a message being kept, a claim) ends before the store closes.
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self.poll()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a store outage is retried next round
                failures += 1
                if failures == 1:
                    log.exception("hold queue: polling for review decisions failed (retrying every %gs)",
                                  self.settings.hold_poll_interval)
                elif failures % 60 == 0:
                    log.error("hold queue: polling has failed %d times in a row: %s", failures, exc)
            await asyncio.sleep(self.settings.hold_poll_interval)

    def _binds(self) -> tuple[dict[str, Tenant], set[str], set[str]]:
        """Tenants bound here by name, those with a transmitting and those with a receiving bind."""
        tenants: dict[str, Tenant] = {t.name: t for t in self.fw.tenants.values()}
        sending, receiving = set(), set()
        for s in self.fw.sessions:
            if s.closed or s.tenant is None or s.bound is None:
                continue
            tenants[s.tenant.name] = s.tenant
            if s.bound in ("transmitter", "transceiver") and s.upstream is not None:
                sending.add(s.tenant.name)
            if s.bound in ("receiver", "transceiver"):
                receiving.add(s.tenant.name)
        return tenants, sending, receiving

    async def poll(self) -> None:
        tenants, sending, receiving = self._binds()
        loop = asyncio.get_running_loop()
        claimed, mapped = await loop.run_in_executor(self._pool, self._poll_store, list(tenants), sending, receiving)
        for tenant, theirs, ours, done_at in mapped:
            self.remember(tenant, theirs, ours, datetime.fromisoformat(done_at))
        self.forget_old()
        for held in claimed:
            try:
                if held.status == "released":
                    self.forward(held)
                else:
                    self.refuse(held, tenants.get(held.tenant))
            except Exception:  # noqa: BLE001 - one bad row must not stop the others; it stays claimed
                log.exception("hold queue: could not act on held message %d", held.id)

    def _poll_store(self, tenants: list[str], sending: set[str],
                    receiving: set[str]) -> tuple[list[HeldMessage], list[tuple[str, str, str, str]]]:
        expired = self.book.expire(self.settings.hold_expiry, tenants)
        if expired:
            log.info("hold queue: %d held messages expired (hold_expiry %gs)", expired, self.settings.hold_expiry)
        since = self._seen_until - RECEIPT_SLACK
        mapped = self.book.forwarded_since(since, tenants)
        if mapped:
            self._seen_until = max(self._seen_until, max(datetime.fromisoformat(m[3]) for m in mapped))
        return self.book.claim(self.worker, sending, receiving), mapped

    def _in_pool(self, fn: Any, *args: Any) -> None:
        try:
            future = self._pool.submit(fn, *args)
        except RuntimeError:  # the firewall is closing: the row stays claimed and is never sent again
            log.warning("hold queue closed before %s could be recorded for a held message", fn.__name__)
            return
        future.add_done_callback(_log_failure)

    # -- released: forward ------------------------------------------------------------------------------

    def sender_bind(self, tenant: str) -> EsmeSession | None:
        return next((s for s in self.fw.sessions if not s.closed and s.tenant is not None and s.tenant.name == tenant
                     and s.bound in ("transmitter", "transceiver") and s.upstream is not None), None)

    def forward(self, held: HeldMessage) -> None:
        session = self.sender_bind(held.tenant)
        if session is None:  # the bind closed since the claim: nothing was sent, another round may take it
            self._in_pool(self.book.unclaim, held.id, self.worker)
            return
        upstream = session.upstream
        assert upstream is not None
        job = Forwarding(held, session, [None] * len(held.pdus), [""] * len(held.pdus))
        for index, pdu in enumerate(held.pdus):
            seq = upstream.next_seq()
            session.own_requests[seq] = lambda status, pdu, i=index: self.answered(job, i, status, pdu)
            upstream.write(P.with_sequence(pdu, seq))
        job.timer = asyncio.get_running_loop().call_later(self.settings.upstream_timeout, self.finish_forward, job)
        self.fw.counts["held_released"] += 1
        log.info("%s: released held message %d (verdict %s): %d parts forwarded", session.peer, held.id,
                 held.verdict_id, len(held.pdus))

    def answered(self, job: Forwarding, index: int, status: int, pdu: bytes) -> None:
        job.statuses[index] = status
        if status == P.ESME_ROK:
            try:
                job.upstream_ids[index] = P.parse_message_id(pdu[P.HEADER_LEN:])
            except P.PduError:
                log.warning("SMS centre's answer to held message %d part %d has no readable message_id",
                            job.held.id, index + 1)
        if all(s is not None for s in job.statuses):
            self.finish_forward(job)

    def finish_forward(self, job: Forwarding) -> None:
        if job.done:
            return
        job.done = True
        if job.timer is not None:
            job.timer.cancel()
        problems = []
        for index, status in enumerate(job.statuses):
            if status is None:
                problems.append(f"part {index + 1}: no answer within {self.settings.upstream_timeout:g}s (not resent)")
            elif status != P.ESME_ROK:
                problems.append(f"part {index + 1}: SMS centre refused it (status 0x{status:02x})")
                self.send_receipts(job.held, job.session.tenant, "UNDELIV", only=[index])
        outcome = "forwarded" + (f"; {'; '.join(problems)}" if problems else "")
        if problems:
            log.warning("held message %d: %s", job.held.id, outcome)
        now = datetime.now(UTC)
        for ours, theirs in zip(job.held.message_ids, job.upstream_ids, strict=True):
            if theirs:
                self.remember(job.held.tenant, theirs, ours, now)
        self._in_pool(self.book.finish, job.held.id, outcome, job.upstream_ids)

    # -- rejected / expired: tell the sender -------------------------------------------------------------

    def refuse(self, held: HeldMessage, tenant: Tenant | None) -> None:
        sent = self.send_receipts(held, tenant, "REJECTD")
        if sent is None:  # no receiving bind any more: give it back for a later round
            self._in_pool(self.book.unclaim, held.id, self.worker)
            return
        self.fw.counts["held_rejected"] += 1
        self._in_pool(self.book.finish, held.id, f"{held.status}: {sent} REJECTD receipt(s) sent")

    def send_receipts(self, held: HeldMessage, tenant: Tenant | None, stat: str,
                      only: list[int] | None = None) -> int | None:
        """A receipt with ``stat`` for each part (or those in ``only``) whose sender asked for one; the number
        sent, or ``None`` when no bind of the tenant could take them."""
        sent = 0
        for index, (pdu, message_id) in enumerate(zip(held.pdus, held.message_ids, strict=True)):
            if only is not None and index not in only:
                continue
            sm = parse_part(pdu)
            if not P.receipt_wanted(sm.registered_delivery, stat):
                continue
            if not self.fw.send_receipt(tenant, None, message_id, sm, stat, part_text(sm)):
                return None if sent == 0 else sent
            sent += 1
        return sent

    # -- receipts of released messages ------------------------------------------------------------------

    def remember(self, tenant: str, theirs: str, ours: str, when: datetime) -> None:
        self.receipt_ids[(tenant, theirs)] = (ours, when)

    def forget_old(self) -> None:
        cutoff = datetime.now(UTC) - RECEIPT_MEMORY
        while self.receipt_ids:
            key, (_, when) = next(iter(self.receipt_ids.items()))
            if when >= cutoff:
                break
            del self.receipt_ids[key]

    def map_receipt(self, tenant: Tenant | None, pdu: bytes) -> bytes:
        """A deliver_sm from the SMS centre, with the id of a released message's receipt turned into the id the
        firewall answered its sender with; any other deliver_sm unchanged."""
        if tenant is None:
            return pdu
        try:
            sm = P.parse_short_message(pdu[P.HEADER_LEN:])
        except P.PduError:
            return pdu
        if sm.esm_class & P.ESM_TYPE_MASK != P.ESM_DELIVERY_RECEIPT:
            return pdu
        theirs = sm.tlvs.get(P.TLV_RECEIPTED_MESSAGE_ID, b"").rstrip(b"\0").decode("latin-1")
        if not theirs:
            text = sm.payload.decode("latin-1")
            theirs = text[3:].split(" ", 1)[0] if text.startswith("id:") else ""
        found = self.receipt_ids.get((tenant.name, theirs))
        if not theirs or found is None:
            return pdu
        ours = found[0].encode("ascii")
        old = b"id:" + theirs.encode("latin-1")
        if P.TLV_RECEIPTED_MESSAGE_ID in sm.tlvs:
            sm.tlvs[P.TLV_RECEIPTED_MESSAGE_ID] = ours + b"\0"
        if P.TLV_MESSAGE_PAYLOAD in sm.tlvs:
            sm.tlvs[P.TLV_MESSAGE_PAYLOAD] = sm.tlvs[P.TLV_MESSAGE_PAYLOAD].replace(old, b"id:" + ours, 1)
        sm.short_message = sm.short_message.replace(old, b"id:" + ours, 1)
        if len(sm.short_message) > 254:
            return pdu
        _, cmd, status, seq = P.HEADER.unpack_from(pdu)
        return P.build(cmd, status, seq, sm.encode())


def _log_failure(future: Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("hold queue: a store write failed", exc_info=future.exception())


def open_held_messages(policy: Any) -> HeldMessages | None:
    """The held-message table on the store the settings name; ``None`` (with a log line saying what held messages
    get instead) when it cannot be opened."""
    try:
        from skyshield.disposal.held import HeldMessages
        from skyshield.store import open_store_for

        return HeldMessages(open_store_for(policy))
    except Exception as exc:  # noqa: BLE001 - run without a hold queue rather than not at all, and say so
        log.error("held messages will be refused (hold_status), not kept: cannot open the store: %s", exc)
        return None
