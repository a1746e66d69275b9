"""Compliance detector throughput: consent/opt-out/DND lookups, quiet hours, caps and template matching.

Builds a consent ledger in a temporary folder (``--recipients`` numbers, 60% with consent, 5% opted
out, 2% on the DND list, 20 approved templates), then times ``ComplianceDetector.detect`` on batches
of 1000 live sends (half promotion, half one-time codes) and, as the baseline measured in the same
run, the text analysis the engine does on the same batch (``analyse_batch``). Also times a 3,000-send
campaign pre-audit, opt-out reply parsing and recording consent.

    .venv/bin/python bench/compliance_throughput.py [--recipients 20000] [--batches 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from skyshield.compliance.campaign import audit_campaign
from skyshield.compliance.detector import ComplianceDetector
from skyshield.compliance.ledger import ConsentLedger
from skyshield.compliance.optout import parse_reply
from skyshield.compliance.templates import TemplateAudit, TemplateRegistry
from skyshield.engine import BatchContext, Engine
from skyshield.events import Message
from skyshield.policy import Policy
from skyshield.text.analysis import TextPrediction
from skyshield.text.extract import analyse_batch

PROMO = "【京东】尊敬的会员{}，双11全场5折起，详情 jd.com/s 回T退订"
CODE = "【招商银行】您的验证码是{:06d}，5分钟内有效。"


def prediction(category: str) -> TextPrediction:
    probs = {c: 0.02 for c in ("personal", "notification", "verification", "promotion", "fraud", "illicit")}
    probs[category] = 0.9
    return TextPrediction(category, None, probs, probs["promotion"], [])


class StandInModel:
    version = "bench-stand-in"

    def predict(self, analyses: list) -> list[TextPrediction]:
        return [prediction("verification" if a.entities.codes else "promotion") for a in analyses]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipients", type=int, default=20000)
    ap.add_argument("--batches", type=int, default=10)
    args = ap.parse_args()
    policy = Policy.load()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = ConsentLedger(Path(tmp) / "bench.db", b"k" * 32)
        numbers = [f"1380{i:07d}" for i in range(args.recipients)]
        started = time.perf_counter()
        for i, n in enumerate(numbers):
            if i % 5 < 3:
                ledger.record_opt_in("default", "京东", n, source="web", disclosure="同意接收营销短信",
                                     time=datetime(2026, 6, 1, tzinfo=UTC))
            if i % 20 == 0:
                ledger.record_opt_out("default", "京东", n, time=datetime(2026, 7, 1, tzinfo=UTC))
        consent_s = time.perf_counter() - started
        ledger.add_dnd(numbers[::50])
        registry = TemplateRegistry(ledger, policy)
        for k in range(19):
            registry.register("default", TemplateAudit("pass", [], "notification", None, "京东", {},
                                                       text=f"【京东】您的订单{k}号已发货，快递单号${{no}}"))
        registry.register("default", TemplateAudit("pass", [], "promotion", None, "京东", {"name": "name"},
                                                   text=PROMO.replace("{}", "{name}")))
        registry.register("default", TemplateAudit("pass", [], "verification", None, "招商银行", {"code": "code"},
                                                   text="【招商银行】您的验证码是${code}，5分钟内有效。"))
        detector = ComplianceDetector(policy, ledger, templates=registry)
        t0 = datetime(2026, 11, 25, 2, tzinfo=UTC)
        detect_s = analyse_s = 0.0
        total = 0
        for b in range(args.batches):
            msgs, preds = [], []
            for j in range(1000):
                n = numbers[(b * 1000 + j) % len(numbers)]
                if j % 2:
                    msgs.append(Message(PROMO.format(j), "10690001", n, t0 + timedelta(seconds=b * 1000 + j)))
                    preds.append(prediction("promotion"))
                else:
                    msgs.append(Message(CODE.format(j), "95555", n, t0 + timedelta(seconds=b * 1000 + j)))
                    preds.append(prediction("verification"))
            started = time.perf_counter()
            analyses = analyse_batch([m.text for m in msgs])
            analyse_s += time.perf_counter() - started
            ctx = BatchContext(msgs, analyses, preds, {})
            started = time.perf_counter()
            detector.detect(ctx)
            detect_s += time.perf_counter() - started
            total += len(msgs)
        # Campaign pre-audit: a CSV of 3,000 sends, through the dry-run engine (stand-in model: the bench times
        # the compliance side, not the text model).
        rows = ["recipient,template,variables,send_at,sender"]
        for j in range(3000):
            at = (t0 + timedelta(seconds=j)).isoformat()
            if j % 3:
                promo = PROMO.replace("{}", "{name}")
                rows.append(f"{numbers[j % len(numbers)]},{promo},name=会员{j},{at},10690001")
            else:
                rows.append(f"{numbers[j % len(numbers)]},【招商银行】您的验证码是${{code}}，5分钟内有效。,"
                            f"code={j:06d},{at},95555")
        data = ("\n".join(rows) + "\n").encode()
        engine = Engine(policy, analyse_batch, StandInModel(), [])
        started = time.perf_counter()
        report = audit_campaign(data, policy=policy, engine=engine, ledger=ledger)
        audit_s = time.perf_counter() - started
        texts = [r.split(",")[1] for r in rows[1:]]
        started = time.perf_counter()
        analyse_batch(texts)
        audit_base_s = time.perf_counter() - started
        replies = ["退订", "TD", "不要退订", "how do I stop my card being charged", "ＳＴＯＰ！", "T恤还有吗"] * 5000
        started = time.perf_counter()
        for r in replies:
            parse_reply(r)
        reply_s = time.perf_counter() - started
        ledger.close()
    print(f"compliance detector: {total / detect_s:,.0f} msg/s in batches of 1000 "
          f"(baseline, text analysis of the same batches: {total / analyse_s:,.0f} msg/s)")
    n_sends = len(report.sends)
    print(f"campaign audit: {n_sends:,} sends in {audit_s:.2f} s ({n_sends / audit_s:,.0f} sends/s; "
          f"baseline, text analysis of the same texts: {len(texts) / audit_base_s:,.0f}/s)")
    print(f"opt-out reply parsing: {len(replies) / reply_s:,.0f} replies/s")
    print(f"recording consent: {args.recipients * 0.65 / consent_s:,.0f} records/s "
          f"({args.recipients:,} recipients, SQLite WAL, one transaction each)")


if __name__ == "__main__":
    main()
