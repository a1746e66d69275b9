"""SIP screening proxy: calls per second and call-setup time through the proxy vs straight to the callee.

sipp places calls (built-in ``uac``: INVITE, 200, ACK, BYE) to a sipp ``uas`` on 127.0.0.1, once
directly and once through ``skyshield sip`` (which screens every INVITE). For each path it prints
completed calls per second at the offered rate and the INVITE→200 time p50/p99 (sipp measures it in
whole milliseconds). Bounded: ``--calls`` calls per phase, ``--limit`` seconds at most.

    .venv/bin/python bench/sip_throughput.py [--calls 3000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc): less sensitive to machine load than wall time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_scenario(sipp: str, calls: int, cwd: Path) -> list[str]:
    """sipp's own uac scenario, with a different calling number per call (one caller making thousands of
    calls a second is exactly what the behaviour engine is meant to stop)."""
    uac = subprocess.run([sipp, "-sd", "uac"], capture_output=True, text=True).stdout  # exits 99 after the dump
    if "<scenario" not in uac:
        raise SystemExit("sipp -sd uac printed no scenario")
    (cwd / "uac.xml").write_text(uac.replace("sipp <sip:sipp@", "<sip:[field0]@").replace("sip:sipp@", "sip:[field0]@"))
    (cwd / "callers.csv").write_text("SEQUENTIAL\n" + "".join(f"+86138{i:08d}\n" for i in range(calls)))
    return ["-sf", "uac.xml", "-inf", "callers.csv"]


def run_calls(sipp: str, target: str, uas_port: int, calls: int, rate: int, limit: float, cwd: Path) -> dict:
    for old in glob.glob(str(cwd / "*_rtt.csv")):
        os.remove(old)
    common = ["-i", "127.0.0.1", "-nostdin", "-timeout", str(int(limit)), "-timeout_error"]
    uas = subprocess.Popen([sipp, "-sn", "uas", "-p", str(uas_port), "-m", str(calls), *common], cwd=cwd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    start = time.perf_counter()
    uac = subprocess.run([sipp, *write_scenario(sipp, calls, cwd), target, "-p", str(free_udp_port()),
                          "-m", str(calls), "-r", str(rate),
                          "-l", "2000", "-s", "10086", "-trace_rtt", "-rtt_freq", "1", *common], cwd=cwd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=limit + 10)
    elapsed = time.perf_counter() - start
    try:
        uas.wait(10)
    except subprocess.TimeoutExpired:
        uas.kill()
        uas.wait()
    rtts = []
    for path in glob.glob(str(cwd / "*_rtt.csv")):
        for line in Path(path).read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                rtts.append(float(parts[1]))
    rtts.sort()
    pct = (lambda q: rtts[min(len(rtts) - 1, int(len(rtts) * q))]) if rtts else (lambda q: float("nan"))
    return {"ok": uac.returncode == 0, "calls": len(rtts), "cps": len(rtts) / elapsed, "p50": pct(0.5),
            "p99": pct(0.99)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rate", type=int, default=1000, help="offered calls per second")
    ap.add_argument("--limit", type=float, default=60)
    args = ap.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp not installed (Debian package sip-tester): nothing measured")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="skyshield-sipbench-"))
    uas_port, proxy_port = free_udp_port(), free_udp_port()
    direct = run_calls(sipp, f"127.0.0.1:{uas_port}", uas_port, args.calls, args.rate, args.limit, tmp)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proxy = subprocess.Popen([sys.executable, "-m", "skyshield.cli", "sip", "--listen", f"127.0.0.1:{proxy_port}",
                              "--next-hop", f"127.0.0.1:{uas_port}", "--log-level", "WARNING"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)  # start-up: imports and the screener's model
        if proxy.poll() is not None:
            raise SystemExit(f"proxy exited: {proxy.stdout.read()}")
        cpu_before = cpu_seconds(proxy.pid)
        via = run_calls(sipp, f"127.0.0.1:{proxy_port}", uas_port, args.calls, args.rate, args.limit, tmp)
        cpu_per_call = (cpu_seconds(proxy.pid) - cpu_before) / max(via["calls"], 1) * 1e6
    finally:
        proxy.terminate()
        out, _ = proxy.communicate(timeout=15)
    screener_note = "call screener unavailable: calls passed unscreened" if "unavailable" in out else "calls screened"
    print(f"SIP proxy on loopback, {os.cpu_count()} cores, {args.calls} calls per path offered at {args.rate}/s "
          f"({screener_note})")
    print(f"{'path':22} {'calls/s':>8} {'INVITE→200 p50 ms':>18} {'p99 ms':>7} {'all ok':>7}")
    for name, r in (("direct to callee", direct), ("through skyshield sip", via)):
        print(f"{name:22} {r['cps']:8.0f} {r['p50']:18.0f} {r['p99']:7.0f} {str(r['ok']):>7}")
    print(f"through proxy / direct calls per second: {via['cps'] / direct['cps']:.2f}")
    print(f"proxy CPU per completed call (INVITE, 100/180/200, ACK, BYE, 200; screening included): "
          f"{cpu_per_call:.0f} µs -> one core sustains about {1e6 / max(cpu_per_call, 1):,.0f} calls/s "
          f"(load average {os.getloadavg()[0]:.1f})")
    tail = [line for line in out.splitlines() if line.startswith("decisions:")]
    if tail:
        print("proxy " + tail[-1])
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
