"""``skyshield serve --workers 2``: two worker processes behind one port share Redis counters and one
database, so a frequency cap holds exactly across them. Skips when Redis is unreachable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from service_helpers import require_redis
from skyshield.policy import Policy
from skyshield.shared_state.redis_counter import RedisWindowCounter
from skyshield.shared_state.workers import worker_warning

pytestmark = pytest.mark.service

CODE = "【京东】您的验证码为{code}，5分钟内有效，请勿泄露给他人。"


def test_many_workers_without_shared_state_are_warned_about(monkeypatch):
    monkeypatch.delenv("SKYSHIELD_STATE", raising=False)
    assert "2x its limit" in worker_warning(Policy.from_text(""), 2)
    assert worker_warning(Policy.from_text(""), 1) is None
    assert worker_warning(Policy.from_text('[state]\nurl = "redis://127.0.0.1:6379/0"\n'), 4) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc; empty where there is none)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_two_workers_enforce_one_cap_and_share_one_database(tmp_path):
    redis_url = require_redis()
    prefix = f"skyshield-test:{uuid.uuid4().hex[:10]}:"
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[state]\nurl = "{redis_url}"\nkey_prefix = "{prefix}"\n'
                      '[detectors.compliance.caps]\nverification = ["10 / 1d"]\n')
    port = _free_port()
    env = {**os.environ, "SKYSHIELD_DB": f"sqlite:///{tmp_path / 'verdicts.db'}"}
    for name in ("SKYSHIELD_STATE", "SKYSHIELD_KEY_FILE"):
        env.pop(name, None)
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "skyshield.cli", "serve", "--port", str(port), "--workers", "2",
                             "--no-access-log", "--log-level", "warning", "--policy", str(policy)],
                            env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start in 120 s"
            time.sleep(0.3)
        if os.path.isdir("/proc"):
            assert len(_children(proc.pid)) >= 2, "uvicorn runs two worker processes"
        passed: list[int] = []
        lock = threading.Lock()

        def send(i: int) -> None:
            with httpx.Client(timeout=60) as client:
                for j in range(8):
                    body = {"messages": [{"text": CODE.format(code=100000 + 100 * i + j), "sender": "1069000100",
                                          "recipient": "13800138000", "time": "2026-11-23T10:00:00+08:00"}]}
                    result = client.post(f"{url}/v1/messages:check", json=body).json()["results"][0]
                    assert not result.get("failsafe"), result
                    with lock:
                        passed.append(not any(r.startswith("FREQUENCY_CAP") for r in result["reasons"]))

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(passed) == 32
        assert sum(passed) == 10, "exactly the cap got through, whichever worker judged each code"
        with httpx.Client(timeout=30) as client:
            verdicts = client.get(f"{url}/v1/verdicts", params={"limit": 100}).json()
        items = verdicts["verdicts"] if isinstance(verdicts, dict) else verdicts
        assert len(items) == 32, "both workers stored into one database"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        RedisWindowCounter.from_url(redis_url, prefix=prefix).clear()
