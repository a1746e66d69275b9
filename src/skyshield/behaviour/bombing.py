"""SMS bombing: many websites' one-time codes sent to one victim within minutes.

Per recipient we keep the one-time-code messages of a sliding window and count distinct senders; a
recipient with ``min_senders`` or more different code senders in ``window`` seconds is under attack. The
response is chosen at the narrowest level that stops it:

- ``recipient``: hold further code messages to the victim for ``cooldown`` (the default; the sites are
  innocent relays, so blocking them everywhere would hurt their real users);
- ``source``: one sender repeating codes to the same victim (``source_repeat`` in the window), or sending
  codes to several victims under attack (``source_victims``: its abuse velocity), is abused: block or
  rate-limit that source (its sign-up form needs a CAPTCHA);
- ``prefix``: several sources abused at scale share a number prefix (one aggregator channel): block the prefix.

Where sites report whether a code was used (``code_used``), a recipient who used at least half of the window's
codes is signing up, not under attack, and no finding is made; unused codes are counted in the evidence.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl


@dataclass
class BombingConfig:
    window: float = 600.0
    min_senders: int = 5
    cooldown: float = 3600.0
    source_repeat: int = 3  # codes from one source to one victim in the window: that source is abused directly
    source_victims: int = 3  # victims under attack one source sent codes to in the window: abused at scale
    prefix_len: int = 7
    prefix_senders: int = 3  # sources abused at scale that share a prefix: block the prefix


@dataclass
class _Recipient:
    events: deque = field(default_factory=deque)  # (ts, sender, used)
    senders: Counter = field(default_factory=Counter)
    attack_until: float = -1.0
    attack_start: float = -1.0


@dataclass
class BombingFinding:
    recipient: str
    level: str  # recipient | source | prefix
    target: str  # the victim, the source, or the prefix
    distinct_senders: int
    window_s: float
    unused_codes: int
    since: float
    source_victims: int = 0

    def evidence(self) -> dict[str, Any]:
        return {
            "why": f"{self.distinct_senders} different senders sent one-time codes to {self.recipient} within "
                   f"{self.window_s:g}s; block level {self.level} ({self.target})",
            "recipient": self.recipient, "level": self.level, "target": self.target,
            "distinct_senders": self.distinct_senders, "unused_codes": self.unused_codes,
            "source_victims": self.source_victims,
        }


class BombingDetector:
    def __init__(self, config: BombingConfig | None = None):
        self.cfg = config or BombingConfig()
        self.recipients: dict[str, _Recipient] = {}
        # per source: (ts, recipient) of its codes in the window
        self._by_source: dict[str, deque] = {}

    def observe(self, sender: str, recipient: str, ts: float, is_code: bool,
                code_used: bool | None = None) -> BombingFinding | None:
        """Feed one message; returns a finding while the recipient is under attack and this is a code."""
        if not is_code:
            return None
        cfg = self.cfg
        r = self.recipients.get(recipient)
        if r is None:
            r = self.recipients[recipient] = _Recipient()
        r.events.append((ts, sender, code_used))
        r.senders[sender] += 1
        horizon = ts - cfg.window
        q = self._by_source.get(sender)
        if q is None:
            q = self._by_source[sender] = deque()
        q.append((ts, recipient))
        while q[0][0] <= horizon:
            q.popleft()
        while r.events and r.events[0][0] <= horizon:
            _, old, _ = r.events.popleft()
            r.senders[old] -= 1
            if not r.senders[old]:
                del r.senders[old]
        distinct = len(r.senders)
        # a person signing up on several sites uses the codes; a bombing victim uses none
        known = [e[2] for e in r.events if e[2] is not None]
        if len(known) >= cfg.min_senders and sum(known) >= 0.5 * len(known):
            return None
        if distinct >= cfg.min_senders:
            if r.attack_until < ts:
                r.attack_start = ts
            r.attack_until = ts + cfg.cooldown
        elif r.attack_until < ts:
            return None
        unused = sum(1 for e in r.events if e[2] is False)
        victims = self._source_victims(sender, ts)
        level, target = "recipient", recipient
        prefix = sender[: cfg.prefix_len]
        if len(sender) > cfg.prefix_len and victims >= cfg.source_victims and sum(
                1 for s in r.senders if s.startswith(prefix)
                and self._source_victims(s, ts) >= cfg.source_victims) >= cfg.prefix_senders:
            level, target = "prefix", prefix
        elif victims >= cfg.source_victims or r.senders[sender] >= cfg.source_repeat:
            level, target = "source", sender
        return BombingFinding(recipient, level, target, distinct, cfg.window, unused, r.attack_start, victims)

    def _source_victims(self, sender: str, ts: float) -> int:
        """Distinct recipients under attack that ``sender`` sent codes to within the window (its abuse velocity)."""
        q = self._by_source.get(sender, ())
        return len({rcp for _, rcp in q if self.under_attack(rcp, ts)})

    def under_attack(self, recipient: str, ts: float) -> bool:
        r = self.recipients.get(recipient)
        return bool(r and r.attack_until >= ts)


def evaluate(messages: pl.DataFrame, attacks: pl.DataFrame, config: BombingConfig | None = None) -> dict[str, Any]:
    """Message-level precision/recall and time to detect each attack, on simulator output."""
    det = BombingDetector(config)
    m = messages.sort("time", maintain_order=True).with_columns(
        (pl.col("time").dt.epoch("us") / 1e6).alias("ts"))
    a = attacks.with_columns((pl.col("start").dt.epoch("us") / 1e6).alias("s"),
                             (pl.col("end").dt.epoch("us") / 1e6).alias("e"))
    victims = {v: (s, e) for v, s, e in zip(a["victim"], a["s"], a["e"], strict=False)}
    flagged = np.zeros(m.height, bool)
    truth = np.zeros(m.height, bool)
    detected_at: dict[str, float] = {}
    levels: dict[str, int] = {}
    for i, (snd, rcp, ts, code, used) in enumerate(zip(m["sender"], m["recipient"], m["ts"], m["is_code"],
                                                       m["code_used"], strict=False)):
        win = victims.get(rcp)
        truth[i] = bool(code and win is not None and win[0] <= ts <= win[1])
        finding = det.observe(snd, rcp, ts, bool(code), used)
        if finding is not None:
            levels[finding.level] = levels.get(finding.level, 0) + 1
            flagged[i] = True
            if truth[i] and rcp not in detected_at:
                detected_at[rcp] = ts
    tp = int((flagged & truth).sum())
    delays = [detected_at[v] - victims[v][0] for v in detected_at]
    return {
        "messages": m.height, "attack_messages": int(truth.sum()), "flagged": int(flagged.sum()),
        "precision": round(tp / max(1, int(flagged.sum())), 4), "recall": round(tp / max(1, int(truth.sum())), 4),
        "attacks": len(victims), "attacks_detected": len(detected_at),
        "median_seconds_to_detect": round(float(np.median(delays)), 1) if delays else None,
        "block_levels": levels,
    }
