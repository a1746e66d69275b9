"""Load and validate the operator's TOML policy, and turn signals into a verdict.

The shipped defaults (``default_policy.toml``) are never edited. An operator's file merges over
them key by key; a section that says ``replace = true`` replaces the default section outright.
Every key the operator writes must exist in the defaults (or in a section listed in
``OPEN_SECTIONS``) and have the same type; otherwise loading fails with the file, line and key.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from skyshield.events import Action, Category, Signal, Verdict

DEFAULT_POLICY_TEXT = resources.files("skyshield").joinpath("default_policy.toml").read_text("utf-8")

#: Sections whose keys are the operator's own (names of tenants, lists, ...), not fixed by defaults.
OPEN_SECTIONS = {"tenants"}


_WANTED = frozenset({Category.PERSONAL, Category.NOTIFICATION, Category.VERIFICATION})
_FOLD = Action.FOLD.severity
#: Signals that say what kind of unwanted message a text is. A message the text model read as wanted (a
#: notification, say) but that is folded, held or blocked on the strength of these is reported as their
#: category: "blocked: notification" would hide a fraud text that looks like a bank alert from every report.
#: Signals about the sender's conduct (bombing, fan-out, lists) say nothing about the text: a one-time code held
#: for SMS bombing stays a verification message.
_CONTENT_CATEGORY = {
    "MODEL_FRAUD": Category.FRAUD, "FRAUD_PHRASE": Category.FRAUD, "MODEL_ILLICIT": Category.ILLICIT,
    "MODEL_PROMOTION": Category.PROMOTION, "PROMOTION_WITHOUT_OPT_OUT": Category.PROMOTION,
    # the compliance rules that only marketing meets (it counts as marketing by its promotion probability)
    "NO_CONSENT": Category.PROMOTION, "OPTED_OUT": Category.PROMOTION, "DND_LISTED": Category.PROMOTION,
    "QUIET_HOURS": Category.PROMOTION,
}


def _content_category(signals: list[Signal], category: Category) -> Category:
    """The category of the content signal that gave the most points, if any gave points."""
    best = 0.0
    for signal in signals:
        found = _CONTENT_CATEGORY.get(signal.name)
        if found is not None and signal.points > best:
            best, category = signal.points, found
    return category


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, line and key."""


def _line_of(text: str, dotted_key: str) -> int | None:
    """Best-effort line number of ``dotted_key`` (``section.sub.key``) in a TOML text."""
    parts = dotted_key.split(".")
    table: list[str] = []
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    for number, line in enumerate(text.splitlines(), start=1):
        m = header.match(line)
        if m:
            table = [p.strip().strip('"') for p in m.group(1).split(".")]
            if table == parts:
                return number
            continue
        m = re.match(r'^\s*("?)([^=\s"]+)\1\s*=', line)
        if m:
            key_path = table + m.group(2).split(".")
            if key_path == parts or key_path == parts[: len(key_path)] and len(key_path) > len(table):
                return number
    return None


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "table"}.get(
        type(value), type(value).__name__
    )


def _merge(default: dict, override: dict, path: str, source: str, text: str) -> dict:
    merged = copy.deepcopy(default)
    if override.get("replace") is True:
        merged = {}
    for key, value in override.items():
        if key == "replace":
            continue
        dotted = f"{path}.{key}" if path else key
        top = dotted.split(".")[0]
        if key not in default and top not in OPEN_SECTIONS:
            line = _line_of(text, dotted)
            where = f"{source}:{line}" if line else source
            known = ", ".join(sorted(k for k in default if k != "replace")) or "(none)"
            raise PolicyError(f"{where}: unknown key '{dotted}' (known here: {known})")
        if key in default and isinstance(default[key], dict):
            if not isinstance(value, dict):
                line = _line_of(text, dotted)
                raise PolicyError(f"{source}:{line}: '{dotted}' must be a table, got {_type_name(value)}")
            merged[key] = _merge(default[key], value, dotted, source, text)
            continue
        if key in default and _type_name(default[key]) != _type_name(value):
            line = _line_of(text, dotted)
            raise PolicyError(
                f"{source}:{line}: '{dotted}' must be a {_type_name(default[key])}, got {_type_name(value)} ({value!r})"
            )
        merged[key] = value
    return merged


