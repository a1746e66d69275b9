"""Soak test: mixed traffic at a fixed rate for N minutes through the HTTP API and the SMPP firewall, printing
each minute the servers' memory (RSS) and latency percentiles, so a leak or a slow drift shows as a trend.

    .venv/bin/python bench/soak.py                       # 30 minutes, 100 msg/s API + 100 submit_sm/s SMPP
    .venv/bin/python bench/soak.py --minutes 2 --api-rate 200 --smpp-rate 0

API traffic per request: 80% message batches (``--batch`` messages; ~5% of ids repeat, so replays are exercised;
~1% broken items), 12% verdict reads, 8% call screening. SMPP traffic: submit_sm through ``skyshield smpp`` to the
SMSC simulator (``skyshield smsc-sim``). Every server is a separate process on 127.0.0.1 with its own temporary
SQLite database. A separate command: not part of ``make test`` or ``make bench``'s quick runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

TEXTS = [
    "【招商银行】您尾号{n}的卡于11月20日消费人民币1,999.00元，如有疑问请致电95555",
    "【顺丰速运】您的快递已到达小区驿站，取件码8-3-{n}，请凭码取件。",
    "【京东】您的验证码为{n}，5分钟内有效，请勿泄露给他人。",
    "【某宝】双11狂欢，全场5折起，点击 t.cn/a{n} 抢购，回T退订",
    "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即将资金转入安全账户{n}配合调查",
    "妈，我换号了，这是新号码，急用钱先转我{n}元",
    "晚上一起吃饭吗？我订了{n}号桌",
    "澳门新葡京上线啦，首充送{n}元，点击 www.xpj{n}.com",
]
POLICY = ('[tenants.bench]\nsystem_id = "bench"\npassword = "bench"\n'
          '[gateway.smpp]\nmax_rate = "100000 / 1s"\nwindow = 1000\n')


def rss_mb(pid: int) -> float:
    """Resident memory of a server and its child processes (the SMPP firewall's engine runs in one)."""
    try:
        total = next(int(line.split()[1]) / 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if line.startswith("VmRSS:"))
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += rss_mb(int(child))
        return total
    except (OSError, StopIteration, ValueError):
        return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Window:
    """Latencies and counts since the last report (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.latencies: list[float] = []
        self.requests = self.messages = self.errors = 0

    def add(self, seconds: float, messages: int, ok: bool) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.requests += 1
            self.messages += messages
            self.errors += not ok

    def take(self) -> tuple[list[float], int, int, int]:
        with self.lock:
            out = (self.latencies, self.requests, self.messages, self.errors)
            self.reset()
        return out


class ApiLoad:
    def __init__(self, url: str, rate: float, batch: int, window: Window, seed: int = 1):
        self.url, self.rate, self.batch, self.window = url, rate, batch, window
        self.rng = random.Random(seed)
        self.ids: list[str] = []
        self.verdict_ids: list[int] = []
        self.counter = 0
        self.stop = threading.Event()
        self.client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=8))

    def _request(self) -> tuple[str, str, dict | None, int]:
        roll = self.rng.random()
        if roll < 0.12 and self.verdict_ids:
            return "GET", f"/v1/verdicts/{self.rng.choice(self.verdict_ids[-1000:])}", None, 0
        if roll < 0.20:
            rand = self.rng.randint
            calls = [{"caller": f"170{rand(0, 10**8):08d}", "callee": f"138{rand(0, 10**8):08d}",
                      "answered": self.rng.random() < 0.3, "duration": rand(0, 120)} for _ in range(5)]
            return "POST", "/v1/calls:check", {"calls": calls}, 5
        items = []
        for _ in range(self.batch):
            if self.ids and self.rng.random() < 0.05:
                msg_id = self.rng.choice(self.ids[-5000:])  # a replay
            else:
                self.counter += 1
                msg_id = f"s{self.counter}"
                self.ids.append(msg_id)
            text = self.rng.choice(TEXTS).format(n=self.rng.randint(1000, 9999))
            if self.rng.random() < 0.01:
                text = ""  # a broken item: refused alone
            items.append({"text": text, "id": msg_id, "sender": f"1069{self.rng.randint(0, 999):03d}",
                          "recipient": f"138{self.rng.randint(0, 10**8):08d}"})
        return "POST", "/v1/messages:check", {"messages": items}, len(items)

    def _send(self, method: str, path: str, body: dict | None, n: int) -> None:
        started = time.perf_counter()
        try:
            r = self.client.request(method, self.url + path, json=body)
            ok = r.status_code in (200, 422) or (method == "GET" and r.status_code == 404)
            if ok and path.endswith("messages:check"):
                self.verdict_ids.extend(x["id"] for x in r.json()["results"] if x.get("id"))
        except httpx.HTTPError:
            ok = False
        self.window.add(time.perf_counter() - started, n, ok)

    def run(self) -> None:
        requests_per_s = self.rate / self.batch
        start = time.perf_counter()
        sent = 0
        with ThreadPoolExecutor(4) as pool:
            while not self.stop.is_set():
                due = int((time.perf_counter() - start) * requests_per_s)
                while sent < due:
                    pool.submit(self._send, *self._request())
                    sent += 1
                time.sleep(0.002)


def smpp_load(port: int, rate: float, window: Window, stop: threading.Event) -> None:
    import smpp_throughput as S  # the SMPP bench's load generator

    async def main() -> None:
        esmes = await S.connect(port, 2)
        pdus = S.make_pdus(5000)
        start = time.perf_counter()
        sent = 0
        seen = [0, 0]
        while not stop.is_set():
            due = int((time.perf_counter() - start) * rate)
            while sent < due:
                esmes[sent % 2].submit(pdus[sent % len(pdus)])
                sent += 1
            for k, e in enumerate(esmes):  # hand new latencies to the window
                new = e.latencies[seen[k]:]
                seen[k] = len(e.latencies)
                for x in new:
                    window.add(x, 1, True)
            await asyncio.sleep(0.005)
        for e in esmes:
            e.transport.close()

    asyncio.run(main())


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=log.parent)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--api-rate", type=float, default=100, help="messages/s offered to the API (0: none)")
    ap.add_argument("--batch", type=int, default=10, help="messages per API request")
    ap.add_argument("--smpp-rate", type=float, default=100, help="submit_sm/s offered to the SMPP firewall (0: none)")
    args = ap.parse_args()

    from smpp_throughput import free_port, wait_port

    tmp = Path(tempfile.mkdtemp(prefix="skyshield-soak-"))
    (tmp / "policy.toml").write_text(POLICY)
    exe = [sys.executable, "-m", "skyshield.cli", "--policy", str(tmp / "policy.toml")]
    procs: dict[str, subprocess.Popen] = {}
    api_window, smpp_window = Window(), Window()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    api: ApiLoad | None = None
    try:
        if args.api_rate > 0:
            port = free_port()
            env = dict(os.environ, SKYSHIELD_DB=f"sqlite:///{tmp / 'api.db'}")
            procs["api"] = start([*exe, "serve", "--port", str(port), "--no-access-log", "--log-level", "warning"],
                                 env, tmp / "api.log")
            wait_port(port, procs["api"])
            url = f"http://127.0.0.1:{port}"
            deadline = time.time() + 60
            while httpx.get(url + "/healthz", timeout=5).status_code != 200 and time.time() < deadline:
                time.sleep(0.2)
            api = ApiLoad(url, args.api_rate, args.batch, api_window)
            threads.append(threading.Thread(target=api.run, daemon=True))
        if args.smpp_rate > 0:
            sim_port, fw_port = free_port(), free_port()
            env = dict(os.environ, SKYSHIELD_DB=f"sqlite:///{tmp / 'smpp.db'}", PYTHONUNBUFFERED="1")
            procs["smsc"] = start([sys.executable, "-m", "skyshield.gateway.smsc_sim", "--listen",
                                   f"127.0.0.1:{sim_port}"], env, tmp / "smsc.log")
            wait_port(sim_port, procs["smsc"])
            procs["smpp"] = start([*exe, "smpp", "--listen", f"127.0.0.1:{fw_port}", "--upstream",
                                   f"127.0.0.1:{sim_port}", "--log-level", "WARNING"], env, tmp / "smpp.log")
            wait_port(fw_port, procs["smpp"])
            threads.append(threading.Thread(target=smpp_load, args=(fw_port, args.smpp_rate, smpp_window, stop),
                                            daemon=True))
        print(f"soak: {args.minutes:g} min; API {args.api_rate:g} msg/s in batches of {args.batch}; "
              f"SMPP {args.smpp_rate:g} submit_sm/s; logs in {tmp}", flush=True)
        head = f"{'min':>4} {'path':<5} {'RSS MB':>7} {'req':>6} {'msgs':>7} {'err':>4} " \
               f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}"
        print(head, flush=True)
        for t in threads:
            t.start()
        began = time.perf_counter()
        minute = 0
        while minute < args.minutes:
            minute += 1
            time.sleep(max(0.0, began + 60 * min(minute, args.minutes) - time.perf_counter()))
            for name, window, proc in (("api", api_window, procs.get("api")), ("smpp", smpp_window, procs.get("smpp"))):
                if proc is None:
                    continue
                if proc.poll() is not None:
                    print(f"{name} server exited with {proc.returncode}; see {tmp}", flush=True)
                    return 1
                lat, req, msgs, err = window.take()
                print(f"{minute:>4} {name:<5} {rss_mb(proc.pid):7.1f} {req:6d} {msgs:7d} {err:4d} "
                      f"{pct(lat, 0.5):7.1f} {pct(lat, 0.95):7.1f} {pct(lat, 0.99):7.1f} {pct(lat, 1.0):7.1f}",
                      flush=True)
    finally:
        stop.set()
        if api is not None:
            api.stop.set()
        for t in threads:
            t.join(10)
        for proc in procs.values():
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
