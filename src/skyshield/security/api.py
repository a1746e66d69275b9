"""The API's gate: who is calling (API key → tenant and scopes), may they, and how often.

``create_app`` includes every router with :func:`authorize` as a dependency. It lets through anything
outside ``/v1`` (health, metrics, docs, the console with its own login) and, in open local mode (no key
was ever created), every request. Otherwise a ``/v1`` request needs ``Authorization: Bearer <key>``:
401 without a valid key, 403 without the scope (GET needs ``read``, other methods ``check``, the routes in
``ADMIN_ROUTES`` ``admin``), 429 beyond the key's rate.

Routes then ask :func:`effective_tenant` whose data they may touch: the key's tenant, or (open mode, admin
key) the tenant the request names.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

from fastapi import Request

from skyshield.api.errors import ApiError
from skyshield.policy import Policy, parse_rate
from skyshield.security.keys import ApiKey, KeyRing
from skyshield.store import VerdictStore

log = logging.getLogger("skyshield.security")

_BEARER = {"WWW-Authenticate": "Bearer"}
#: Route paths (as declared), or "METHOD path", that need the admin scope: they act on every tenant's traffic.
ADMIN_ROUTES = {
    "/v1/numbers/{number}:block",
    # Operator work spans every tenant's traffic: blocks, appeal decisions, campaigns, the review queue and
    # the list of all complaints are the carrier's, not a sender's. (A tenant may still appeal its block.)
    "/v1/blocks",
    "/v1/blocks/{block_id}",
    "/v1/blocks/{block_id}:lift",
    "/v1/appeals/{appeal_id}:decide",
    "/v1/campaigns",
    "/v1/campaigns/{campaign_id}",
    "/v1/review",
    "/v1/review/{item_id}:label",
    "GET /v1/reports",  # listing every complaint; submitting one (POST) needs only ``check``
}


class TokenBucket:
    """``rate`` requests per ``per`` seconds, with bursts up to ``rate``; one bucket per key id."""

    def __init__(self, rate: int, per: float):
        self.capacity = float(rate)
        self.refill = rate / per
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0.0 when allowed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.refill


@dataclass
class SecurityState:
    keyring: KeyRing
    limiter: TokenBucket | None
    warned_open: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_app(cls, store: VerdictStore, policy: Policy) -> SecurityState:
        rate = str(policy.section("security")["key_rate"]).strip()
        limiter = TokenBucket(*parse_rate(rate)) if rate else None
        state = cls(KeyRing(store), limiter)
        if not state.keyring.any_keys():
            log.warning(
                "no API key exists: the API runs in open local mode (any caller, tenant from the request). "
                "Create one with `skyshield keys create --tenant NAME --scopes check,read` to require keys."
            )
            state.warned_open = True
        return state


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key (tenant, scopes) or nobody in open local mode."""

    key: ApiKey | None

    @property
    def open_mode(self) -> bool:
        return self.key is None

    @property
    def any_tenant(self) -> bool:
        return self.key is None or self.key.admin


OPEN = Principal(None)


def _required_scope(request: Request) -> str:
    path = getattr(request.scope.get("route"), "path", None)
    if path in ADMIN_ROUTES or f"{request.method} {path}" in ADMIN_ROUTES:
        return "admin"
    return "read" if request.method in ("GET", "HEAD") else "check"


def authorize(request: Request) -> None:
    """FastAPI dependency on every router: sets ``request.state.principal`` or refuses the request."""
    request.state.principal = OPEN
    if not request.url.path.startswith("/v1/") and request.url.path != "/v1":
        return
    security: SecurityState | None = getattr(request.app.state, "security", None)
    if security is None or not security.keyring.any_keys():
        return
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if not header:
        raise ApiError(401, "unauthorized", "this API needs an API key: send Authorization: Bearer <key>",
                       headers=_BEARER)
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "unauthorized", "the Authorization header must read: Bearer <key>", headers=_BEARER)
    key = security.keyring.authenticate(presented)
    if key is None:
        raise ApiError(401, "invalid_key", "the API key is unknown or revoked", headers=_BEARER)
    scope = _required_scope(request)
    if not key.allows(scope):
        raise ApiError(403, "forbidden",
                       f"key {key.key_id} has scopes {','.join(sorted(key.scopes))}; "
                       f"{request.method} {request.url.path} needs '{scope}'", needed_scope=scope)
    if security.limiter is not None:
        wait = security.limiter.take(key.key_id)
        if wait > 0:
            raise ApiError(429, "rate_limited", f"key {key.key_id} is over its rate; retry in {wait:.2f} s",
                           retry_after_s=round(wait, 3), headers={"Retry-After": str(max(1, math.ceil(wait)))})
    request.state.principal = Principal(key)


def principal_of(request: Request) -> Principal:
    return getattr(request.state, "principal", OPEN)


def effective_tenant(request: Request, requested: str | None) -> str | None:
    """The tenant a request acts for: as requested in open mode or with an admin key, else the key's own."""
    p = principal_of(request)
    if p.any_tenant:
        return requested
    assert p.key is not None
    return p.key.tenant


def may_see(request: Request, tenant: str) -> bool:
    """Whether the caller may read a record of ``tenant``."""
    p = principal_of(request)
    return p.any_tenant or (p.key is not None and p.key.tenant == tenant)


def actor_of(request: Request) -> str:
    """Who to name in the audit log for this API request: ``key:<key id>`` or ``api:open-mode``."""
    p = principal_of(request)
    return f"key:{p.key.key_id}" if p.key is not None else "api:open-mode"
