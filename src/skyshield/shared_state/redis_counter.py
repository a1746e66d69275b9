"""Sliding-window counters in Redis: one sorted set per key (score = event time), updated by Lua scripts.

A script runs atomically on the server, so "count the window, then add" cannot interleave between
workers: N workers sending to one recipient enforce its cap exactly. Window bounds are computed in
Python with the same float arithmetic as the in-process counter and passed as exact decimal text
(Lua's own number formatting keeps only 14 digits). Keys expire a day after their longest window.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import redis

from skyshield.compliance.caps import CapCheck, CapHit, Rate

# KEYS[1] the set; ARGV: t, add (0/1), member, trim bound, ttl seconds, then one lower bound per window.
_CHECK_AND_ADD = """
local counts = {}
for i = 6, #ARGV do
    counts[#counts + 1] = redis.call('ZCOUNT', KEYS[1], ARGV[i], ARGV[1])
end
if ARGV[2] == '1' then
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
    redis.call('EXPIRE', KEYS[1], ARGV[5])
end
return counts
"""

# KEYS[1] the set; ARGV: t, member, trim bound, ttl seconds, window lower bound: add, then count the window.
_ADD_AND_COUNT = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCOUNT', KEYS[1], ARGV[5], ARGV[1])
"""

# KEYS[1] the set; ARGV[1] the time: remove one member with exactly that score.
_REMOVE_ONE = """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1], 'LIMIT', 0, 1)
if found[1] then
    return redis.call('ZREM', KEYS[1], found[1])
end
return 0
"""

#: Events are kept this long past a key's longest window (the in-process counter prunes alike).
SLACK_S = 86_400


def _num(x: float) -> str:
    return repr(float(x))


class RedisWindowCounter:
    """The :class:`skyshield.shared_state.WindowCounter` interface on a Redis server; thread-safe."""

    shared = True

    def __init__(self, client: redis.Redis, prefix: str = "skyshield:caps:", ttl_s: int = 8 * 86_400):
        self.client = client
        self.ttl_s = ttl_s  # history kept by ``add`` (``check_and_add`` keeps its rates' longest window + a day)
        self.prefix = prefix
        self._check = client.register_script(_CHECK_AND_ADD)
        self._remove = client.register_script(_REMOVE_ONE)
        self._add_count = client.register_script(_ADD_AND_COUNT)

    @classmethod
    def from_url(cls, url: str, prefix: str = "skyshield:caps:") -> RedisWindowCounter:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ConnectionError(f"cannot reach the shared state at {url} ([state] url): {exc}") from exc
        return cls(client, prefix)

    def redis_key(self, key: Hashable) -> str:
        parts = list(key) if isinstance(key, tuple) else [key]
        return self.prefix + json.dumps(parts, ensure_ascii=False, separators=(",", ":"), default=str)

    def count(self, key: Hashable, t: float, window_s: float) -> int:
        return int(self.client.zcount(self.redis_key(key), f"({_num(t - window_s)}", _num(t)))

    def check_and_add(
        self, key: Hashable, t: float, rates: Sequence[Rate], rule: str, add: bool = True
    ) -> list[CapHit]:
        counts = self._check(keys=[self.redis_key(key)], args=self._check_args(t, rates, add))
        return self._hits(rates, rule, counts)

    @staticmethod
    def _check_args(t: float, rates: Sequence[Rate], add: bool) -> list[Any]:
        longest = max((r.window_s for r in rates), default=0)
        args: list[Any] = [_num(t), "1" if add else "0", f"{_num(t)}:{uuid.uuid4().hex}",
                           f"({_num(t - longest - SLACK_S)}", int(longest + SLACK_S)]
        return args + [f"({_num(t - r.window_s)}" for r in rates]

    @staticmethod
    def _hits(rates: Sequence[Rate], rule: str, counts: Sequence[Any]) -> list[CapHit]:
        return [CapHit(rule, r.text, r.window_s, int(n), r.limit)
                for r, n in zip(rates, counts, strict=True) if int(n) >= r.limit]

    def check_and_add_many(self, checks: Sequence[CapCheck]) -> list[list[CapHit]]:
        """Many checks in one round trip: a pipeline of scripts, run in order, each atomic on its own."""
        if not checks:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key, t, rates, _, add in checks:
            self._check(keys=[self.redis_key(key)], args=self._check_args(t, rates, add), client=pipe)
        return [self._hits(rates, rule, counts)
                for (_, _, rates, rule, _), counts in zip(checks, pipe.execute(), strict=True)]

    def add(self, key: Hashable, t: float) -> None:
        """Count one event; the key keeps ``ttl_s`` of history (no window is known here)."""
        name = self.redis_key(key)
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(name, {f"{_num(t)}:{uuid.uuid4().hex}": float(t)})
        pipe.zremrangebyscore(name, "-inf", f"({_num(t - self.ttl_s)}")
        pipe.expire(name, self.ttl_s)
        pipe.execute()

    def add_and_count(self, key: Hashable, t: float, window_s: float) -> int:
        """Count one event, then the events in ``(t - window_s, t]``: one round trip."""
        args = [_num(t), f"{_num(t)}:{uuid.uuid4().hex}", f"({_num(t - self.ttl_s)}", self.ttl_s,
                f"({_num(t - window_s)}"]
        return int(self._add_count(keys=[self.redis_key(key)], args=args))

    def remove(self, key: Hashable, t: float) -> None:
        self._remove(keys=[self.redis_key(key)], args=[_num(t)])

    def prune(self, before: float) -> None:
        """Nothing to do: every key expires a day after its longest window."""

    def warm(self, events: Iterable[tuple[Hashable, float]]) -> None:
        """Load a restarted process's send log, unless another worker already did (or the state is live).

        The first worker to start after the shared state was emptied takes a marker key and loads; the
        others find the marker and load nothing, so no send is counted twice.
        """
        if not self.client.set(self.prefix + "~warmed", "1", nx=True):
            return
        pipe = self.client.pipeline(transaction=False)
        for n, (key, t) in enumerate(events):
            name = self.redis_key(key)
            pipe.zadd(name, {f"{_num(t)}:warm{n}": float(t)})
            pipe.expire(name, self.ttl_s, nx=True)
            if n % 1000 == 999:
                pipe.execute()
        pipe.execute()

    def clear(self) -> int:
        """Delete every key under this counter's prefix (tests, a fresh deployment); returns how many."""
        names = list(self.client.scan_iter(match=self.prefix + "*", count=1000))
        for start in range(0, len(names), 500):
            self.client.delete(*names[start : start + 500])
        return len(names)
