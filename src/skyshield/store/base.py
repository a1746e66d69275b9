"""The store's small interface: what every backend (SQLite now, PostgreSQL later) must do.

A verdict is stored with the message it judged (text, pseudonymised numbers, time, tenant,
channel, caller's id), every signal with its points and evidence, the category probabilities and
the model version, so "why was this blocked?" can be answered months later without the engine.

Other areas keep their own tables in the same database: they register schema migrations with
:func:`register_migration` (applied when a store opens, or on ``store.migrate()``) and use
``store.connect()`` for a connection of their own.
"""

from __future__ import annotations

import hmac
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from skyshield.events import Channel, Message, Verdict


@dataclass(slots=True)
class StoredVerdict:
    """A verdict as read back from the store, with the message metadata it was given for."""

    id: int
    stored_at: datetime
    verdict: Verdict
    text: str | None
    #: Pseudonyms (``h:…``) unless pseudonymisation was off when the row was written.
    sender: str
    recipient: str
    time: datetime
    channel: Channel
    tenant: str
    external_id: str | None = None
    numbers_pseudonymised: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = self.verdict.to_dict()
        data["id"] = self.id
        data["stored_at"] = self.stored_at.isoformat()
        data["message"] = {
            "text": self.text,
            "sender": self.sender,
            "recipient": self.recipient,
            "time": self.time.isoformat(),
            "channel": self.channel.value,
            "tenant": self.tenant,
            "id": self.external_id,
            "numbers_pseudonymised": self.numbers_pseudonymised,
        }
        return data


@dataclass(slots=True)
class Counts:
    """How many verdicts, by action and by category."""

    total: int = 0
    by_action: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, int] = field(default_factory=dict)


Migrate = str | Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step of one component: SQL (a script) or a function given a DB-API connection."""

    component: str
    version: int
    apply: Migrate
    dialect: str = "sqlite"
    description: str = ""


#: Every registered migration; backends apply the ones for their dialect, per component, in version order.
MIGRATIONS: list[Migration] = []


def register_migration(
    component: str, version: int, apply: Migrate, *, dialect: str = "sqlite", description: str = ""
) -> None:
    """Add a schema step for ``component`` (e.g. ``"compliance"``); versions start at 1 and count up.

    Register at import time of your module; a store opened later applies it, an open store applies
    it on ``store.migrate()``. Registering the same (component, version, dialect) twice is a no-op.
    """
    if version < 1:
        raise ValueError("migration versions start at 1")
    for m in MIGRATIONS:
        if (m.component, m.version, m.dialect) == (component, version, dialect):
            return
    MIGRATIONS.append(Migration(component, version, apply, dialect, description))


_NON_DIGITS = re.compile(r"[^\d]")


def normalise_number(number: str) -> str:
    """The same number written differently gives the same form: digits only, CN country prefix dropped.

    ``+86 138-0013-8000``, ``008613800138000`` and ``13800138000`` all become ``13800138000``; other
    international numbers keep their country code behind a ``+``.
    """
    raw = number.strip()
    digits = _NON_DIGITS.sub("", raw)
    if not digits:
        return raw
    international = raw.startswith("+") or digits.startswith("00")
    if digits.startswith("00"):
        digits = digits[2:]
    if international:
        return digits[2:] if digits.startswith("86") else f"+{digits}"
    return digits


@lru_cache(maxsize=65536)
def pseudonymise(number: str, key: bytes) -> str:
    """Keyed HMAC-SHA256 of the normalised number (128 bits, hex): stable per key, not reversible without it.

    Cached: senders repeat a lot in real traffic, and this runs for every stored message.
    """
    if not number:
        return ""
    digest = hmac.digest(key, normalise_number(number).encode("utf-8"), "sha256")
    return f"h:{digest[:16].hex()}"


class VerdictStore(ABC):
    """Persistence for verdicts. Implementations are safe to share between threads of one process."""

    @abstractmethod
    def save(self, items: Sequence[tuple[Message, Verdict]], *, idempotent: bool = False) -> list[int]:
        """Store a batch in one transaction; returns the verdict ids in order and sets ``verdict.id``.

        ``idempotent``: a message whose (tenant, channel, external_id) is already stored is not stored
        again; its id is the stored one (checked inside the write transaction, so concurrent retries
        of the same message id still give one record).
        """

    @abstractmethod
    def find_external(
        self, keys: Sequence[tuple[str, str]], channel: str = "api"
    ) -> dict[tuple[str, str], StoredVerdict]:
        """Stored verdicts by (tenant, external_id) for one channel; the oldest when there are several."""

    @abstractmethod
    def get(self, verdict_id: int) -> StoredVerdict | None:
        """One verdict with its message metadata, signals and evidence; ``None`` when there is none."""

    @abstractmethod
    def search(
        self,
        *,
        sender: str | None = None,
        recipient: str | None = None,
        action: str | None = None,
        category: str | None = None,
        tenant: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[StoredVerdict]:
        """Recent verdicts, newest first. ``sender``/``recipient`` take the number as written (it is
        pseudonymised the same way for the lookup); ``since``/``until`` bound the time stored;
        ``before_id`` pages backwards."""

    @abstractmethod
    def counts(self, *, since: datetime | None = None, tenant: str | None = None) -> Counts:
        """Verdict counts by action and category."""

    @abstractmethod
    def migrate(self) -> None:
        """Apply registered migrations not yet applied (idempotent)."""

    @abstractmethod
    def connect(self) -> Any:
        """A new DB-API connection to the same database, for another area's own tables."""

    @abstractmethod
    def close(self) -> None: ...

    def ping(self) -> None:
        """Raise if the database cannot be read (health checks)."""
        self.get(0)

    def __enter__(self) -> VerdictStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
