"""SMPP firewall throughput and added latency on loopback, beside baselines measured in the same run.

    load generator → skyshield smpp (scoring on: the engine in its own process, as shipped) → SMSC simulator
    load generator → skyshield smpp (scoring on, engine_process = false: the engine on a thread) → SMSC simulator
    load generator → skyshield smpp --no-scoring (same code, pass-through) → SMSC simulator
    load generator → SMSC simulator directly

For each path it prints (1) saturation throughput (submit_sm/s with many outstanding requests) and
(2) latency p50/p99 at a fixed offered rate (default 5,000/s), and the firewall's p99 minus the
direct path's p99 ("added"). Each peer is a separate process; the load generator is this process.
Only 127.0.0.1; every phase is bounded in count and in time.

    .venv/bin/python bench/smpp_throughput.py [--n 20000] [--rate 5000] [--binds 4] [--window 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from skyshield.gateway import smpp_pdu as P  # noqa: E402
from skyshield.gateway.smpp import _Framed  # noqa: E402

SAMPLES = [
    "【招商银行】您尾号{n}的卡于11月20日消费人民币1,999.00元，如有疑问请致电95555",
    "【顺丰速运】您的快递已到达小区驿站，取件码8-3-{n}，请凭码取件。",
    "【京东】您的验证码为{n}，5分钟内有效，请勿泄露给他人。",
    "【某宝】双11狂欢，全场5折起，点击 t.cn/a{n} 抢购，回T退订",
    "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即将资金转入安全账户{n}配合调查",
    "Your verification code is {n}. Don't share it.",
    "Hey, are we still on for dinner tonight? Table for {n}",
    "WINNER!! You have been selected to receive a prize reward! Call 0906170{n}",
]
THREAD_PATH = "full scoring, engine thread"
POLICY = ('[tenants.bench]\nsystem_id = "bench"\npassword = "bench"\n'
          '[gateway.smpp]\nmax_rate = "100000 / 1s"\nwindow = 1000\n')


def encode_text(text: str) -> tuple[bytes, int]:
    try:
        return text.encode("gsm03.38"), 0
    except UnicodeError:
        return text.encode("utf-16-be"), 8


def make_pdus(n: int) -> list[bytes]:
    import gsm0338  # noqa: F401 - registers the codec

    rng = random.Random(3)
    out = []
    for i in range(n):
        data, coding = encode_text(rng.choice(SAMPLES).format(n=rng.randint(1000, 9999)))
        sm = P.ShortMessage(source_addr=f"1069{i % 100:03d}", destination_addr=f"138{rng.randint(0, 10**8):08d}",
                            short_message=data[:140], data_coding=coding)
        out.append(sm.encode())
    return out


class Esme(_Framed):
    """A load-generating sender: many outstanding submit_sm, latency per request."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.errors = 0
        self.refused = 0
        self.seq = 1
        self.bound = asyncio.get_event_loop().create_future()
        self.space = asyncio.Event()

    def pdu_received(self, pdu: bytes) -> None:
        _, cmd, status, seq = P.HEADER.unpack_from(pdu)
        if cmd == P.BIND_TRANSMITTER | P.RESPONSE_BIT:
            self.bound.set_result(status)
        elif cmd == P.SUBMIT_SM_RESP or cmd == P.GENERIC_NACK:
            t0 = self.sent.pop(seq, None)
            if t0 is not None:
                self.latencies.append(time.perf_counter() - t0)
            if status == P.ESME_RSUBMITFAIL:
                self.refused += 1  # the firewall's answer to a blocked or held message
            elif status:
                self.errors += 1
            self.space.set()
        elif cmd == P.ENQUIRE_LINK:
            self.write(P.empty_resp(cmd, seq))

    def submit(self, body: bytes) -> None:
        self.seq += 1
        self.sent[self.seq] = time.perf_counter()
        self.write(P.build(P.SUBMIT_SM, 0, self.seq, body))


