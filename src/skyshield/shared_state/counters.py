"""The sliding-window counter interface and the function that picks its implementation from the policy.

A counter keeps event times per key (a tuple such as ``("sig", tenant, signature, recipient, category)``);
a window counts the events in ``(t - window, t]``. ``check_and_add`` is the one operation that must be
atomic across workers: it counts the events in each window and adds the new one in the same step, so two
workers cannot both see "4 of 5" and both send.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from skyshield.policy import Policy, PolicyError

if TYPE_CHECKING:
    from skyshield.compliance.caps import CapCheck, CapHit, Rate

#: Overrides ``[state] url`` (e.g. for every worker of one deployment without a policy file of its own).
ENV_URL = "SKYSHIELD_STATE"


@runtime_checkable
class WindowCounter(Protocol):
    #: True when other processes see the same counts (then warming up from a local log would double count).
    shared: bool

    def count(self, key: Hashable, t: float, window_s: float) -> int:
        """Events of ``key`` in ``(t - window_s, t]``."""

    def check_and_add(
        self, key: Hashable, t: float, rates: Sequence[Rate], rule: str, add: bool = True
    ) -> list[CapHit]:
        """The rates ``t`` would break given the events so far; then count ``t`` when ``add`` (one atomic step)."""

    def check_and_add_many(self, checks: Sequence[CapCheck]) -> list[list[CapHit]]:
        """``check_and_add`` for each (key, t, rates, rule, add) in order (a shared counter: one round trip)."""

    def add(self, key: Hashable, t: float) -> None: ...

    def add_and_count(self, key: Hashable, t: float, window_s: float) -> int:
        """Count one event, then return the events in ``(t - window_s, t]`` (a shared counter: one round trip)."""

    def remove(self, key: Hashable, t: float) -> None:
        """Un-count one event at exactly ``t`` (a reservation whose message was blocked)."""

    def prune(self, before: float) -> None:
        """Forget events before ``before`` (the Redis counter lets keys expire instead)."""

    def warm(self, events: Iterable[tuple[Hashable, float]]) -> None:
        """Load past events (from a send log) after a restart; a shared counter loads them only once."""


def state_url(policy: Policy) -> str:
    """Where shared state lives: ``$SKYSHIELD_STATE``, else ``[state] url``; ``""`` is this process."""
    url = os.environ.get(ENV_URL)
    if url is None:
        url = str(policy.section("state").get("url", ""))
    url = url.strip()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise PolicyError(f"[state] url must be \"\" (this process) or redis://host:port/db, not {url!r}")
    return url


def open_counter(policy: Policy, namespace: str = "caps") -> WindowCounter:
    """The counter the policy asks for: in this process, or in Redis under ``<prefix><namespace>:``."""
    url = state_url(policy)
    if not url:
        from skyshield.compliance.caps import SlidingCounter

        return SlidingCounter()
    from skyshield.shared_state.redis_counter import RedisWindowCounter

    prefix = str(policy.section("state").get("key_prefix", "skyshield:"))
    return RedisWindowCounter.from_url(url, prefix=f"{prefix}{namespace}:")
