"""State several workers must agree on: sliding-window counters (frequency caps, send rates).

One small interface (:class:`WindowCounter`), two implementations, chosen by the policy's ``[state] url``:

- ``""`` (default): in this process only (:class:`skyshield.compliance.caps.SlidingCounter`), no I/O on
  the hot path;
- ``"redis://host:6379/0"``: in Redis (:class:`skyshield.shared_state.redis_counter.RedisWindowCounter`),
  every check-and-count one atomic Lua script on the server, so any number of worker processes on any
  number of hosts enforce one cap exactly.
"""

from __future__ import annotations

from skyshield.shared_state.counters import WindowCounter, open_counter, state_url

__all__ = ["WindowCounter", "open_counter", "state_url"]
