"""A small, strict SIP message parser and writer (RFC 3261) for the call-screening proxy.

Only what a stateless proxy needs: the start line, headers (with compact forms and comma-joined
Via values), the body, the Via fields used to route responses, and the user part of a From /
P-Asserted-Identity URI. Anything it cannot read raises :class:`SipError`; the proxy answers
400 Bad Request where it can and logs the datagram otherwise. Python has no maintained SIP parser
that works on 3.11 without a framework (``aiosip`` does not import), hence this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding", "o": "event"}
MAX_MESSAGE = 65535
_REQUEST_LINE = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6]\d\d) ?(.*)$")
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")


class SipError(ValueError):
    """A message that is not valid SIP; ``message`` is the part that could be read (to answer 400)."""

    def __init__(self, reason: str, message: SipMessage | None = None):
        super().__init__(reason)
        self.message = message


@dataclass(slots=True)
class SipMessage:
    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    #: Headers as (name as written, value), in order; a comma-joined Via is split into one entry each.
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    _canonical: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def _keys(self) -> list[str]:
        # Canonical names, computed once per header list (the proxy looks headers up many times per message).
        keys = self._canonical
        if keys is None or len(keys) != len(self.headers):
            keys = self._canonical = [canonical(n) for n, _ in self.headers]
        return keys

    def get(self, name: str, default: str | None = None) -> str | None:
        key = COMPACT.get(name.lower(), name.lower())
        for k, (_, v) in zip(self._keys(), self.headers, strict=True):
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = COMPACT.get(name.lower(), name.lower())
        return [v for k, (_, v) in zip(self._keys(), self.headers, strict=True) if k == key]

    def index(self, name: str) -> int:
        """Position of the first header of that name; -1 when there is none."""
        key = COMPACT.get(name.lower(), name.lower())
        keys = self._keys()
        return keys.index(key) if key in keys else -1

    def set(self, name: str, value: str) -> None:
        """Replace the first header of that name (or add it at the end)."""
        i = self.index(name)
        if i >= 0:
            self.headers[i] = (self.headers[i][0], value)
        else:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self.headers.append((name, value))
        self._canonical = None

    def remove_first(self, name: str) -> str | None:
        i = self.index(name)
        if i < 0:
            return None
        self._canonical = None
        return self.headers.pop(i)[1]

    def prepend(self, name: str, value: str) -> None:
        self.headers.insert(0, (name, value))
        self._canonical = None

    def encode(self) -> bytes:
        start = f"{self.method} {self.uri} SIP/2.0" if self.is_request else f"SIP/2.0 {self.status} {self.reason}"
        lines = [start] + [f"{n}: {v}" for k, (n, v) in zip(self._keys(), self.headers, strict=True)
                           if k != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.get("cseq") or ""
        parts = value.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SipError(f"bad CSeq {value!r}")
        return int(parts[0]), parts[1].upper()


def canonical(name: str) -> str:
    low = name.strip().lower()
    return COMPACT.get(low, low)


def _split_commas(value: str) -> list[str]:
    """Split a header value on commas outside quotes and angle brackets."""
    out, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
    out.append(value[start:].strip())
    return [v for v in out if v]


def parse(data: bytes) -> SipMessage:
    if len(data) > MAX_MESSAGE:
        raise SipError(f"message of {len(data)} octets is too long")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipError("headers are not UTF-8") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    msg = SipMessage()
    m = _REQUEST_LINE.match(start)
    if m:
        msg.method, msg.uri = m.group(1).upper(), m.group(2)
    else:
        m = _STATUS_LINE.match(start)
        if not m:
            raise SipError(f"not a SIP start line: {start[:60]!r}")
        msg.status, msg.reason = int(m.group(1)), m.group(2)
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0] in " \t":  # folded continuation line (RFC 3261 7.3.1)
            if not msg.headers:
                raise SipError("continuation line before any header", msg)
            name, value = msg.headers[-1]
            msg.headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipError(f"bad header line {line[:60]!r}", msg)
        value = value.strip()
        if canonical(name) == "via":
            msg.headers.extend((name, v) for v in _split_commas(value))
        else:
            msg.headers.append((name, value))
    if not sep:
        raise SipError("no blank line after the headers", msg)
    length = msg.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise SipError(f"bad Content-Length {length!r}", msg)
        if int(length) > len(body):
            raise SipError(f"Content-Length {length} but {len(body)} octets of body", msg)
        body = body[:int(length)]
    msg.body = body
    for required in ("via", "call-id", "cseq", "from", "to"):
        if msg.get(required) is None:
            raise SipError(f"no {required} header", msg)
    try:
        msg.cseq  # noqa: B018 - validates
    except SipError as exc:
        raise SipError(str(exc), msg) from None
    return msg


@dataclass(slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @property
    def branch(self) -> str:
        return self.params.get("branch") or ""


_VIA = re.compile(r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(\[[^\]]+\]|[^\s;:]+)(?::(\d+))?\s*(.*)$")


def parse_via(value: str) -> Via:
    m = _VIA.match(value.strip())
    if not m:
        raise SipError(f"bad Via {value[:80]!r}")
    params: dict[str, str | None] = {}
    for p in m.group(4).split(";"):
        p = p.strip()
        if p:
            k, eq, v = p.partition("=")
            params[k.strip().lower()] = v.strip() if eq else None
    return Via(m.group(1).upper(), m.group(2).strip("[]"), int(m.group(3)) if m.group(3) else None, params)


def format_via(via: Via) -> str:
    params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in via.params.items())
    host = f"[{via.host}]" if ":" in via.host else via.host
    port = f":{via.port}" if via.port else ""
    return f"SIP/2.0/{via.transport} {host}{port}{params}"


_NAME_ADDR = re.compile(r"<([^>]*)>")


def uri_of(value: str) -> str:
    """The URI of a name-addr / addr-spec header value (From, To, P-Asserted-Identity, Contact)."""
    m = _NAME_ADDR.search(value)
    if m:
        return m.group(1).strip()
    return value.strip().split(";")[0].split(",")[0].strip()


def user_of(uri: str) -> str:
    """The user part (the number) of a sip:/sips:/tel: URI: ``sip:+8613800138000@host`` → ``+8613800138000``."""
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme == "tel":
        return rest.split(";")[0]
    if scheme in ("sip", "sips"):
        user = rest.split("@")[0] if "@" in rest else ""
        return user.split(";")[0].split(":")[0]
    return ""


def host_port_of(uri: str, default_port: int = 5060) -> tuple[str, int] | None:
    """Where a sip: URI points (host, port); ``None`` for other schemes."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() not in ("sip", "sips"):
        return None
    hostport = rest.split("@")[-1].split(";")[0].split("?")[0]
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.partition(":")
    return host, int(port) if port.isdigit() else default_port


def tag_of(value: str) -> str | None:
    m = re.search(r";\s*tag=([^;\s>]+)", value.split(">")[-1] if ">" in value else value)
    return m.group(1) if m else None


def response_to(request: SipMessage, status: int, reason: str, to_tag: str | None = None,
                extra: list[tuple[str, str]] | None = None) -> SipMessage:
    """A response the proxy itself sends to ``request`` (RFC 3261 8.2.6)."""
    headers: list[tuple[str, str]] = [("Via", v) for v in request.get_all("via")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.get(name)
        if value is not None:
            if name == "To" and to_tag and tag_of(value) is None:
                value = f"{value};tag={to_tag}"
            headers.append((name, value))
    headers.extend(extra or [])
    return SipMessage(status=status, reason=reason, headers=headers)
