"""Fuzz targets: each takes raw bytes, drives one parser, and raises only on a real bug.

A parser refusing bad input with its documented error (SipError, PduError, PolicyError, an error record)
is correct behaviour, not a crash. Anything else, or a broken invariant (an AssertionError), is a finding.
Used by ``fuzz/run.py`` (atheris, coverage-guided) and by tests/test_reliability_fuzz_regressions.py (every
seed and every saved crash input, on each test run).
"""

from __future__ import annotations

import io
from collections.abc import Callable


def _split(data: bytes) -> tuple[int, bytes]:
    """First byte as a small integer knob, the rest as the payload."""
    return (data[0] if data else 0), data[1:]


def target_text(data: bytes) -> None:
    """Normaliser + entity extractor on arbitrary text (lone surrogates included)."""
    from skyshield.text.extract import analyse_batch
    from skyshield.text.normalise import normalise, normalise_with_offsets, original_span

    text = data.decode("utf-8", errors="replace")
    if data[:1] == b"\x00":  # a lone surrogate, as a JSON "\ud83d" escape delivers it
        text = text[: len(text) // 2] + "\ud83d" + text[len(text) // 2 :]
    norm = normalise(text)
    assert isinstance(norm, str)
    norm2, offsets = normalise_with_offsets(text)
    if norm2 and offsets:
        start, end = original_span(offsets, 0, len(norm2))
        assert 0 <= start <= end <= len(text), (start, end, len(text))
    [analysis] = analyse_batch([text])
    assert analysis.original == text
    ents = analysis.entities
    for span in [*ents.links, *ents.phones, *ents.chat_ids, *ents.amounts, *ents.codes,
                 *[s for s in (ents.signature, ents.opt_out) if s is not None]]:
        assert 0 <= span.start <= span.end <= len(text), (span, len(text))
    assert len(ents.phone_kinds) == len(ents.phones)


def target_classify_reader(data: bytes) -> None:
    """``skyshield classify``'s line reader: every input line gives exactly one text or one error record."""
    from skyshield.commands import read_lines

    knob, payload = _split(data)
    column = (knob % 4) or None
    header = bool(knob & 0x10)
    lines = list(read_lines(io.BytesIO(payload), max_chars=40, column=column, header=header))
    numbers = [line.number for line in lines]
    assert numbers == sorted(set(numbers)), "line numbers are unique and increasing"
    expected = payload.count(b"\n") + (0 if payload.endswith(b"\n") or not payload else 1)
    assert len(lines) + (1 if header and expected else 0) == expected, (len(lines), expected)
    for line in lines:
        assert (line.text is None) != (line.error is None)
        if line.text is not None:
            assert line.text.strip() and len(line.text) <= 40


def target_policy(data: bytes) -> None:
    """The policy loader on arbitrary TOML: a clear PolicyError or a usable policy."""
    from skyshield.policy import Policy, PolicyError, parse_duration, parse_rate

    text = data.decode("utf-8", errors="replace")
    try:
        policy = Policy.from_text(text, "<fuzz>")
    except PolicyError as exc:
        assert str(exc).startswith("<fuzz>"), f"a policy error names the file: {exc}"
    else:
        assert policy.section("actions")
    for parse in (parse_rate, parse_duration):
        try:
            parse(text[:60])
        except PolicyError:
            pass


def target_sip(data: bytes) -> None:
    """The SIP message parser (read-only use of skyshield.gateway.sip_message)."""
    from skyshield.gateway import sip_message as sip

    try:
        msg = sip.parse(data)
    except sip.SipError:
        return
    for value in msg.get_all("Via"):
        try:
            sip.parse_via(value)
        except sip.SipError:
            pass
    for name in ("From", "To", "Contact"):
        value = msg.get(name)
        if value:
            uri = sip.uri_of(value)
            sip.user_of(uri)
            sip.host_port_of(uri)
            sip.tag_of(value)


def target_smpp(data: bytes) -> None:
    """The SMPP submit_sm/deliver_sm body decoder, text decoding and UDH split (skyshield.gateway)."""
    from skyshield.gateway.smpp_pdu import PduError, parse_bind, parse_short_message
    from skyshield.gateway.smpp_text import decode, split_udh

    knob, body = _split(data)
    try:
        if knob & 1:
            parse_bind(body)
            return
        sm = parse_short_message(body)
    except PduError:
        return
    try:
        _, user_data = split_udh(sm)
    except PduError:
        return
    assert isinstance(decode(user_data, sm.data_coding), str)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "text": target_text,
    "classify_reader": target_classify_reader,
    "policy": target_policy,
    "sip": target_sip,
    "smpp": target_smpp,
}

#: Modules atheris instruments for coverage feedback, per target.
INSTRUMENT: dict[str, list[str]] = {
    "text": ["skyshield.text.normalise", "skyshield.text.extract"],
    "classify_reader": ["skyshield.commands"],
    "policy": ["skyshield.policy"],
    "sip": ["skyshield.gateway.sip_message"],
    "smpp": ["skyshield.gateway.smpp_pdu", "skyshield.gateway.smpp_text"],
}