async def connect(port: int, binds: int) -> list[Esme]:
    loop = asyncio.get_running_loop()
    esmes = []
    for _ in range(binds):
        _, esme = await loop.create_connection(Esme, "127.0.0.1", port)
        esme.write(P.build(P.BIND_TRANSMITTER, 0, 1, P.Bind("bench", "bench").encode()))
        if await asyncio.wait_for(esme.bound, 15) != 0:
            raise SystemExit("bind refused")
        esmes.append(esme)
    return esmes


async def saturate(port: int, pdus: list[bytes], binds: int, window: int, limit_s: float) -> dict:
    esmes = await connect(port, binds)
    start = time.perf_counter()
    deadline = start + limit_s

    async def feed(esme: Esme, share: list[bytes]) -> None:
        for body in share:
            while len(esme.sent) >= window:
                esme.space.clear()
                await asyncio.wait_for(esme.space.wait(), max(0.01, deadline - time.perf_counter()))
            esme.submit(body)
        while esme.sent and time.perf_counter() < deadline:
            esme.space.clear()
            await asyncio.wait_for(esme.space.wait(), max(0.01, deadline - time.perf_counter()))

    shares = [pdus[k::binds] for k in range(binds)]
    try:
        await asyncio.wait_for(asyncio.gather(*(feed(e, s) for e, s in zip(esmes, shares, strict=True))), limit_s)
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - start
    done = sum(len(e.latencies) for e in esmes)
    errors, refused = sum(e.errors for e in esmes), sum(e.refused for e in esmes)
    for e in esmes:
        e.transport.close()
    return {"done": done, "errors": errors, "refused": refused, "rate": done / elapsed}


