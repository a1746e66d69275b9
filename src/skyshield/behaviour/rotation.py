"""Number rotation: link a fresh number to numbers blocked before, so the block carries over.

A fraud ring whose number is blocked moves to a fresh SIM. Three kinds of evidence tie the new number to
the old one:

- **callee overlap**: the new number calls the same victims (the ring works through one target list and
  calls back people who answered). A fresh number has only a few callees while the blocked one has
  hundreds, so the measure is *containment* (share of the new number's distinct callees that a blocked
  number called), not Jaccard similarity, which stays tiny while the new set is small. An inverted index
  callee -> blocked numbers gives it exactly at the cost of one dict lookup per new callee.
- **shared device**: the new SIM sits in a device (IMEI) a blocked number used;
- **shared content template**: it sends SMS with a template fingerprint a blocked number sent.

Only numbers younger than ``watch_days`` are checked: established numbers do not rotate.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl


@dataclass
class RotationConfig:
    min_callees: int = 8  # distinct callees before callee overlap may link
    containment: float = 0.5  # share of those callees a blocked number also called
    watch_days: float = 30.0
    max_postings: int = 50  # a callee called by more blocked numbers than this is a hub, not evidence


@dataclass
class Link:
    number: str
    blocked: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def why(self) -> str:
        parts = []
        if "containment" in self.evidence:
            parts.append(f"{self.evidence['shared_callees']} of its {self.evidence['callees']} callees were called "
                         f"by blocked {self.blocked}")
        if "device" in self.evidence:
            parts.append(f"same device {self.evidence['device']} as blocked {self.blocked}")
        if "template" in self.evidence:
            parts.append(f"same SMS template {self.evidence['template']} as blocked {self.blocked}")
        return "; ".join(parts)


class RotationIndex:
    def __init__(self, config: RotationConfig | None = None):
        self.cfg = config or RotationConfig()
        self.blocked: dict[str, dict[str, Any]] = {}
        self.by_callee: dict[str, set[str]] = defaultdict(set)
        self.by_device: dict[str, set[str]] = defaultdict(set)
        self.by_template: dict[str, set[str]] = defaultdict(set)
        # per watched number: distinct callees seen and hits per blocked number
        self._callees: dict[str, set[str]] = {}
        self._hits: dict[str, Counter] = {}

    def block(self, number: str, callees: Iterable[str] = (), devices: Iterable[str] = (),
              templates: Iterable[str] = (), reason: str = "", at: float = 0.0) -> None:
        """Remember a blocked number and what identifies its operators."""
        if number in self.blocked:
            return
        self.blocked[number] = {"reason": reason, "at": at}
        for c in callees:
            self.by_callee[c].add(number)
        for d in devices:
            if d:
                self.by_device[d].add(number)
        for t in templates:
            if t:
                self.by_template[t].add(number)

    def unblock(self, number: str) -> bool:
        """Lift a block (an appeal upheld); its callees, devices and templates stop counting as evidence."""
        if self.blocked.pop(number, None) is None:
            return False
        for index in (self.by_callee, self.by_device, self.by_template):
            for key in [k for k, v in index.items() if number in v]:
                index[key].discard(number)
                if not index[key]:
                    del index[key]
        for hits in self._hits.values():
            hits.pop(number, None)
        return True

    def observe_callee(self, number: str, callee: str) -> None:
        """Count a callee of a watched (young) number; call once per call, duplicates are ignored."""
        seen = self._callees.get(number)
        if seen is None:
            seen = self._callees[number] = set()
            self._hits[number] = Counter()
        if callee in seen:
            return
        seen.add(callee)
        posting = self.by_callee.get(callee)
        if posting and len(posting) <= self.cfg.max_postings:
            self._hits[number].update(posting)

    def check(self, number: str, devices: Iterable[str] = (), templates: Iterable[str] = ()) -> Link | None:
        """The strongest link from ``number`` to a blocked number, or None."""
        if number in self.blocked:
            return None
        # (a sender may have sent many templates: skip the scan while nothing blocked has any)
        for d in devices if self.by_device else ():
            for b in self.by_device.get(d, ()):
                if b != number:
                    return Link(number, b, {"device": d, **self._overlap(number, b)})
        for t in templates if self.by_template else ():
            for b in self.by_template.get(t, ()):
                if b != number:
                    return Link(number, b, {"template": t, **self._overlap(number, b)})
        hits = self._hits.get(number)
        if not hits:
            return None
        best, shared = hits.most_common(1)[0]
        n = len(self._callees[number])
        if n >= self.cfg.min_callees and shared / n >= self.cfg.containment:
            return Link(number, best, self._overlap(number, best))
        return None

    def _overlap(self, number: str, blocked: str) -> dict[str, Any]:
        hits = self._hits.get(number)
        if not hits or not hits.get(blocked):
            return {}
        n = len(self._callees[number])
        return {"containment": round(hits[blocked] / n, 3), "shared_callees": hits[blocked], "callees": n}


def evaluate(calls: pl.DataFrame, messages: pl.DataFrame, labels: pl.DataFrame,
             config: RotationConfig | None = None, use_devices: bool = True) -> dict[str, Any]:
    """Replay the simulator: block each fraud number when the carrier did (ground truth ``blocked_at``),
    link new numbers to blocked ones, and score links against the ground truth (same ring)."""
    cfg = config or RotationConfig()
    idx = RotationIndex(cfg)
    lab = labels.with_columns(
        (pl.col("activated").dt.epoch("us") / 1e6).alias("act"), (pl.col("blocked_at").dt.epoch("us") / 1e6).alias("b"))
    ring = dict(zip(lab["number"], lab["ring"], strict=False))
    act = dict(zip(lab["number"], lab["act"], strict=False))
    device_of = dict(zip(lab["number"], lab["device"], strict=False))
    blocks = sorted((b, n) for n, b in zip(lab["number"], lab["b"], strict=False) if b is not None)
    c = calls.sort("start", maintain_order=True).with_columns((pl.col("start").dt.epoch("us") / 1e6).alias("ts"))
    callees_of: dict[str, set[str]] = defaultdict(set)
    templates_of: dict[str, set[str]] = defaultdict(set)
    for s, t in zip(messages["sender"], messages["template"], strict=False):
        if t is not None and ring.get(s, -1) >= 0:
            templates_of[s].add(t)
    links: dict[str, tuple[str, float, int]] = {}
    bi = 0
    for caller, callee, ts, dev in zip(c["caller"], c["callee"], c["ts"], c["device"], strict=False):
        while bi < len(blocks) and blocks[bi][0] <= ts:
            b = blocks[bi][1]
            idx.block(b, callees_of[b], [device_of.get(b)] if use_devices else [], templates_of.get(b, ()))
            bi += 1
        callees_of[caller].add(callee)
        if caller in links or caller in idx.blocked or ts - act.get(caller, 0.0) > cfg.watch_days * 86_400:
            continue
        idx.observe_callee(caller, callee)
        link = idx.check(caller, [dev] if (dev and use_devices) else [], ())
        if link:
            links[caller] = (link.blocked, ts, len(idx._callees[caller]))
    successors = {n for n, p in zip(lab["number"], lab["predecessor"], strict=False) if p is not None}
    correct = [n for n, (b, _, _) in links.items() if ring.get(n, -1) >= 0 and ring.get(n) == ring.get(b)]
    # a successor can only be linked once its predecessor was blocked within the simulated period
    reachable = {n for n in successors if n in callees_of}
    found = [n for n in correct if n in successors]
    return {
        "links": len(links), "correct_links": len(correct),
        "precision": round(len(correct) / max(1, len(links)), 4),
        "replacement_numbers": len(reachable), "linked_replacements": len(found),
        "recall": round(len(found) / max(1, len(reachable)), 4),
        "median_callees_before_link": sorted(v[2] for k, v in links.items() if k in found)[len(found) // 2]
        if found else None,
        "evidence": "callee overlap + shared device" if use_devices else "callee overlap only",
    }
