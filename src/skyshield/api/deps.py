"""What a route may use: the engine, the store, the settings and the policy the server started with.

Area routers take them as FastAPI dependencies, e.g. ``store: VerdictStore = Depends(get_store)``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request

from skyshield.config import Settings
from skyshield.engine import Engine
from skyshield.policy import Policy
from skyshield.store import VerdictStore


@dataclass
class ApiState:
    engine: Engine
    store: VerdictStore
    settings: Settings
    policy: Policy
    #: Detectors may keep state (behaviour counters); one batch at a time goes through the engine.
    engine_lock: threading.Lock = field(default_factory=threading.Lock)


def get_state(request: Request) -> ApiState:
    return request.app.state.skyshield


def get_engine(request: Request) -> Engine:
    return get_state(request).engine


def get_store(request: Request) -> VerdictStore:
    return get_state(request).store


def get_settings(request: Request) -> Settings:
    return get_state(request).settings


def get_policy(request: Request) -> Policy:
    return get_state(request).policy
