"""Phone numbers out of the logs: every log record's message has digit runs that look like phone numbers
masked (``13800138000`` → ``138****8000``) before any handler sees it.

Installed by ``skyshield serve`` (``[privacy] mask_logs``) as a log-record factory, so it covers every
logger (uvicorn's too) whatever handlers they have. Tracebacks are not rewritten.
"""

from __future__ import annotations

import logging
import re

# 7 to 15 digits, optionally +, optionally split by single spaces or hyphens; not part of a word,
# a decimal number or a dotted address.
PHONE_LIKE = re.compile(r"(?<![\w.+])\+?\d(?:[ -]?\d){6,14}(?!\w|\.\d)")


def _mask(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = [c for c in text if c.isdigit()]
    prefix = "+" if text.startswith("+") else ""
    if prefix and len(digits) == 13 and digits[:2] == ["8", "6"]:  # +86 mobile: keep the country code apart
        prefix, digits = "+86 ", digits[2:]
    keep_head, keep_tail = (3, 4) if len(digits) >= 11 else (2, 2)
    return prefix + "".join(digits[:keep_head]) + "****" + "".join(digits[-keep_tail:])


def mask_numbers(text: str) -> str:
    """``"from 13800138000"`` → ``"from 138****8000"``; other text unchanged."""
    return PHONE_LIKE.sub(_mask, text)


_installed: tuple[object, object] | None = None  # (our factory, the one it wraps)


def install_log_masking() -> None:
    """Mask phone-like numbers in every log record from now on (idempotent)."""
    global _installed
    if _installed is not None:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:  # type: ignore[no-untyped-def]
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's own error to report
            return record
        masked = mask_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = (factory, previous)


def remove_log_masking() -> None:
    """Undo :func:`install_log_masking` (tests), if no one installed another factory on top since."""
    global _installed
    if _installed is not None and logging.getLogRecordFactory() is _installed[0]:
        logging.setLogRecordFactory(_installed[1])  # type: ignore[arg-type]
        _installed = None
