"""SMPP 3.4 PDUs: framing, the fields a firewall reads, and the responses it writes.

Command ids, status codes and optional-parameter (TLV) tags come from ``smpplib`` (its constants are
the SMPP 3.4 tables). Its codec is not used on the hot path, for reasons a proxy cannot live with:
``smpplib`` accepts truncated bodies without complaint, raises on unknown TLVs unless told otherwise,
silently drops the ``sequence`` given to a response it builds, and re-encodes fields it did not read.
A proxy must forward the sender's bytes unchanged (only the sequence number is rewritten), so this
module reads the few fields it needs with strict bounds checks and writes only small responses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime

from smpplib import consts
from smpplib.command_codes import commands as COMMAND_IDS

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
RESPONSE_BIT = 0x80000000

GENERIC_NACK = COMMAND_IDS["generic_nack"]
BIND_RECEIVER = COMMAND_IDS["bind_receiver"]
BIND_TRANSMITTER = COMMAND_IDS["bind_transmitter"]
BIND_TRANSCEIVER = COMMAND_IDS["bind_transceiver"]
BINDS = {BIND_RECEIVER: "receiver", BIND_TRANSMITTER: "transmitter", BIND_TRANSCEIVER: "transceiver"}
QUERY_SM = COMMAND_IDS["query_sm"]
SUBMIT_SM = COMMAND_IDS["submit_sm"]
SUBMIT_SM_RESP = COMMAND_IDS["submit_sm_resp"]
DELIVER_SM = COMMAND_IDS["deliver_sm"]
DELIVER_SM_RESP = COMMAND_IDS["deliver_sm_resp"]
UNBIND = COMMAND_IDS["unbind"]
UNBIND_RESP = COMMAND_IDS["unbind_resp"]
REPLACE_SM = COMMAND_IDS["replace_sm"]
CANCEL_SM = COMMAND_IDS["cancel_sm"]
ENQUIRE_LINK = COMMAND_IDS["enquire_link"]
ENQUIRE_LINK_RESP = COMMAND_IDS["enquire_link_resp"]
SUBMIT_MULTI = COMMAND_IDS["submit_multi"]
DATA_SM = COMMAND_IDS["data_sm"]
KNOWN_COMMANDS = frozenset(COMMAND_IDS.values())
COMMAND_NAMES = {v: k for k, v in COMMAND_IDS.items()}

ESME_ROK = consts.SMPP_ESME_ROK
ESME_RINVMSGLEN = consts.SMPP_ESME_RINVMSGLEN
ESME_RINVCMDLEN = consts.SMPP_ESME_RINVCMDLEN
ESME_RINVCMDID = consts.SMPP_ESME_RINVCMDID
ESME_RINVBNDSTS = consts.SMPP_ESME_RINVBNDSTS
ESME_RALYBND = consts.SMPP_ESME_RALYBND
ESME_RSYSERR = consts.SMPP_ESME_RSYSERR
ESME_RBINDFAIL = consts.SMPP_ESME_RBINDFAIL
ESME_RINVPASWD = consts.SMPP_ESME_RINVPASWD
ESME_RINVSYSID = consts.SMPP_ESME_RINVSYSID
ESME_RINVESMCLASS = consts.SMPP_ESME_RINVESMCLASS
ESME_RSUBMITFAIL = consts.SMPP_ESME_RSUBMITFAIL
ESME_RTHROTTLED = consts.SMPP_ESME_RTHROTTLED

TLV_SAR_MSG_REF_NUM = consts.OPTIONAL_PARAMS["sar_msg_ref_num"]
TLV_SAR_TOTAL_SEGMENTS = consts.OPTIONAL_PARAMS["sar_total_segments"]
TLV_SAR_SEGMENT_SEQNUM = consts.OPTIONAL_PARAMS["sar_segment_seqnum"]
TLV_MESSAGE_PAYLOAD = consts.OPTIONAL_PARAMS["message_payload"]
TLV_RECEIPTED_MESSAGE_ID = consts.OPTIONAL_PARAMS["receipted_message_id"]
TLV_MESSAGE_STATE = consts.OPTIONAL_PARAMS["message_state"]
#: message_state values (SMPP 3.4 section 5.2.28) for the receipt stats the firewall sends.
MESSAGE_STATES = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}
#: registered_delivery bits 1-0: 01 asks for a receipt on success or failure, 10 on failure only.
RECEIPT_MASK = 0x03

#: esm_class bits: UDH indicator, and the message-type field (bits 2-5) of a deliver_sm.
ESM_UDHI = 0x40
ESM_TYPE_MASK = 0x3C
ESM_DELIVERY_RECEIPT = 0x04


class PduError(ValueError):
    """A PDU that cannot be read; ``status`` is the SMPP error to answer with."""

    def __init__(self, message: str, status: int = ESME_RINVCMDLEN):
        super().__init__(message)
        self.status = status


def is_response(command_id: int) -> bool:
    return bool(command_id & RESPONSE_BIT)


def command_name(command_id: int) -> str:
    return COMMAND_NAMES.get(command_id, f"0x{command_id:08x}")


def build(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return HEADER.pack(HEADER_LEN + len(body), command_id, status, sequence) + body


def with_sequence(pdu: bytes, sequence: int) -> bytes:
    """The same PDU under another sequence number (a proxy keeps one sequence space per side)."""
    return pdu[:12] + sequence.to_bytes(4, "big") + pdu[16:]


def cstring(value: str | bytes) -> bytes:
    raw = value.encode("latin-1") if isinstance(value, str) else value
    return raw + b"\0"


class BodyReader:
    """Reads SMPP fields from a body, never past its end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def cstring(self, max_len: int, name: str) -> str:
        end = self.data.find(b"\0", self.pos, self.pos + max_len)
        if end < 0:
            raise PduError(f"{name}: no NUL terminator within {max_len} octets")
        value = self.data[self.pos:end].decode("latin-1")
        self.pos = end + 1
        return value

    def u8(self, name: str) -> int:
        if self.pos >= len(self.data):
            raise PduError(f"{name}: body ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def octets(self, n: int, name: str) -> bytes:
        if self.pos + n > len(self.data):
            raise PduError(f"{name}: {n} octets announced, {len(self.data) - self.pos} present")
        value = self.data[self.pos:self.pos + n]
        self.pos += n
        return value

    def tlvs(self) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        data, pos = self.data, self.pos
        while pos < len(data):
            if pos + 4 > len(data):
                raise PduError("optional parameter header cut short", consts.SMPP_ESME_RINVOPTPARSTREAM)
            tag, length = struct.unpack_from(">HH", data, pos)
            pos += 4
            if pos + length > len(data):
                raise PduError(f"optional parameter 0x{tag:04x} longer than the body", consts.SMPP_ESME_RINVPARLEN)
            found[tag] = data[pos:pos + length]
            pos += length
        self.pos = pos
        return found


@dataclass(slots=True)
class Bind:
    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def encode(self) -> bytes:
        return (cstring(self.system_id) + cstring(self.password) + cstring(self.system_type)
                + bytes([self.interface_version, self.addr_ton, self.addr_npi]) + cstring(self.address_range))


def parse_bind(body: bytes) -> Bind:
    r = BodyReader(body)
    bind = Bind(r.cstring(16, "system_id"), r.cstring(9, "password"), r.cstring(13, "system_type"))
    bind.interface_version = r.u8("interface_version")
    bind.addr_ton = r.u8("addr_ton")
    bind.addr_npi = r.u8("addr_npi")
    bind.address_range = r.cstring(41, "address_range")
    return bind


@dataclass(slots=True)
class ShortMessage:
    """The body of a submit_sm or deliver_sm (the two share one layout)."""

    source_addr: str = ""
    destination_addr: str = ""
    short_message: bytes = b""
    data_coding: int = 0
    esm_class: int = 0
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    sm_default_msg_id: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def payload(self) -> bytes:
        """The user data: ``message_payload`` when present (it replaces short_message), else short_message."""
        return self.tlvs.get(TLV_MESSAGE_PAYLOAD, self.short_message)

    def encode(self) -> bytes:
        if len(self.short_message) > 254:
            raise ValueError("short_message is at most 254 octets; use the message_payload TLV")
        head = (cstring(self.service_type) + bytes([self.source_addr_ton, self.source_addr_npi])
                + cstring(self.source_addr) + bytes([self.dest_addr_ton, self.dest_addr_npi])
                + cstring(self.destination_addr) + bytes([self.esm_class, self.protocol_id, self.priority_flag])
                + cstring(self.schedule_delivery_time) + cstring(self.validity_period)
                + bytes([self.registered_delivery, self.replace_if_present_flag, self.data_coding,
                         self.sm_default_msg_id, len(self.short_message)])
                + self.short_message)
        return head + b"".join(struct.pack(">HH", t, len(v)) + v for t, v in self.tlvs.items())


def _read_addresses(r: BodyReader, addr_max: int) -> ShortMessage:
    """service_type, then source and destination (ton, npi, address): the head submit_sm, deliver_sm and data_sm
    share; only the address length differs (21 octets, 65 in data_sm)."""
    sm = ShortMessage()
    sm.service_type = r.cstring(6, "service_type")
    sm.source_addr_ton = r.u8("source_addr_ton")
    sm.source_addr_npi = r.u8("source_addr_npi")
    sm.source_addr = r.cstring(addr_max, "source_addr")
    sm.dest_addr_ton = r.u8("dest_addr_ton")
    sm.dest_addr_npi = r.u8("dest_addr_npi")
    sm.destination_addr = r.cstring(addr_max, "destination_addr")
    return sm


def parse_short_message(body: bytes) -> ShortMessage:
    r = BodyReader(body)
    sm = _read_addresses(r, 21)
    sm.esm_class = r.u8("esm_class")
    sm.protocol_id = r.u8("protocol_id")
    sm.priority_flag = r.u8("priority_flag")
    sm.schedule_delivery_time = r.cstring(17, "schedule_delivery_time")
    sm.validity_period = r.cstring(17, "validity_period")
    sm.registered_delivery = r.u8("registered_delivery")
    sm.replace_if_present_flag = r.u8("replace_if_present_flag")
    sm.data_coding = r.u8("data_coding")
    sm.sm_default_msg_id = r.u8("sm_default_msg_id")
    length = r.u8("sm_length")
    sm.short_message = r.octets(length, "short_message")
    sm.tlvs = r.tlvs()
    if TLV_MESSAGE_PAYLOAD in sm.tlvs and length:
        raise PduError("both short_message and message_payload are set", consts.SMPP_ESME_ROPTPARNOTALLWD)
    return sm


def parse_data_sm(body: bytes) -> ShortMessage:
    """A data_sm body in the ShortMessage shape: the text travels in the message_payload TLV."""
    r = BodyReader(body)
    sm = _read_addresses(r, 65)
    sm.esm_class = r.u8("esm_class")
    sm.registered_delivery = r.u8("registered_delivery")
    sm.data_coding = r.u8("data_coding")
    sm.tlvs = r.tlvs()
    return sm


def encode_data_sm(sm: ShortMessage) -> bytes:
    head = (cstring(sm.service_type) + bytes([sm.source_addr_ton, sm.source_addr_npi]) + cstring(sm.source_addr)
            + bytes([sm.dest_addr_ton, sm.dest_addr_npi]) + cstring(sm.destination_addr)
            + bytes([sm.esm_class, sm.registered_delivery, sm.data_coding]))
    return head + b"".join(struct.pack(">HH", t, len(v)) + v for t, v in sm.tlvs.items())


def refusal(command_id: int, status: int, sequence: int, message_id: str = "") -> bytes:
    """The answer to a submit_sm or data_sm the firewall refuses (or fakes as accepted with ``message_id``)."""
    if command_id == DATA_SM:
        return build(DATA_SM | RESPONSE_BIT, status, sequence, cstring(message_id))
    return submit_sm_resp(status, sequence, message_id)


def parse_message_id(body: bytes) -> str:
    """The message_id of a submit_sm_resp / data_sm_resp (empty when the body is empty, as on errors)."""
    if not body:
        return ""
    return BodyReader(body).cstring(65, "message_id")


def bind_resp(bind_command: int, status: int, sequence: int, system_id: str) -> bytes:
    return build(bind_command | RESPONSE_BIT, status, sequence, cstring(system_id))


def submit_sm_resp(status: int, sequence: int, message_id: str = "") -> bytes:
    # SMPP 3.4 5.1.2: on an error the body is absent.
    return build(SUBMIT_SM_RESP, status, sequence, cstring(message_id) if status == ESME_ROK else b"")


def deliver_sm_resp(status: int, sequence: int) -> bytes:
    return build(DELIVER_SM_RESP, status, sequence, b"\0")


def generic_nack(status: int, sequence: int) -> bytes:
    return build(GENERIC_NACK, status, sequence)


def empty_resp(command_id: int, sequence: int, status: int = ESME_ROK) -> bytes:
    """Response to enquire_link / unbind (header only)."""
    return build(command_id | RESPONSE_BIT, status, sequence)


def receipt_wanted(registered_delivery: int, stat: str) -> bool:
    """Whether a sender that set ``registered_delivery`` asked for a receipt with this final ``stat``."""
    wanted = registered_delivery & RECEIPT_MASK
    return wanted == 1 or (wanted == 2 and stat != "DELIVRD")


def delivery_receipt(message_id: str, submitted: ShortMessage, stat: str, submit_date: datetime,
                     done_date: datetime, text: str = "") -> ShortMessage:
    """A deliver_sm body carrying an SMSC delivery receipt for ``submitted`` (SMPP 3.4 appendix B layout:
    ``id:… sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:… err:000 text:…``, esm_class
    0x04, receipted_message_id and message_state TLVs), addressed back from the recipient to the sender."""
    dlvrd = "001" if stat == "DELIVRD" else "000"
    err = "000" if stat == "DELIVRD" else "001"
    snippet = text[:20].encode("ascii", "replace").decode("ascii")
    body = (f"id:{message_id} sub:001 dlvrd:{dlvrd} submit date:{submit_date:%y%m%d%H%M} "
            f"done date:{done_date:%y%m%d%H%M} stat:{stat} err:{err} text:{snippet}")
    return ShortMessage(
        source_addr=submitted.destination_addr, source_addr_ton=submitted.dest_addr_ton,
        source_addr_npi=submitted.dest_addr_npi, destination_addr=submitted.source_addr,
        dest_addr_ton=submitted.source_addr_ton, dest_addr_npi=submitted.source_addr_npi,
        esm_class=ESM_DELIVERY_RECEIPT, short_message=body.encode("ascii"),
        tlvs={TLV_RECEIPTED_MESSAGE_ID: message_id.encode("ascii") + b"\0",
              TLV_MESSAGE_STATE: bytes([MESSAGE_STATES[stat]])})
