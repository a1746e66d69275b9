"""A sample verdict and message for the store tests (test_store_backends.py, test_store_sqlite.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from skyshield.events import Action, Category, Channel, Message, Signal, Verdict


def sample_verdict(action: Action = Action.TAG, category: Category = Category.PROMOTION, score: float = 4.5) -> Verdict:
    return Verdict(
        action=action,
        category=category,
        subtype="authority_impersonation" if category is Category.FRAUD else None,
        unwanted=0.93,
        score=score,
        signals=[
            Signal("MODEL_PROMOTION", 0.93, {"top_terms": [["退订", 1.2], ["抢购", 0.8]]}, points=3.72),
            Signal("SIGNATURE", 1.0, {"matched": "【某宝】", "span": [0, 4]}, points=-0.5),
            Signal("SHORT_LINK", 1.0, {"links": ["t.cn/abc"]}, points=2.0),
        ],
        model_version="test-model-1",
        probabilities={"promotion": 0.93, "personal": 0.07},
    )


def sample_message(text: str = "【某宝】双11狂欢，点击 t.cn/abc 抢购，回T退订", sender: str = "+86 138-0013-8000",
                   external_id: str | None = "msg-1", tenant: str = "acme",
                   channel: Channel = Channel.API) -> Message:
    return Message(text=text, sender=sender, recipient="13900139000", time=datetime(2026, 11, 11, 8, 30, tzinfo=UTC),
                   channel=channel, tenant=tenant, external_id=external_id)
