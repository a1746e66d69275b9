"""Verdict throughput of ``skyshield serve --workers N`` sharing Redis (counters) and PostgreSQL (records).

For each worker count it starts a server on a free loopback port (a policy with ``[state] url`` on Redis, a
fresh PostgreSQL schema, or SQLite with ``--sqlite``), drives ``POST /v1/messages:check`` from several
client threads for a bounded time and request count, and prints messages/s; the 1-worker figure is the
baseline measured in the same run, and the ratio is printed beside each. Then, against the same server,
clients send one-time codes to one recipient at once (one fixed send time) and it checks that exactly
the cap got through: the counters stay exact under concurrency.

    .venv/bin/python bench/workers_throughput.py [--workers 1,2] [--seconds 8] [--clients 4] [--batch 100]

Needs Redis on 127.0.0.1:6379 (and PostgreSQL on :5432 unless --sqlite). On a 2-core machine the client
threads share the cores with the workers, so the ratio understates what separate hosts would give.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from api_throughput import messages  # noqa: E402  (same message mix as the single-process API bench)

REDIS_URL = "redis://127.0.0.1:6379/14"
PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
CAP = 40
CODE = "【京东】您的验证码为{code}，5分钟内有效，请勿泄露给他人。"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path, workers: int, db_url: str, policy: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    # The consent ledger and send log live in the same database as the verdicts (PostgreSQL here).
    env = {**os.environ, "SKYSHIELD_DB": db_url, "SKYSHIELD_KEY_FILE": str(workdir / "bench.key")}
    env.pop("SKYSHIELD_STATE", None)
    log = (workdir / f"server-{workers}.log").open("wb")
    cmd = [sys.executable, "-m", "skyshield.cli", "serve", "--port", str(port), "--no-access-log",
           "--log-level", "warning", "--workers", str(workers), "--policy", str(policy)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited:\n{(workdir / f'server-{workers}.log').read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    else:
        proc.kill()
        sys.exit("server did not start in 240 s")
    # /healthz answers once the first worker is up; give every worker a request before measuring
    with httpx.Client(timeout=120) as client:
        for _ in range(4 * workers):
            client.post(f"{url}/v1/messages:check", json={"messages": messages(10)})
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def throughput(url: str, clients: int, batch: int, seconds: float, max_requests: int) -> float:
    bodies = [httpx.Request("POST", "/", json={"messages": messages(batch, k * batch)}).content for k in range(20)]
    sent = [0] * clients
    errors: list[str] = []
    budget = [max_requests]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def run(i: int) -> None:
        with httpx.Client(timeout=120, headers={"content-type": "application/json"}) as client:
            k = i
            while time.perf_counter() < deadline:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                r = client.post(f"{url}/v1/messages:check", content=bodies[k % len(bodies)])
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}: {r.text[:300]}")
                    return
                sent[i] += batch
                k += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(errors[0])
    return sum(sent) / (time.perf_counter() - started)


def codes_through(url: str, clients: int, per_client: int) -> tuple[int, int]:
    """(codes without FREQUENCY_CAP, codes sent): all to one recipient, from one signature, at one time."""
    when = "2026-11-23T10:00:00+08:00"
    passed = [0] * clients
    errors: list[str] = []

    def run(i: int) -> None:
        with httpx.Client(timeout=120) as client:
            for j in range(per_client):
                body = {"messages": [{"text": CODE.format(code=100000 + i * 1000 + j), "sender": "1069000100",
                                      "recipient": "13800138000", "time": when}]}
                r = client.post(f"{url}/v1/messages:check", json=body)
                result = r.json()["results"][0] if r.status_code == 200 else {"failsafe": r.text[:300]}
                if result.get("failsafe"):
                    errors.append(f"the server could not judge a code: {result}")
                    return
                passed[i] += not any(line.startswith("FREQUENCY_CAP") for line in result.get("reasons") or [])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(errors[0])
    return sum(passed), clients * per_client


def component_rates(db_url: str | None, seconds: float = 2.0) -> list[tuple[str, float, str]]:
    """Per-operation rates of the shared parts, each beside its in-process baseline, in this process."""
    from datetime import UTC, datetime

    from skyshield.compliance.caps import SlidingCounter, parse_rates
    from skyshield.config import load_settings
    from skyshield.events import Action, Category, Message, Verdict
    from skyshield.shared_state.redis_counter import RedisWindowCounter
    from skyshield.store import open_store

    def rate(fn, unit: int = 1) -> float:
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            fn()
            n += unit
        return n / (time.perf_counter() - started)

    rates = parse_rates(["1 / 1m", "5 / 1h", "10 / 1d"])
    out = []
    local = SlidingCounter()
    shared = RedisWindowCounter.from_url(REDIS_URL, prefix=f"bench-{uuid.uuid4().hex[:8]}:")
    k = iter(range(10**9))
    out.append(("cap check_and_add, in process",
                rate(lambda: local.check_and_add(("r", next(k) % 5000), 1e9, rates, "x")), "checks/s"))
    out.append(("cap check_and_add, Redis (one round trip each)",
                rate(lambda: shared.check_and_add(("r", next(k) % 5000), 1e9, rates, "x")), "checks/s"))
    out.append(("fan-out add_and_count, Redis (one round trip each)",
                rate(lambda: shared.add_and_count(("s", next(k) % 5000), 1e9, 3600)), "counts/s"))
    many = [(("r", i), 1e9, rates, "x", True) for i in range(100)]
    out.append(("cap check_and_add_many, Redis, 100 per round trip",
                rate(lambda: shared.check_and_add_many(many), 100), "checks/s"))
    shared.clear()
    message = Message(text="【京东】您的验证码为846213，5分钟内有效。", sender="1069000100", recipient="13800138000",
                      time=datetime.now(UTC))
    batch = [(message, Verdict(Action.DELIVER, Category.VERIFICATION, None, 0.01, 0.0, [], model_version="bench"))
             for _ in range(1000)]
    with tempfile.TemporaryDirectory(prefix="skyshield-store-") as tmp:
        urls = [("SQLite (WAL)", f"sqlite:///{tmp}/s.db")] + ([("PostgreSQL (COPY)", db_url)] if db_url else [])
        for name, url in urls:
            with open_store(load_settings(url, key_file=f"{tmp}/k.key")) as store:
                out.append((f"store.save, batches of 1000, {name}", rate(lambda s=store: s.save(batch), 1000),
                            "verdicts/s"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (the first is the baseline)")
    parser.add_argument("--seconds", type=float, default=8.0, help="time per measurement")
    parser.add_argument("--max-requests", type=int, default=2000, help="at most this many requests per measurement")
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--batch", type=int, default=100, help="messages per request")
    parser.add_argument("--sqlite", action="store_true", help="records in SQLite (WAL) instead of PostgreSQL")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    import redis

    redis.Redis.from_url(REDIS_URL).ping()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    schema = None
    results = []
    with tempfile.TemporaryDirectory(prefix="skyshield-workers-") as tmp:
        workdir = Path(tmp)
        try:
            for workers in counts:
                run_prefix = f"{prefix}{workers}:"
                policy = workdir / f"policy-{workers}.toml"
                policy.write_text(
                    f'[state]\nurl = "{REDIS_URL}"\nkey_prefix = "{run_prefix}"\n'
                    f'[detectors.compliance.caps]\nverification = ["{CAP} / 1d"]\n'
                    '[detectors.compliance.platform_caps]\nverification = ["100000 / 1d"]\n'
                )
                if args.sqlite:
                    db_url = f"sqlite:///{workdir / f'records-{workers}.db'}"
                else:
                    import psycopg

                    schema = f"bench_{uuid.uuid4().hex[:8]}"
                    with psycopg.connect(PG_BASE, autocommit=True) as conn:
                        conn.execute(f"CREATE SCHEMA {schema}")
                    db_url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
                proc = None
                try:
                    proc, url = start_server(workdir, workers, db_url, policy)
                    rate = throughput(url, args.clients, args.batch, args.seconds, args.max_requests)
                    passed, sent = codes_through(url, args.clients, 30)
                finally:
                    if proc is not None:
                        stop_server(proc)
                    if schema:
                        with psycopg.connect(PG_BASE, autocommit=True) as conn:
                            conn.execute(f"DROP SCHEMA {schema} CASCADE")
                        schema = None
                results.append((workers, rate, passed, sent))
        finally:
            client = redis.Redis.from_url(REDIS_URL)
            for name in client.scan_iter(match=prefix + "*"):
                client.delete(name)
    if schema is None and not args.sqlite:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    try:
        components = component_rates(None if args.sqlite else f"{PG_BASE}?options=-csearch_path%3D{schema}")
    finally:
        if schema:
            with psycopg.connect(PG_BASE, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print("Shared parts, one thread in this process:")
    for name, value, unit in components:
        print(f"  {name:<52} {value:>10,.0f} {unit}")
    base = results[0][1]
    store = "SQLite (WAL)" if args.sqlite else "PostgreSQL"
    print(f"POST /v1/messages:check, {args.clients} client threads, batches of {args.batch}, {args.seconds:g} s "
          f"per run; records in {store}, counters in Redis (cpus: {os.cpu_count()})")
    print(f"{'workers':>7} {'msg/s':>9} {'vs 1st':>7} {'codes passed / cap / sent':>27}")
    for workers, rate, passed, sent in results:
        exact = "exact" if passed == CAP else "NOT EXACT"
        print(f"{workers:>7} {rate:>9,.0f} {rate / base:>6.2f}x {passed:>10} / {CAP} / {sent:<5} {exact}")
    if any(passed != CAP for *_, passed, _ in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
