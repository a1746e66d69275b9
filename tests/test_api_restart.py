"""A verdict given by ``skyshield serve`` survives the server being killed: after a restart the API
returns it, and ``skyshield why`` in another process explains it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

PROMOTION = "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订"
FRAUD = "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查"


@pytest.fixture(scope="module", autouse=True)
def _needs_model():
    try:
        import skyshield.text.classify  # noqa: F401
        import skyshield.text.rules  # noqa: F401
    except ModuleNotFoundError as exc:
        pytest.skip(f"the text model is not in the tree yet ({exc.name}); the restart test needs the real engine")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skyshield(*args: str, cwd: Path, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "skyshield.cli", *args], cwd=cwd, env=env, **kwargs)


def _serve(tmp_path: Path, env: dict[str, str], name: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = (tmp_path / f"{name}.log").open("wb")
    proc = _skyshield("serve", "--port", str(port), "--no-access-log", cwd=tmp_path, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"skyshield serve exited with {proc.returncode}:\n{(tmp_path / f'{name}.log').read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"skyshield serve did not answer /healthz in 120 s:\n{(tmp_path / f'{name}.log').read_text()}")


def _stop(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_verdicts_survive_a_killed_server(tmp_path):
    env = {**os.environ, "SKYSHIELD_DB": "sqlite:///restart.db"}  # relative: the server's working folder
    env.pop("SKYSHIELD_KEY_FILE", None)
    server, url = _serve(tmp_path, env, "first")
    try:
        r = httpx.post(
            f"{url}/v1/messages:check",
            json={"messages": [{"text": PROMOTION, "sender": "13800138000"}, {"text": FRAUD}]},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        promo, fraud = r.json()["results"]
    finally:
        _stop(server, signal.SIGKILL)  # no clean shutdown: the answered verdicts must already be on disk
    assert (tmp_path / "restart.db").exists() and (tmp_path / "restart.key").exists()

    server, url = _serve(tmp_path, env, "second")
    try:
        got = httpx.get(f"{url}/v1/verdicts/{fraud['id']}", timeout=10)
        assert got.status_code == 200, got.text
        body = got.json()
        for key in ("category", "subtype", "action", "score", "unwanted"):
            assert body[key] == fraud[key], key
        assert body["message"]["text"] == FRAUD
        assert body["reasons"] == fraud["reasons"]

        # Another process reads the same file while the server runs (WAL: readers do not wait on the writer).
        why = subprocess.run(
            [sys.executable, "-m", "skyshield.cli", "why", str(promo["id"])],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert why.returncode == 0, why.stderr
        assert PROMOTION in why.stdout and "SIGNATURE" in why.stdout and "OPT_OUT_TEXT" in why.stdout
        assert "13800138000" not in why.stdout
    finally:
        _stop(server, signal.SIGTERM)
    assert server.returncode is not None
