"""Test helpers for the compliance tests: a keyword text model with fixed, readable probabilities.

The compliance rules are tested against the real analyser (``skyshield.text.extract.analyse_batch``)
and this stand-in model, so a retrained shipped model cannot change what these tests assert.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from skyshield.compliance.detector import ComplianceDetector
from skyshield.compliance.ledger import ConsentLedger
from skyshield.engine import Engine
from skyshield.policy import Policy
from skyshield.text.analysis import TextAnalysis, TextPrediction
from skyshield.text.extract import analyse_batch

CATEGORIES = ["personal", "notification", "verification", "promotion", "fraud", "illicit"]
_RULES = [
    ("fraud", re.compile(r"安全账户|公安局|涉嫌洗钱|中奖|刷单|冻结|verify your account", re.I)),
    ("illicit", re.compile(r"博彩|百家乐|代开发票|casino", re.I)),
    ("verification", re.compile(r"验证码|verification code|code is", re.I)),
    ("promotion", re.compile(r"退订|优惠|折|促|特价|会员日|上新|sale|offer|reply stop", re.I)),
]


class KeywordModel:
    version = "test-keywords"

    def predict(self, analyses: Sequence[TextAnalysis]) -> list[TextPrediction]:
        out = []
        for a in analyses:
            category = next((c for c, rx in _RULES if rx.search(a.normalised) or rx.search(a.original)),
                            "notification")
            probs = {c: (0.9 if c == category else 0.02) for c in CATEGORIES}
            unwanted = probs["promotion"] + probs["fraud"] + probs["illicit"]
            out.append(TextPrediction(category, None, probs, unwanted, []))
        return out


def make_engine(policy: Policy, ledger: ConsentLedger, **kwargs) -> tuple[Engine, ComplianceDetector]:
    detector = ComplianceDetector(policy, ledger, **kwargs)
    return Engine(policy, analyse_batch, KeywordModel(), [detector]), detector
