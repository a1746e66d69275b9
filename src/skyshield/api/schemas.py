"""What the core API accepts and answers, as pydantic models (they also draw the OpenAPI page)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

PROMOTION_EXAMPLE = "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订"
FRAUD_EXAMPLE = "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查"


class MessageIn(BaseModel):
    """One message to check. Only ``text`` is required; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="The message body as sent (1 to 10,000 characters by default).")
    sender: StrictStr = Field("", max_length=64, description="Sender number or id; stored pseudonymised.")
    recipient: StrictStr = Field("", max_length=64, description="Recipient number; stored pseudonymised.")
    time: datetime | None = Field(
        None, description="When it was sent: ISO 8601 (UTC when no offset is given) or Unix seconds; default now."
    )
    tenant: StrictStr = Field("default", min_length=1, max_length=64, description="Whose traffic this is.")
    id: StrictStr | None = Field(
        None,
        max_length=128,
        description="Your id for the message (a string or a whole number), echoed back as `message_id`. It is an "
        "idempotency key per tenant: an id checked before gets its stored verdict back and is not stored twice.",
    )

    @field_validator("id", mode="before")
    @classmethod
    def _id_from_int(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class CheckRequest(BaseModel):
    """A batch of 1 to 10,000 messages, checked in order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "messages": [
                        {"text": PROMOTION_EXAMPLE, "sender": "106900001234", "recipient": "13800138000"},
                        {"text": FRAUD_EXAMPLE, "sender": "+8617000000000", "id": "msg-2"},
                    ]
                }
            ]
        },
    )

    messages: list[MessageIn] = Field(min_length=1, max_length=10_000)


class SignalOut(BaseModel):
    name: str
    score: float = Field(description="The detector's raw strength (a probability for models, 1 for a rule).")
    points: float = Field(description="What the policy made of it: score × the signal's weight.")
    evidence: dict[str, Any] = Field(description="What was seen: matched words, the link, a counter and its window.")


class ItemError(BaseModel):
    code: str = Field(description="unknown_field, missing_field, invalid_type, invalid_length, empty_text, ...")
    message: str
    field: str | None = None


class CheckResult(BaseModel):
    """A verdict for one message, or (``error`` set, verdict fields absent) why it could not be checked."""

    index: int = Field(description="Position of the message in the request.")
    id: int | None = Field(None, description="Stored verdict id: GET /v1/verdicts/{id}, `skyshield why ID`.")
    message_id: str | None = Field(None, description="Your id for the message, as sent.")
    action: str | None = Field(None, description="deliver, tag, fold, hold or block.")
    category: str | None = Field(None, description="personal, notification, verification, promotion, fraud, illicit.")
    subtype: str | None = None
    unwanted: float | None = Field(None, description="Probability the recipient did not ask for it (0..1).")
    score: float | None = Field(None, description="Sum of the signals' points; thresholds pick the action.")
    reasons: list[str] | None = Field(None, description="One readable line per signal that gave points.")
    signals: list[SignalOut] | None = Field(None, description="The strongest signals (up to 5) with evidence.")
    replayed: bool | None = Field(
        None, description="True when this `id` was checked before: the stored verdict, not scored or stored again."
    )
    failsafe: str | None = Field(
        None,
        description="Set when the engine or the store failed: `engine_unavailable` or `store_unavailable`; the action "
        "is then the one `[engine] on_failure` names, and `id` is null when the verdict could not be stored.",
    )
    error: ItemError | None = None


class CheckResponse(BaseModel):
    results: list[CheckResult]
    checked: int = Field(description="Messages that got a verdict (including replayed ones).")
    failed: int = Field(description="Messages refused (each has an `error` in `results`).")
    replayed: int = Field(description="Messages answered from the store because their `id` was seen before.")
    model_version: str


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class PartialCheckResponse(CheckResponse):
    """HTTP 422 for a batch with broken items: the good items' verdicts are in ``results`` (and stored)."""

    error: ErrorDetail
