"""Test helpers for the compliance tests: an engine with the shipped text model and only the compliance
detector, so each test sees exactly the compliance signals (the other detectors have their own tests)."""

from __future__ import annotations

from functools import cache

from skyshield.compliance.detector import ComplianceDetector
from skyshield.compliance.ledger import ConsentLedger
from skyshield.engine import Engine, TextModel
from skyshield.policy import Policy
from skyshield.text.extract import analyse_batch


@cache
def shipped_model() -> TextModel:
    from skyshield.text.classify import load_model

    return load_model(None)


def make_engine(policy: Policy, ledger: ConsentLedger, **kwargs) -> tuple[Engine, ComplianceDetector]:
    detector = ComplianceDetector(policy, ledger, **kwargs)
    return Engine(policy, analyse_batch, shipped_model(), [detector]), detector
