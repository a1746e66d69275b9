"""HTTP API throughput: messages per second through ``POST /v1/messages:check`` on loopback.

Starts ``skyshield serve`` (shipped model, a fresh SQLite file in a temporary folder, no access log) unless
``--url`` names a running server, then sends batches of 1, 100 and 1000 messages from one keep-alive
client, one request at a time. Beside each figure it prints the baseline measured in the same run: the
engine alone (``engine.check`` in this process, no HTTP, no JSON, no store) on the same batches, and the
share of the server's time spent storing verdicts (from its /metrics).

    .venv/bin/python bench/api_throughput.py [--seconds 5] [--sizes 1,100,1000] [--url http://127.0.0.1:8080]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

SAMPLES = [
    "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订",
    "【招商银行】您尾号1234的卡于11月20日消费人民币1,999.00元，如有疑问请致电95555",
    "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查",
    "【顺丰速运】您的快递已到达小区驿站，取件码8-3-2045，请凭码取件。",
    "【京东】您的验证码为846213，5分钟内有效，请勿泄露给他人。",
    "Your Amazon verification code is 482913. Don't share it. Reply STOP to opt out",
    "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461",
    "加 薇 信 ：ｘｙ８８８ 领取 ５ 万 元 贷 款，無抵押秒到賬",
    "妈，我换号码了，这是我新号，先别告诉别人，急需用钱转我5000",
    "明天下午三点在3楼会议室开会，记得带电脑",
]


def messages(n: int, offset: int = 0) -> list[dict]:
    return [
        {"text": f"{SAMPLES[(offset + i) % len(SAMPLES)]} {offset + i}", "sender": f"1380013{(offset + i) % 10000:04d}"}
        for i in range(n)
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "SKYSHIELD_DB": f"sqlite:///{workdir / 'bench.db'}"}
    env.pop("SKYSHIELD_KEY_FILE", None)
    log = (workdir / "server.log").open("wb")
    cmd = [sys.executable, "-m", "skyshield.cli", "serve", "--port", str(port), "--no-access-log"]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited:\n{(workdir / 'server.log').read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("server did not start in 180 s")


STORE_SUM = "skyshield_store_batch_seconds_sum"
REQUEST_SUM = "skyshield_http_request_seconds_sum"


def metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def api_rate(client: httpx.Client, url: str, size: int, seconds: float) -> tuple[float, float, float]:
    """(messages/s, median request ms, store share of server time) for batches of ``size``."""
    # Prebuilt bodies so the client's own JSON work stays out of the figure as far as possible.
    bodies = [httpx.Request("POST", "/", json={"messages": messages(size, k * size)}).content for k in range(20)]
    headers = {"content-type": "application/json"}
    client.post(f"{url}/v1/messages:check", content=bodies[0], headers=headers)  # warm-up
    before = client.get(f"{url}/metrics").text
    sent, latencies = 0, []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        r = client.post(f"{url}/v1/messages:check", content=bodies[len(latencies) % len(bodies)], headers=headers)
        latencies.append(time.perf_counter() - t0)
        if r.status_code != 200:
            sys.exit(f"HTTP {r.status_code}: {r.text[:500]}")
        sent += size
    elapsed = time.perf_counter() - started
    after = client.get(f"{url}/metrics").text
    store = metric_sum(after, STORE_SUM) - metric_sum(before, STORE_SUM)
    request = metric_sum(after, REQUEST_SUM) - metric_sum(before, REQUEST_SUM)
    latencies.sort()
    return sent / elapsed, latencies[len(latencies) // 2] * 1000, store / request if request else 0.0


def engine_rate(engine: Any, size: int, seconds: float) -> float:
    from skyshield.events import Message

    batches = [[Message(text=m["text"], sender=m["sender"]) for m in messages(size, k * size)] for k in range(20)]
    engine.check(batches[0])
    sent, k = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        engine.check(batches[k % len(batches)])
        k += 1
        sent += size
    return sent / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start one on a free loopback port)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    parser.add_argument("--sizes", default="1,100,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory(prefix="skyshield-bench-") as tmp:
        # The in-process baseline engine's detectors (consent ledger) open $SKYSHIELD_DB too: keep it here.
        os.environ["SKYSHIELD_DB"] = f"sqlite:///{Path(tmp) / 'baseline.db'}"
        proc = None
        url = args.url
        if not url:
            proc, url = start_server(Path(tmp))
        try:
            with httpx.Client(timeout=120) as client:
                results = {size: api_rate(client, url, size, args.seconds) for size in sizes}
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        print(f"POST /v1/messages:check on loopback, one client, {args.seconds:g} s per size (cpus: {os.cpu_count()})")
        header = ("batch", "API msg/s", "median ms", "store share", "baseline: engine alone msg/s")
        print(f"{header[0]:>6} {header[1]:>11} {header[2]:>10} {header[3]:>12} {header[4]:>30}")
        from skyshield.assembly import build_engine
        from skyshield.store import open_store

        open_store().close()  # create the database first, so the engine's detectors find it
        engine = build_engine(None)
        for size in sizes:
            rate, median_ms, store_share = results[size]
            base = engine_rate(engine, size, args.seconds)
            print(f"{size:>6} {rate:>11,.0f} {median_ms:>10.1f} {store_share:>11.0%} {base:>30,.0f}")


if __name__ == "__main__":
    main()
