"""From SMPP user data to text: data_coding, the user-data header, and concatenated parts.

Parts are joined as bytes before decoding, so a UCS-2 surrogate pair or a GSM escape sequence that
a sender split across two parts still decodes to the right character. The GSM 03.38 alphabet
(default table and extension table) comes from the ``gsm0338`` codec.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

from skyshield.gateway.smpp_pdu import (
    ESM_UDHI,
    ESME_RINVESMCLASS,
    TLV_SAR_MSG_REF_NUM,
    TLV_SAR_SEGMENT_SEQNUM,
    TLV_SAR_TOTAL_SEGMENTS,
    PduError,
    ShortMessage,
)

GSM7, ASCII, LATIN1, BINARY, UCS2 = "gsm7", "ascii", "latin1", "binary", "ucs2"


def alphabet(data_coding: int) -> str:
    """The character set a data_coding value names (SMPP 3.4 5.2.19 and GSM 03.38 coding groups)."""
    if data_coding == 0x00:
        return GSM7  # SMSC default alphabet; GSM 03.38 on every network this targets
    if data_coding == 0x01:
        return ASCII
    if data_coding == 0x03:
        return LATIN1
    if data_coding == 0x08:
        return UCS2
    if data_coding in (0x02, 0x04):
        return BINARY
    group = data_coding >> 4
    if group in (0x0, 0x1, 0x2, 0x3) and data_coding & 0x20 == 0:  # general data coding, uncompressed
        return {0x0: GSM7, 0x4: BINARY, 0x8: UCS2, 0xC: BINARY}[data_coding & 0x0C]
    if group == 0xF:
        return BINARY if data_coding & 0x04 else GSM7
    if group in (0xC, 0xD):
        return GSM7
    if group == 0xE:
        return UCS2
    return LATIN1  # reserved values: read the octets as they are rather than refuse the message


def decode(data: bytes, data_coding: int) -> str:
    """User data (without UDH) as text; never raises, bad octets become U+FFFD."""
    kind = alphabet(data_coding)
    if kind == GSM7:
        return data.decode("gsm03.38", errors="replace")
    if kind == UCS2:
        if len(data) % 2:
            data = data[:-1]
        return data.decode("utf-16-be", errors="replace")
    if kind == ASCII:
        return data.decode("ascii", errors="replace")
    return data.decode("latin-1")  # LATIN1, and BINARY shown octet for octet


@dataclass(slots=True)
class Segment:
    """Where one part sits in a concatenated message."""

    reference: int
    total: int
    number: int
    #: "udh8", "udh16" or "sar": keeps an 8-bit reference 7 apart from a 16-bit reference 7.
    scheme: str


def split_udh(sm: ShortMessage) -> tuple[Segment | None, bytes]:
    """The concatenation info of a part (UDH or SAR TLVs) and its user data without the UDH."""
    data = sm.payload
    segment = None
    if sm.esm_class & ESM_UDHI:
        if not data:
            raise PduError("UDH indicator set but no user data", ESME_RINVESMCLASS)
        udhl = data[0]
        if 1 + udhl > len(data):
            raise PduError(f"UDH length {udhl} exceeds user data of {len(data)} octets", ESME_RINVESMCLASS)
        udh, data = data[1:1 + udhl], data[1 + udhl:]
        pos = 0
        while pos + 2 <= len(udh):
            iei, iel = udh[pos], udh[pos + 1]
            value = udh[pos + 2:pos + 2 + iel]
            if len(value) != iel:
                raise PduError("UDH information element cut short", ESME_RINVESMCLASS)
            if iei == 0x00 and iel == 3:
                segment = Segment(value[0], value[1], value[2], "udh8")
            elif iei == 0x08 and iel == 4:
                segment = Segment(int.from_bytes(value[:2], "big"), value[2], value[3], "udh16")
            pos += 2 + iel
    elif TLV_SAR_MSG_REF_NUM in sm.tlvs:
        try:
            segment = Segment(int.from_bytes(sm.tlvs[TLV_SAR_MSG_REF_NUM], "big"),
                              sm.tlvs[TLV_SAR_TOTAL_SEGMENTS][0], sm.tlvs[TLV_SAR_SEGMENT_SEQNUM][0], "sar")
        except (KeyError, IndexError) as exc:
            raise PduError("incomplete SAR optional parameters", ESME_RINVESMCLASS) from exc
    if segment is not None and (segment.total == 0 or not 1 <= segment.number <= segment.total):
        raise PduError(f"part {segment.number} of {segment.total} is not a valid position", ESME_RINVESMCLASS)
    if segment is not None and segment.total == 1:
        segment = None
    return segment, data


@dataclass(slots=True)
class Part:
    """One submit_sm (or data_sm) as received: what the firewall answers to and forwards."""

    sequence: int
    pdu: bytes
    sm: ShortMessage
    user_data: bytes
    segment: Segment | None
    received: float = field(default_factory=time.monotonic)
    #: submit_sm or data_sm: what the answer is.
    command_id: int = 0x00000004


@dataclass(slots=True)
class Group:
    """One whole message: all its parts, in order; judged once."""

    parts: list[Part]
    text: str
    complete: bool = True
    verdict: Any = None


def join(parts: list[Part], complete: bool = True) -> Group:
    parts = sorted(parts, key=lambda p: p.segment.number if p.segment else 0)
    data = b"".join(p.user_data for p in parts)
    return Group(parts, decode(data, parts[0].sm.data_coding), complete)


class Reassembler:
    """Holds parts until their message is whole (or until ``timeout`` seconds pass)."""

    def __init__(self, timeout: float = 10.0, max_pending: int = 10_000):
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: dict[tuple, dict[int, Part]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, part: Part) -> Group | None:
        """The whole message once ``part`` completes it; a single-part message comes straight back."""
        seg = part.segment
        if seg is None:
            return join([part])
        key = (part.sm.source_addr, part.sm.destination_addr, seg.scheme, seg.reference, seg.total)
        parts = self._pending.setdefault(key, {})
        if seg.number in parts:
            # A repeated part number starts a new message under a reused reference: judge the old one as it is.
            old = self._pending.pop(key)
            self._pending[key] = {seg.number: part}
            return join(list(old.values()), complete=False)
        parts[seg.number] = part
        if len(parts) == seg.total:
            del self._pending[key]
            return join(list(parts.values()))
        return None

    def expire(self, now: float | None = None) -> list[Group]:
        """Messages whose missing parts did not come in time (or beyond the pending limit): judge what came."""
        now = time.monotonic() if now is None else now
        out = []
        for key in list(self._pending):
            parts = self._pending[key]
            if len(self._pending) > self.max_pending or min(p.received for p in parts.values()) + self.timeout <= now:
                del self._pending[key]
                out.append(join(list(parts.values()), complete=False))
        return out

    def drain(self) -> list[Group]:
        """Everything still waiting (the bind is closing)."""
        out = [join(list(parts.values()), complete=False) for parts in self._pending.values()]
        self._pending.clear()
        return out