_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "day": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """``"90s"``, ``"5m"``, ``"1h"``, ``"7d"`` → seconds."""
    m = re.fullmatch(r"\s*(\d+)?\s*([a-z]+)\s*", text.lower())
    if not m or m.group(2) not in _UNITS:
        raise PolicyError(f"cannot read duration {text!r}: write e.g. 30s, 5m, 1h, 7d")
    return int(m.group(1) or 1) * _UNITS[m.group(2)]


def parse_rate(text: str) -> tuple[int, int]:
    """A rate as people say it, ``"5 / 1h"`` → ``(5, 3600)``: at most 5 events per hour."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(.+)", text)
    if not m:
        raise PolicyError(f"cannot read rate {text!r}: write e.g. \"5 / 1h\"")
    return int(m.group(1)), parse_duration(m.group(2))


@dataclass
class Policy:
    """The merged policy: defaults plus the operator's file."""

    data: dict[str, Any]
    source: str = "<defaults>"
    #: ``[actions]`` thresholds, most severe action first; set by ``validate``.
    _ladder: list[tuple[float, Action]] = field(default_factory=list, init=False, repr=False)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Policy:
        defaults = tomllib.loads(DEFAULT_POLICY_TEXT)
        if path is None:
            policy = cls(defaults)
        else:
            path = Path(path)
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise PolicyError(f"{path}: cannot read policy: {exc}") from exc
            policy = cls.from_text(text, str(path), defaults)
        policy.validate()
        return policy

    @classmethod
    def from_text(cls, text: str, source: str = "<policy>", defaults: dict | None = None) -> Policy:
        defaults = defaults if defaults is not None else tomllib.loads(DEFAULT_POLICY_TEXT)
        try:
            override = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{source}: not valid TOML: {exc}") from exc
        policy = cls(_merge(defaults, override, "", source, text), source)
        policy.validate()
        return policy

    def validate(self) -> None:
        actions = self.data["actions"]
        for name in actions:
            if name not in {a.value for a in Action}:
                raise PolicyError(f"{self.source}: [actions] '{name}' is not an action")
        self._ladder = sorted(((float(t), Action(n)) for n, t in actions.items()), key=lambda ta: -ta[1].severity)
        for cat, action in self.data["categories"].items():
            if action not in {a.value for a in Action}:
                raise PolicyError(f"{self.source}: categories.{cat} = {action!r} is not an action")

    def section(self, dotted: str) -> dict[str, Any]:
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    def weight(self, signal_name: str) -> float:
        return float(self.data["signals"].get(signal_name, 0.0))

    def decide(
        self,
        category: Category,
        subtype: str | None,
        unwanted: float,
        probabilities: dict[str, float],
        signals: list[Signal],
        model_version: str,
    ) -> Verdict:
        """Signals and the category become one verdict: points, total score, action."""
        total = 0.0
        weights = self.data["signals"]
        for signal in signals:
            signal.points = round(float(weights.get(signal.name, 0.0)) * signal.score, 3)
            total += signal.points
        action = Action.DELIVER
        # Thresholds: the most severe action whose threshold the score reaches.
        for threshold, name in self._ladder:
            if total >= threshold:
                action = name
                break
        floor = self.data["categories"].get(category.value)
        if floor and Action(floor).severity > action.severity:
            action = Action(floor)
        if category in _WANTED and action.severity >= _FOLD:
            category = _content_category(signals, category)
        return Verdict(
            action=action,
            category=category,
            subtype=subtype,
            unwanted=unwanted,
            score=round(total, 3),
            signals=signals,
            model_version=model_version,
            probabilities=probabilities,
        )
