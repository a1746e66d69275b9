"""The behaviour engine's live state: streaming features, model, lists, bombing, rotation, SIM-box rule.

One :class:`BehaviourService` per process (:func:`shared_service`) is fed by both ingresses: the message
detector (``detector.BehaviourDetector``) and the call screener (``calls.CallScreener``), so a number's
calls and messages meet in one profile. Everything here is in memory (except the optional per-sender message
counter shared across workers when ``[state]`` names a URL); the reputation lists are read from SQLite once,
at start. Blocked attempts still count as the number's behaviour, so the detector has no ``settle``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from skyshield.behaviour.bombing import BombingConfig, BombingDetector
from skyshield.behaviour.definitions import FEATURE_NAMES
from skyshield.behaviour.lists import ReputationLists
from skyshield.behaviour.profiles import MATURITY, Profiles
from skyshield.behaviour.rotation import RotationConfig, RotationIndex
from skyshield.behaviour.simbox import SimboxRule
from skyshield.behaviour.stream import NumberState, StreamFeatures
from skyshield.events import Signal
from skyshield.policy import Policy, parse_duration, parse_rate
from skyshield.shared_state import open_counter, state_url

SECTION = "detectors.behaviour"
PRUNE_EVERY = 200_000  # events between sweeps that forget numbers idle for 7 days


class BehaviourService:
    def __init__(self, policy: Policy | None = None, lists: ReputationLists | None = None, model: Any = "default"):
        policy = policy or Policy.load()
        cfg = policy.section(SECTION)
        self.cfg = cfg
        self.stream = StreamFeatures()
        #: Zone whose wall-clock the engine counts in (night hours); records are read in it too.
        self.timezone: str = cfg["timezone"]
        self.lock = threading.Lock()
        self.fan_out_max, self.fan_out_window = parse_rate(cfg["fan_out"])
        # [state] url set: count each sender's messages across every worker (the rest stays per process)
        self.shared_sent = open_counter(policy, "sent") if state_url(policy) else None
        self.score_min = float(cfg["fraud_score_min"])
        self.auto_block = float(cfg["auto_block_score"])
        self.auto_block_min_events = int(cfg["auto_block_min_events"])
        self.rescore_every = parse_duration(cfg["rescore_every"])
        self.model_min_events = int(cfg["model_min_events"])
        self.simbox = SimboxRule(int(cfg["simbox_min_calls_24h"]), int(cfg["simbox_min_numbers_per_device"]))
        min_senders, window = parse_rate(cfg["bombing"])
        self.bombing = BombingDetector(BombingConfig(window=float(window), min_senders=min_senders,
                                                     cooldown=float(parse_duration(cfg["bombing_cooldown"]))))
        self.rotation = RotationIndex(RotationConfig(min_callees=int(cfg["rotation_min_callees"]),
                                                     containment=float(cfg["rotation_containment"]),
                                                     watch_days=parse_duration(cfg["rotation_watch"]) / 86_400))
        self.lists = lists if lists is not None else ReputationLists.load(cfg["lists_db"] or None)
        if model == "default":
            from skyshield.behaviour.model import FraudNumberModel

            try:
                model = FraudNumberModel.load(cfg["model_path"] or None)
            except FileNotFoundError:
                model = None
        self.model = model
        #: Per-number profiles from the batch jobs (``profiles`` knob): warm start after a restart.
        self.profiles: Profiles | None = Profiles.load(cfg["profiles"]) if cfg.get("profiles") else None
        self.numbers_on_device: dict[str, set[str]] = defaultdict(set)
        self.templates_of: dict[str, set[str]] = defaultdict(set)
        # number -> (at, probability, reasons); a list while a batch's predict is pending
        self._scores: dict[str, tuple[float, float, list] | list] = {}
        self._events = 0

    # --- feeding ---------------------------------------------------------------------------------------

    def _tick(self, ts: float) -> None:
        self._events += 1
        if self._events % PRUNE_EVERY == 0:
            self.stream.prune(ts)
            self._scores = {n: v for n, v in self._scores.items() if n in self.stream.numbers}

    def observe_call(self, caller: str, callee: str, ts: float, duration: float = 0.0, answered: bool = False,
                     cell: str | None = None, device: str | None = None) -> NumberState:
        self._tick(ts)
        if self.profiles is not None:
            self._adopt(caller, ts)
            self._adopt(callee, ts)
        st = self.stream.add_call(caller, callee, ts, duration, answered, cell, device)
        if device:
            self.numbers_on_device[device].add(caller)
        if self._young(caller, st, ts):
            self.rotation.observe_callee(caller, callee)
        return st

    def observe_message(self, sender: str, recipient: str, ts: float, is_code: bool = False,
                        template: str | None = None, code_used: bool | None = None) -> list[Signal]:
        """Feed one message; returns the signals about its sender and recipient."""
        self._tick(ts)
        if self.profiles is not None:
            self._adopt(sender, ts)
            self._adopt(recipient, ts)
        st = self.stream.add_message(sender, recipient, ts)
        if template:
            self.templates_of[sender].add(template)
        signals = self._common(sender, st, ts)
        return self._message_signals(sender, recipient, ts, is_code, code_used, self._sent_count(sender, st, ts),
                                     signals)

    def _sent_count(self, sender: str, st: NumberState, ts: float) -> int:
        """The sender's messages in the fan-out window, this one included (capped at the limit)."""
        if self.shared_sent is not None:
            return self.shared_sent.add_and_count(sender, ts, self.fan_out_window)
        return _recent(st.sent, ts - self.fan_out_window, self.fan_out_max)

    def _message_signals(self, sender: str, recipient: str, ts: float, is_code: bool, code_used: bool | None,
                         n: int, signals: list[Signal]) -> list[Signal]:
        """Bombing and fan-out, after the sender's common signals."""
        finding = self.bombing.observe(sender, recipient, ts, is_code, code_used) if recipient else None
        if finding is not None:
            signals.append(Signal("SMS_BOMBING", 1.0, finding.evidence()))
        if n >= self.fan_out_max:
            signals.append(Signal("SENDER_FAN_OUT", 1.0, {
                "why": f"{sender} sent {n}+ messages within {self.fan_out_window}s", "count": n,
                "window_s": self.fan_out_window}))
        return signals

    def observe_messages(self, rows: Sequence[tuple[str, str, float, bool, str | None]]) -> list[list[Signal]]:
        """Feed ``(sender, recipient, ts, is_code, template)`` messages in order; per message, the signals
        :meth:`observe_message` would return for it, called on each in turn, with the model run once for all.

        Pass 1 feeds the stream in arrival order and takes each model input (the feature vector) at its
        message's time; one ``predict`` then scores them all; pass 2 makes every check that reads lists,
        blocks and templates, in arrival order, so an auto-block by message i is seen by message i + 1.
        """
        staged: list[tuple[NumberState, int, list | tuple | None, int]] = []
        vectors: list[np.ndarray] = []
        fresh: list[tuple[str, list]] = []
        for sender, recipient, ts, _code, _template in rows:
            self._tick(ts)
            if self.profiles is not None:
                self._adopt(sender, ts)
                self._adopt(recipient, ts)
            st = self.stream.add_message(sender, recipient, ts)
            events = len(st.out) + len(st.sent)
            entry = None
            if self.model is not None and self._scorable(sender, events):
                entry = self._scores.get(sender)
                if not (entry and ts - entry[0] < self.rescore_every):
                    entry = [ts, 0.0, []]  # filled in after the batch's predict
                    self._scores[sender] = entry
                    vectors.append(self._vector(sender, ts, events))
                    fresh.append((sender, entry))
            staged.append((st, events, entry, self._sent_count(sender, st, ts)))
        if vectors:
            x = np.vstack(vectors)
            probs = self.model.predict(x)
            explain = [i for i, p in enumerate(probs) if p >= self.score_min]
            reasons = self.model.explain(x[explain], top=5) if explain else []
            for (_number, entry), p in zip(fresh, probs, strict=True):
                entry[1] = float(p)
            for i, r in zip(explain, reasons, strict=True):
                fresh[i][1][2] = r
            for number, entry in fresh:
                if self._scores.get(number) is entry:
                    self._scores[number] = (entry[0], entry[1], entry[2])
        out: list[list[Signal]] = []
        for (sender, recipient, ts, is_code, template), (st, events, entry, n) in zip(rows, staged, strict=True):
            if template:
                self.templates_of[sender].add(template)
            signals = self._listed_or_linked(sender, st, ts)
            if entry is not None:
                self._model_signals(sender, entry[1], entry[2], events, ts, signals)
            out.append(self._message_signals(sender, recipient, ts, is_code, None, n, signals))
        return out

    def call_signals(self, caller: str, ts: float) -> tuple[list[Signal], float]:
        """Signals about a caller after its latest call was observed, and its fraud probability."""
        st = self.stream.numbers.get(caller)
        if st is None:
            return [], 0.0
        signals = self._common(caller, st, ts)
        recent = _tail(st.out, ts - self.fan_out_window)
        distinct = len({e[1] for e in recent})
        if distinct >= self.fan_out_max:
            new = sum(1 for e in recent if e[5])
            signals.append(Signal("SENDER_FAN_OUT", 1.0, {
                "why": f"{caller} called {distinct} different numbers within {self.fan_out_window}s "
                       f"({new} never called before)", "distinct_callees": distinct, "window_s": self.fan_out_window}))
        simbox = self._simbox(caller, st, ts)
        if simbox:
            signals.append(simbox)
        prob = next((s.score for s in signals if s.name == "SENDER_FRAUD_SCORE"), self._scores.get(caller, (0, 0.0))[1])
        return signals, prob

    # --- the checks ------------------------------------------------------------------------------------

    def _young(self, number: str, st: NumberState, ts: float) -> bool:
        first = self.stream.activation.get(number, st.first)
        return ts - first <= self.rotation.cfg.watch_days * 86_400

    def _common(self, number: str, st: NumberState, ts: float) -> list[Signal]:
        signals = self._listed_or_linked(number, st, ts)
        # A number's first few events say little; without an activation table or a stored profile it starts "new".
        events = len(st.out) + len(st.sent)
        if self.model is not None and self._scorable(number, events):
            prob, reasons = self._score(number, ts, events)
            self._model_signals(number, prob, reasons, events, ts, signals)
        return signals

    def _listed_or_linked(self, number: str, st: NumberState, ts: float) -> list[Signal]:
        """Reputation lists, the number's own block, or a link to a blocked number."""
        signals: list[Signal] = []
        listed = self.lists.lookup(number)
        if listed:
            signals.append(Signal("REPUTATION_LISTED", 1.0, {
                "why": f"{number} is on list(s) {', '.join(sorted(listed))}", "sources": sorted(listed),
                "reports": sum(listed.values())}))
        if number in self.rotation.blocked:
            info = self.rotation.blocked[number]
            signals.append(Signal("BLOCKED_NUMBER", 1.0, {"why": f"{number} was blocked: {info['reason']}"}))
        elif self._young(number, st, ts):
            link = self.rotation.check(number, st.devices, self.templates_of.get(number, ()))
            if link:
                signals.append(Signal("ROTATED_NUMBER", 1.0, {"why": link.why(), "blocked": link.blocked,
                                                              **{k: v for k, v in link.evidence.items()}}))
        return signals

    def _model_signals(self, number: str, prob: float, reasons: list, events: int, ts: float,
                       signals: list[Signal]) -> None:
        """SENDER_FRAUD_SCORE from the model's probability; a sure, busy enough number is blocked."""
        if prob >= self.score_min:
            signals.append(Signal("SENDER_FRAUD_SCORE", round(prob, 4), {
                "why": f"behaviour model: P(fraud number)={prob:.2f}; " + ", ".join(str(r) for r in reasons[:3]),
                "probability": round(prob, 4), "top_features": [r.feature for r in reasons]}))
        if prob >= self.auto_block and events >= self.auto_block_min_events and number not in self.rotation.blocked:
            self.block(number, f"behaviour model P(fraud)={prob:.2f}", ts)

    # --- stored profiles (warm start) ----------------------------------------------------------------

    def _adopt(self, number: str, ts: float) -> None:
        """A profiled number seen for the first time since start is as old as its profile says (at least)."""
        if number and number not in self.stream.numbers and number not in self.stream.activation:
            row = self.profiles.row(number) if self.profiles is not None else None
            if row is not None:
                self.stream.activation[number] = ts - float(row[MATURITY]) * 86_400

    def _scorable(self, number: str, events: int) -> bool:
        return events >= self.model_min_events or (self.profiles is not None and number in self.profiles.index)

    def _vector(self, number: str, ts: float, events: int) -> np.ndarray:
        """The model input: the live window features once the stream has ``model_min_events`` of the number's
        own events; before that, its stored profile (the batch job's last 7 days), with the age brought up to now."""
        live = self.stream.vector(number, ts)
        row = self.profiles.row(number) if self.profiles is not None and events < self.model_min_events else None
        if row is None:
            return live
        x = row.astype(float)
        x[MATURITY] = max(x[MATURITY], live[MATURITY])
        return x

    def _score(self, number: str, ts: float, events: int | None = None) -> tuple[float, list]:
        cached = self._scores.get(number)
        if cached and ts - cached[0] < self.rescore_every:
            return cached[1], cached[2]
        if events is None:
            st = self.stream.numbers.get(number)
            events = len(st.out) + len(st.sent) if st is not None else 0
        x = self._vector(number, ts, events)
        prob = float(self.model.predict(x)[0])
        reasons = self.model.explain(x, top=5)[0] if prob >= self.score_min else []
        self._scores[number] = (ts, prob, reasons)
        return prob, reasons

    def _simbox(self, number: str, st: NumberState, ts: float) -> Signal | None:
        """One device, many SIMs, all calling out, none receiving, none moving."""
        day = _tail(st.out, ts - 86_400)
        if len(day) < self.simbox.min_calls_24h:
            return None
        incoming = _recent(st.inc, ts - 86_400, 1 << 30)
        cells = {e[6] for e in day if e[6] is not None}
        sims = max((len(self.numbers_on_device[d]) for d in st.devices), default=0)
        if not self.simbox.fires(len(day), incoming, len(cells), sims if st.devices else None):
            return None
        return Signal("SIMBOX", 1.0, {
            "why": f"{len(day)} outgoing calls in 24h, none incoming, one cell, "
                   + (f"device shared by {sims} numbers" if st.devices else "device unknown"),
            "calls_24h": len(day), "numbers_on_device": sims, "cell": next(iter(cells), None)})

    def block(self, number: str, reason: str, ts: float) -> None:
        """Mark a number blocked; later numbers that share its callees, device or templates inherit it."""
        st = self.stream.numbers.get(number)
        self.rotation.block(number, st.contacts if st else (), st.devices if st else (),
                            self.templates_of.get(number, ()), reason, ts)

    def unblock(self, number: str) -> bool:
        """Lift a block; the model's cached score for the number is dropped so it is judged afresh."""
        self._scores.pop(number, None)
        return self.rotation.unblock(number)

    # --- read side -------------------------------------------------------------------------------------

    def profile(self, number: str, ts: float | None = None) -> dict[str, Any]:
        """What the engine knows about a number: features, fraud probability with reasons, lists, links."""
        number = number.strip()
        st = self.stream.numbers.get(number)
        at = ts if ts is not None else self.stream.last_ts
        feats = self.stream.features(number, at)
        stored = self.profiles.info(number) if self.profiles is not None else None
        out: dict[str, Any] = {"number": number, "seen": st is not None, "features": feats,
                               "lists": self.lists.lookup(number), "blocked": self.rotation.blocked.get(number),
                               "stored_profile": stored}
        if self.model is not None and (st is not None or stored is not None):
            events = len(st.out) + len(st.sent) if st is not None else 0
            x = self._vector(number, at, events) if stored is not None else [feats[k] for k in FEATURE_NAMES]
            if stored is not None and events < self.model_min_events:
                out["scored_from"] = "stored profile"
            prob = float(self.model.predict(x)[0])
            out["fraud_probability"] = round(prob, 4)
            out["reasons"] = [str(r) for r in self.model.explain(x, top=5)[0]]
        if st is not None:
            link = self.rotation.check(number, st.devices, self.templates_of.get(number, ()))
            out["rotation_link"] = {"blocked": link.blocked, "why": link.why()} if link else None
            simbox = self._simbox(number, st, at)
            out["simbox"] = simbox.evidence if simbox else None
        return out


def _tail(events, lo: float) -> list:
    """The (time-ordered) call tuples after ``lo``, read from the newest end."""
    out = []
    for e in reversed(events):
        if e[0] <= lo:
            break
        out.append(e)
    out.reverse()
    return out


def _recent(times, lo: float, cap: int) -> int:
    """How many of the (time-ordered) ``times`` are after ``lo``, counting at most ``cap`` from the end."""
    n = 0
    for t in reversed(times):
        if t <= lo or n >= cap:
            break
        n += 1
    return n


_SHARED: dict[int, tuple[Policy, BehaviourService]] = {}
_SHARED_LOCK = threading.Lock()


def shared_service(policy: Policy) -> BehaviourService:
    """The process-wide service for ``policy`` (the message detector and the call screener share it)."""
    with _SHARED_LOCK:
        entry = _SHARED.get(id(policy))
        if entry is None or entry[0] is not policy:
            entry = _SHARED[id(policy)] = (policy, BehaviourService(policy))
        return entry[1]