async def paced(port: int, pdus: list[bytes], binds: int, rate: float, limit_s: float) -> dict:
    esmes = await connect(port, binds)
    start = time.perf_counter()
    sent = 0
    while sent < len(pdus) and time.perf_counter() - start < limit_s:
        due = min(len(pdus), int((time.perf_counter() - start) * rate))
        while sent < due:
            esmes[sent % binds].submit(pdus[sent])
            sent += 1
        await asyncio.sleep(0.0005)
    end = time.perf_counter() + 5
    while any(e.sent for e in esmes) and time.perf_counter() < end:
        await asyncio.sleep(0.005)
    lat = sorted(x for e in esmes for x in e.latencies)
    errors, refused = sum(e.errors for e in esmes), sum(e.refused for e in esmes)
    for e in esmes:
        e.transport.close()
    if not lat:
        return {"p50": float("nan"), "p99": float("nan"), "done": 0, "errors": errors, "refused": refused}
    return {"p50": lat[len(lat) // 2] * 1000, "p99": lat[int(len(lat) * 0.99) - 1] * 1000,
            "mean": statistics.fmean(lat) * 1000, "done": len(lat), "errors": errors, "refused": refused,
            "achieved": len(lat) / (time.perf_counter() - start)}


def engine_alone(pdus: list[bytes], policy_path: Path, batch: int = 256) -> float:
    """engine.check on the same messages in this process, batches of ``batch``: the ceiling for one worker."""
    from skyshield.assembly import build_engine
    from skyshield.events import Channel, Message
    from skyshield.gateway.smpp_text import decode, split_udh
    from skyshield.policy import Policy

    engine = build_engine(Policy.load(policy_path))
    messages = []
    for body in pdus:
        sm = P.parse_short_message(body)
        _, data = split_udh(sm)
        messages.append(Message(text=decode(data, sm.data_coding), sender=sm.source_addr,
                                recipient=sm.destination_addr, channel=Channel.SMPP, tenant="bench"))
    engine.check(messages[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(messages), batch):
        engine.check(messages[i:i + batch])
    return len(messages) / (time.perf_counter() - start)


def settle(proc: subprocess.Popen | None, idle: float = 0.3, limit: float = 30.0) -> None:
    """Wait until the firewall has no work left from the saturation phase (its write-behind records): the
    latency phase measures the offered rate, not the tail of the previous phase's backlog."""
    if proc is None:
        return
    deadline = time.time() + limit
    last = cpu_seconds(proc.pid)
    while time.time() < deadline:
        time.sleep(idle)
        now = cpu_seconds(proc.pid)
        if now - last < 0.05 * idle:  # under 5% of a core: idle
            return
        last = now


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (Linux /proc): less sensitive to machine load."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except (OSError, IndexError, ValueError):
        pass
    return total


def _own_cpu() -> float:
    """User + system CPU seconds of this process (the load generator)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited early: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on {port} after {timeout}s")


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="submit_sm per phase")
    ap.add_argument("--rate", type=float, default=5000, help="offered rate for the latency phase")
    ap.add_argument("--binds", type=int, default=4)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--limit", type=float, default=60, help="seconds at most per phase")
    ap.add_argument("--no-record", action="store_true", help="do not write verdicts to the store (SQLite)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a [gateway.smpp] policy line for the firewall, e.g. --set batch_wait_ms=0 (repeatable)")
    ap.add_argument("--workers", type=int, default=1, help="firewall worker processes (skyshield smpp --workers)")
    ap.add_argument("--no-thread-path", action="store_true",
                    help="skip the engine-on-a-thread comparison path (engine_process = false)")
    args = ap.parse_args()

    pdus = make_pdus(args.n)
    paced_pdus = pdus[: int(min(args.n, args.rate * 4))]  # about 4 s of paced traffic
    tmp = Path(tempfile.mkdtemp(prefix="skyshield-bench-"))
    extra = "".join(f"{line.partition('=')[0].strip()} = {line.partition('=')[2].strip()}\n" for line in args.set)
    (tmp / "policy.toml").write_text(POLICY + extra)
    (tmp / "policy-thread.toml").write_text(POLICY + "engine_process = false\n" + extra)
    env = dict(os.environ, SKYSHIELD_DB=f"sqlite:///{tmp / 'bench.db'}", PYTHONUNBUFFERED="1")
    exe = [sys.executable, "-m", "skyshield.cli", "--policy"]
    sim_port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "skyshield.gateway.smsc_sim", "--listen", f"127.0.0.1:{sim_port}"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = {}
    try:
        wait_port(sim_port, sim)
        record = [] if not args.no_record else ["--no-record"]
        paths = [("direct to SMSC", None, ""), ("pass-through relay", ["--no-scoring"], "policy.toml"),
                 ("firewall, full scoring", record, "policy.toml")]
        if not args.no_thread_path:
            paths.append((THREAD_PATH, record, "policy-thread.toml"))
        for number, (name, flags, policy) in enumerate(paths):
            proc = None
            # Each firewall starts on an empty database: the behaviour engine and the consent ledger's send
            # counts must not carry one path's traffic into the next path's verdicts.
            path_env = dict(env, SKYSHIELD_DB=f"sqlite:///{tmp / f'bench-{number}.db'}")
            port = sim_port
            if flags is not None:
                port = free_port()
                proc = subprocess.Popen(exe + [str(tmp / policy), "smpp", "--listen", f"127.0.0.1:{port}", "--upstream",
                                               f"127.0.0.1:{sim_port}", "--log-level", "WARNING",
                                               "--workers", str(args.workers), *flags],
                                        env=path_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                wait_port(port, proc)
                asyncio.run(saturate(port, pdus[:500], 1, args.window, args.limit))  # warm-up (model load)
            cpu_before = cpu_seconds(proc.pid) if proc is not None else 0.0
            sat = asyncio.run(saturate(port, pdus, args.binds, args.window, args.limit))
            sat["cpu_us"] = (cpu_seconds(proc.pid) - cpu_before) / max(sat["done"], 1) * 1e6 if proc else 0.0
            settle(proc)
            # CPU of every process during the paced phase: on a 2-core machine the load generator and the SMS
            # centre simulator share the cores with the firewall, and its latency depends on what is left.
            cpu0 = (_own_cpu(), cpu_seconds(sim.pid), cpu_seconds(proc.pid) if proc is not None else 0.0)
            lat = asyncio.run(paced(port, paced_pdus, args.binds, args.rate, args.limit))
            cpu1 = (_own_cpu(), cpu_seconds(sim.pid), cpu_seconds(proc.pid) if proc is not None else 0.0)
            lat["cpu_us"] = [(b - a) / max(len(paced_pdus), 1) * 1e6 for a, b in zip(cpu0, cpu1, strict=True)]
            results[name] = (sat, lat)
            if proc is not None:
                tail = stop(proc).strip().splitlines()
                results[name] += ("\n    ".join(t for t in tail if t.startswith(("engine:", "decisions:"))),)
                problems = [line for line in tail if "ERROR" in line or "Error" in line]
                if problems:
                    print(f"{name}: the firewall logged {len(problems)} errors, first: {problems[:3]}", file=sys.stderr)
    finally:
        stop(sim)
    os.environ["SKYSHIELD_DB"] = f"sqlite:///{tmp / 'engine-alone.db'}"
    alone = engine_alone(pdus[: min(len(pdus), 10000)], tmp / "policy.toml")

    print(f"SMPP firewall on loopback, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), "
          f"{args.workers} firewall worker(s), {args.n} submit_sm per phase, {args.binds} binds, window {args.window}; "
          f"latency phase at {args.rate:g}/s offered")
    print(f"{'path':26} {'max submit_sm/s':>15} {'CPU µs/msg':>10} {'p50 ms':>8} {'p99 ms':>8} {'refused':>8} "
          f"{'errors':>7}")
    for name, res in results.items():
        sat, lat = res[0], res[1]
        cpu = f"{sat['cpu_us']:10.0f}" if sat.get("cpu_us") else f"{'-':>10}"
        print(f"{name:26} {sat['rate']:15,.0f} {cpu} {lat['p50']:8.2f} {lat['p99']:8.2f} "
              f"{sat['refused'] + lat['refused']:8d} {sat['errors'] + lat['errors']:7d}")
    direct = results["direct to SMSC"][1]
    full = results["firewall, full scoring"]
    passthrough = results["pass-through relay"]
    print(f"engine.check alone in one process (batches of 256, same messages): {alone:,.0f} msg/s")
    print(f"firewall CPU per message (user+system, all workers): pass-through {passthrough[0]['cpu_us']:.0f} µs, "
          f"full scoring {full[0]['cpu_us']:.0f} µs -> one core sustains about "
          f"{1e6 / max(full[0]['cpu_us'], 1):,.0f} submit_sm/s with full scoring")
    print(f"full scoring / pass-through throughput: {full[0]['rate'] / passthrough[0]['rate']:.2f}; "
          f"full scoring / engine alone: {full[0]['rate'] / alone:.2f}")
    print(f"added latency by the firewall at {args.rate:g}/s: p50 {full[1]['p50'] - direct['p50']:.2f} ms, "
          f"p99 {full[1]['p99'] - direct['p99']:.2f} ms (pass-through adds p99 "
          f"{passthrough[1]['p99'] - direct['p99']:.2f} ms)")
    print(f"CPU µs per message during the {args.rate:g}/s phase (load generator / SMSC simulator / firewall with its "
          f"engine process; cores busy at that rate):")
    for name, res in results.items():
        gen, sim_us, fw = res[1].get("cpu_us", [0.0, 0.0, 0.0])
        cores = (gen + sim_us + fw) * args.rate / 1e6
        print(f"  {name:26} {gen:5.0f} / {sim_us:4.0f} / {fw:5.0f}  = {cores:.2f} cores")
    if THREAD_PATH in results:
        thread = results[THREAD_PATH]
        print(f"engine in its own process / on a thread: throughput {full[0]['rate'] / thread[0]['rate']:.2f}x, "
              f"p50 {full[1]['p50']:.2f} vs {thread[1]['p50']:.2f} ms, p99 {full[1]['p99']:.2f} vs "
              f"{thread[1]['p99']:.2f} ms at {args.rate:g}/s")
    for name in ("pass-through relay", "firewall, full scoring", THREAD_PATH):
        if name in results and len(results[name]) > 2:
            print(f"{name}: {results[name][2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
