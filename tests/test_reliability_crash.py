"""Crash safety: ``skyshield serve`` killed with SIGKILL in the middle of traffic, five times over, loses no
accepted message and records none twice (clients retry unanswered batches with the same ids); and
``skyshield classify --resume`` after a SIGKILL writes each input line exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

TEXTS = [
    "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订",
    "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查",
    "【顺丰】您的快递已到达驿站，取件码 3321",
    "妈，我手机丢了，这是新号，急需转账2000",
    "晚上一起吃饭吗",
]


@pytest.fixture(scope="module", autouse=True)
def _needs_model():
    try:
        import skyshield.text.classify  # noqa: F401
    except ModuleNotFoundError as exc:
        pytest.skip(f"the text model is not in the tree yet ({exc.name})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "SKYSHIELD_DB": f"sqlite:///{tmp_path / 'crash.db'}"}
    env.pop("SKYSHIELD_KEY_FILE", None)
    return env


def _serve(tmp_path: Path, port: int, round_no: int) -> subprocess.Popen:
    log = (tmp_path / f"serve-{round_no}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyshield.cli", "serve", "--port", str(port), "--no-access-log"],
        cwd=tmp_path, env=_env(tmp_path), stdout=log, stderr=log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited {proc.returncode}: {(tmp_path / f'serve-{round_no}.log').read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail("serve did not become healthy in 60 s")


def _batch(n: int, size: int) -> list[dict]:
    return [{"text": TEXTS[(n + i) % len(TEXTS)], "sender": f"1380013{n % 10000:04d}", "id": f"b{n}-{i}"}
            for i in range(size)]


def test_sigkill_during_traffic_loses_nothing_and_duplicates_nothing(tmp_path):
    rng = random.Random(7)
    acknowledged: set[str] = set()
    unacknowledged: list[list[dict]] = []
    next_batch = 0
    kills_mid_request = 0
    replayed = 0
    for round_no in range(5):
        port = _free_port()
        server = _serve(tmp_path, port, round_no)
        url = f"http://127.0.0.1:{port}/v1/messages:check"
        with httpx.Client(timeout=30) as client:
            # first, what the last server never answered: same ids, so a committed batch comes back replayed
            for batch in unacknowledged:
                r = client.post(url, json={"messages": batch})
                assert r.status_code == 200, r.text
                replayed += r.json()["replayed"]
                acknowledged.update(m["id"] for m in batch)
            unacknowledged = []

            stop = threading.Event()
            in_flight: list[list[dict]] = []

            def traffic(client=client, url=url, stop=stop, in_flight=in_flight) -> None:
                nonlocal next_batch
                while not stop.is_set():
                    batch = _batch(next_batch, 25)
                    next_batch += 1
                    in_flight.append(batch)
                    try:
                        r = client.post(url, json={"messages": batch})
                    except httpx.TransportError:
                        return  # killed: this batch stays in in_flight, unacknowledged
                    assert r.status_code == 200, r.text
                    acknowledged.update(m["id"] for m in batch)
                    in_flight.remove(batch)

            sender = threading.Thread(target=traffic)
            sender.start()
            time.sleep(rng.uniform(0.4, 1.2))
            kills_mid_request += bool(in_flight)
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
            stop.set()
            sender.join(30)
            unacknowledged = list(in_flight)

    # a last server to take the final unanswered batch, then count what the database holds
    port = _free_port()
    server = _serve(tmp_path, port, 99)
    try:
        for batch in unacknowledged:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/messages:check", json={"messages": batch}, timeout=30)
            assert r.status_code == 200
            acknowledged.update(m["id"] for m in batch)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)

    conn = sqlite3.connect(tmp_path / "crash.db")
    rows = conn.execute("SELECT external_id, COUNT(*) FROM verdicts GROUP BY external_id").fetchall()
    counts = dict(rows)
    assert next_batch >= 10, "the traffic thread barely ran; the test proves nothing"
    assert kills_mid_request >= 3, "most kills should land while a request is in flight"
    missing = acknowledged - set(counts)
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} acknowledged messages were lost, e.g. {sorted(missing)[:3]}"
    assert not twice, f"{len(twice)} messages were recorded twice, e.g. {list(twice.items())[:3]}"
    assert set(counts) == acknowledged, "nothing was recorded that no client sent"
    print(f"\n{len(acknowledged)} messages in {next_batch} batches, 5 SIGKILLs "
          f"({kills_mid_request} mid-request), {replayed} replayed on retry")


def test_classify_resume_after_sigkill_writes_each_line_exactly_once(tmp_path):
    lines = [f"{TEXTS[i % len(TEXTS)]} #{i}" for i in range(12_000)]
    lines[-3] = ""  # an error record counts as a line too (and makes the exit status 1)
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "skyshield.cli", "classify", "in.txt", "--out", "out.jsonl", "--no-store",
           "--batch-size", "300"]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 200_000):
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    written = out.read_bytes()
    assert 0 < written.count(b"\n") < len(lines), "the first run should die part-way through"

    resumed = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 1, resumed.stderr  # 1: the empty line is an error record
    assert "resuming after input line" in resumed.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == list(range(1, len(lines) + 1))
    assert records[-3]["error"]["code"] == "empty_text"

    again = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and out.read_text(encoding="utf-8").count("\n") == len(lines), "nothing left to do"


def test_resume_cuts_a_half_written_last_record(tmp_path):
    from skyshield.commands import _resume_point

    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"line":1,"action":"deliver"}\n{"line":2,"action":"deliver"}\n{"line":3,"act')
    assert _resume_point(str(out)) == 2
    assert out.read_bytes().endswith(b'"deliver"}\n') and out.read_bytes().count(b"\n") == 2
    out.write_bytes(b"not json\n")
    with pytest.raises(ValueError, match="not a classify record"):
        _resume_point(str(out))
    assert _resume_point(str(tmp_path / "absent.jsonl")) == 0
