"""A small SMS centre (SMSC) simulator speaking SMPP 3.4, for tests and benchmarks on loopback.

It accepts binds, answers submit_sm and data_sm with a message id (and remembers what it got), can send
mobile-originated replies (deliver_sm) and delivery receipts to bound receivers, and answers
enquire_link and unbind. Reads are length-framed like the firewall's.

    python -m skyshield.gateway.smsc_sim --listen 127.0.0.1:2776
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
from dataclasses import dataclass

from skyshield.gateway import smpp_pdu as P
from skyshield.gateway.smpp import _Framed, parse_hostport
from skyshield.gateway.smpp_text import decode, split_udh

log = logging.getLogger("skyshield.gateway.smsc_sim")


@dataclass(slots=True)
class Received:
    """One submit_sm as the SMS centre got it (one part of a concatenated message is one Received)."""

    system_id: str
    message_id: str
    sm: P.ShortMessage
    text: str
    pdu: bytes


class SmscSession(_Framed):
    def __init__(self, smsc: SmscSimulator):
        super().__init__()
        self.smsc = smsc
        self.system_id = ""
        self.bound: str | None = None
        self.seq = 0
        self.answers: dict[int, asyncio.Future[int]] = {}

    def connection_lost(self, exc: Exception | None) -> None:
        self.smsc.sessions.discard(self)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def pdu_received(self, pdu: bytes) -> None:
        _, cmd, status, seq = P.HEADER.unpack_from(pdu)
        smsc = self.smsc
        if cmd & P.RESPONSE_BIT:
            fut = self.answers.pop(seq, None)
            if fut is not None and not fut.done():
                fut.set_result(status)
            return
        if cmd in P.BINDS:
            bind = P.parse_bind(pdu[P.HEADER_LEN:])
            if smsc.credentials is not None and smsc.credentials.get(bind.system_id) != bind.password:
                self.write(P.bind_resp(cmd, P.ESME_RINVPASWD, seq, "sim"))
                return
            self.system_id, self.bound = bind.system_id, P.BINDS[cmd]
            smsc.sessions.add(self)
            smsc.binds.append((bind.system_id, self.bound))
            self.write(P.bind_resp(cmd, P.ESME_ROK, seq, "sim"))
        elif cmd == P.SUBMIT_SM or cmd == P.DATA_SM:
            smsc.submitted += 1
            message_id = f"{next(smsc.ids):x}"
            if smsc.keep:
                body = pdu[P.HEADER_LEN:]
                sm = P.parse_short_message(body) if cmd == P.SUBMIT_SM else P.parse_data_sm(body)
                _, data = split_udh(sm)
                smsc.received.append(Received(self.system_id, message_id, sm, decode(data, sm.data_coding), pdu))
            self.write(P.refusal(cmd, P.ESME_ROK, seq, message_id))
        elif cmd == P.ENQUIRE_LINK:
            smsc.enquire_links += 1
            self.write(P.empty_resp(cmd, seq))
        elif cmd == P.UNBIND:
            self.write(P.empty_resp(cmd, seq))
            self.bound = None
            if self.transport is not None:
                self.transport.close()
        else:
            self.write(P.generic_nack(P.ESME_RINVCMDID, seq))

    def send(self, command_id: int, body: bytes) -> asyncio.Future[int]:
        seq = self.next_seq()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.answers[seq] = fut
        self.write(P.build(command_id, 0, seq, body))
        return fut


class SmscSimulator:
    """The simulator's server. ``credentials=None`` accepts any bind."""

    def __init__(self, credentials: dict[str, str] | None = None, keep: bool = True):
        self.credentials = credentials
        self.keep = keep
        self.received: list[Received] = []
        self.binds: list[tuple[str, str]] = []
        self.sessions: set[SmscSession] = set()
        self.submitted = 0
        self.enquire_links = 0
        self.ids = itertools.count(1)
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SmscSession(self), host, port)
        return self.server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        if self.server is not None:
            await self.server.wait_closed()

    def _receiver(self, system_id: str) -> SmscSession:
        for session in self.sessions:
            if session.system_id == system_id and session.bound in ("receiver", "transceiver"):
                return session
        raise LookupError(f"no receiver bound for {system_id!r}")

    async def deliver(self, system_id: str, source: str, destination: str, text: str, timeout: float = 5.0) -> int:
        """Send a mobile-originated reply to ``system_id``'s receiver; returns the deliver_sm_resp status."""
        try:
            data, coding = text.encode("gsm03.38"), 0
        except UnicodeError:
            data, coding = text.encode("utf-16-be"), 8
        sm = P.ShortMessage(source_addr=source, destination_addr=destination, short_message=data, data_coding=coding)
        return await asyncio.wait_for(self._receiver(system_id).send(P.DELIVER_SM, sm.encode()), timeout)

    async def receipt(self, system_id: str, received: Received, stat: str = "DELIVRD", timeout: float = 5.0) -> int:
        """Send a delivery receipt for ``received`` to ``system_id``'s receiver."""
        text = (f"id:{received.message_id} sub:001 dlvrd:001 submit date:2601011200 done date:2601011200 "
                f"stat:{stat} err:000")
        sm = P.ShortMessage(source_addr=received.sm.destination_addr, destination_addr=received.sm.source_addr,
                            esm_class=P.ESM_DELIVERY_RECEIPT, short_message=text.encode("ascii"),
                            tlvs={P.TLV_RECEIPTED_MESSAGE_ID: received.message_id.encode() + b"\0"})
        return await asyncio.wait_for(self._receiver(system_id).send(P.DELIVER_SM, sm.encode()), timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SMPP 3.4 SMS centre simulator (accepts any bind)")
    parser.add_argument("--listen", default="127.0.0.1:2776")
    parser.add_argument("--keep", action="store_true", help="remember every message (tests); off for benchmarks")
    args = parser.parse_args(argv)
    host, port = parse_hostport(args.listen)

    async def serve() -> None:
        smsc = SmscSimulator(keep=args.keep)
        bound = await smsc.start(host, port)
        print(f"SMSC simulator on {bound[0]}:{bound[1]}", flush=True)
        await asyncio.Event().wait()

    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
