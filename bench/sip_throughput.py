"""SIP screening proxy: calls per second and added call-setup time, beside a pass-through relay and sipp direct.

sipp places calls (its built-in ``uac``: INVITE, 200, ACK, BYE, with a branch that ACKs a 503) to a sipp
``uas`` on 127.0.0.1, at each offered rate, along three paths measured in the same run:

- direct to the callee (sipp alone: what the machine does without a proxy);
- through ``skyshield sip --no-screening`` (the same proxy code relaying, nothing screened or recorded: the
  baseline the screening proxy is compared to);
- through ``skyshield sip`` (every INVITE screened by the behaviour engine and recorded in a SQLite store).

For each it prints completed calls per second (calls answered 200, over the time until the last one was
answered, so a few calls left to time out do not hide the rate), INVITE→200 p50/p99 (sipp measures whole
milliseconds), calls refused 503 (overload) and calls that failed. Offer one rate the proxy sustains and one
beyond it (``--rates 500,2000``) to see how it degrades. Bounded: ``--seconds`` of traffic per phase,
``--limit`` seconds at most.

    .venv/bin/python bench/sip_throughput.py [--rates 500,2000] [--seconds 6]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFUSED_BRANCH = """  <recv response="503" optional="true" next="busy">
  </recv>
"""
BUSY_ACK = """  <nop next="done"/>
  <label id="busy"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <label id="done"/>
"""


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


def write_scenario(sipp: str, cwd: Path, prefix: str, calls: int) -> list[str]:
    """sipp's own uac scenario with a different calling number per call (one caller making thousands of calls
    a second is exactly what the behaviour engine is meant to stop) and a branch for 503: ACK it, end the call."""
    uac = subprocess.run([sipp, "-sd", "uac"], capture_output=True, text=True).stdout  # exits 99 after the dump
    if "<scenario" not in uac or '<recv response="200" rtd="true">' not in uac:
        raise SystemExit("sipp -sd uac printed no scenario (or not the one this bench knows)")
    uac = uac.replace("sipp <sip:sipp@", "<sip:[field0]@").replace("sip:sipp@", "sip:[field0]@")
    uac = uac.replace('  <recv response="200" rtd="true">', REFUSED_BRANCH + '  <recv response="200" rtd="true">', 1)
    uac = uac.replace("  <!-- definition of the response time repartition table", BUSY_ACK
                      + "  <!-- definition of the response time repartition table", 1)
    if 'label id="busy"' not in uac:
        raise SystemExit("could not add the 503 branch to sipp's uac scenario")
    (cwd / "uac.xml").write_text(uac)
    (cwd / "callers.csv").write_text("SEQUENTIAL\n" + "".join(f"+86{prefix}{i:08d}\n" for i in range(calls)))
    return ["-sf", "uac.xml", "-inf", "callers.csv"]


def last_stats(cwd: Path) -> dict[str, str]:
    """The final line of sipp's ``-trace_stat`` file, by column name."""
    for path in glob.glob(str(cwd / "uac_*_.csv")):
        lines = Path(path).read_text().splitlines()
        if len(lines) >= 2:
            return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
    return {}


def run_calls(sipp: str, target: str, uas_port: int, calls: int, rate: int, limit: float, cwd: Path,
              prefix: str) -> dict:
    for old in glob.glob(str(cwd / "*.csv")):
        os.remove(old)
    common = ["-i", "127.0.0.1", "-nostdin", "-timeout", str(int(limit)), "-timeout_error"]
    uas = subprocess.Popen([sipp, "-sn", "uas", "-p", str(uas_port), *common], cwd=cwd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    uac = subprocess.run([sipp, *write_scenario(sipp, cwd, prefix, calls), target, "-p", str(free_udp_port()),
                          "-m", str(calls), "-r", str(rate), "-l", "5000", "-s", "10086", "-trace_rtt", "-rtt_freq",
                          "1", "-trace_stat", "-fd", "3600", *common], cwd=cwd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=limit + 10)
    uas.terminate()
    try:
        uas.wait(10)
    except subprocess.TimeoutExpired:
        uas.kill()
        uas.wait()
    answered = []  # (ms since sipp started, INVITE→200 ms)
    for path in glob.glob(str(cwd / "*_rtt.csv")):
        for line in Path(path).read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                answered.append((float(parts[0]), float(parts[1])))
    rtts = sorted(r for _, r in answered)
    pct = (lambda q: rtts[min(len(rtts) - 1, int(len(rtts) * q))]) if rtts else (lambda q: float("nan"))
    span = max((t for t, _ in answered), default=0.0) / 1000 or float("nan")
    stats = last_stats(cwd)
    ended = int(stats.get("SuccessfulCall(C)", 0) or 0)
    return {"calls": len(rtts), "cps": len(rtts) / span, "p50": pct(0.5), "p99": pct(0.99),
            "busy": max(0, ended - len(rtts)), "failed": int(stats.get("FailedCall(C)", 0) or 0),
            "retrans": int(stats.get("Retransmissions(C)", 0) or 0), "rc": uac.returncode}


def through_proxy(sipp: str, args: argparse.Namespace, rate: int, screening: bool, tmp: Path, prefix: str) -> dict:
    uas_port, proxy_port = free_udp_port(), free_udp_port()
    db = tmp / f"sip-{rate}.db"
    env = dict(os.environ, PYTHONUNBUFFERED="1", SKYSHIELD_DB=f"sqlite:///{db}",
               SKYSHIELD_KEY_FILE=str(tmp / "bench.key"))
    cmd = [sys.executable, "-m", "skyshield.cli", "sip", "--listen", f"127.0.0.1:{proxy_port}",
           "--next-hop", f"127.0.0.1:{uas_port}", "--log-level", "WARNING"]
    proxy = subprocess.Popen(cmd + ([] if screening else ["--no-screening"]), env=env, cwd=tmp,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)  # start-up: imports and the screener's model
        if proxy.poll() is not None:
            raise SystemExit(f"proxy exited: {proxy.stdout.read()}")
        cpu_before = cpu_seconds(proxy.pid)
        result = run_calls(sipp, f"127.0.0.1:{proxy_port}", uas_port, args.seconds * rate, rate, args.limit, tmp,
                           prefix)
        result["cpu_us"] = (cpu_seconds(proxy.pid) - cpu_before) / max(result["calls"], 1) * 1e6
    finally:
        proxy.terminate()
        out, _ = proxy.communicate(timeout=30)
    result["decisions"] = next((line for line in out.splitlines() if line.startswith("decisions:")), "")
    result["unscreened"] = screening and "unavailable" in out
    if screening and db.exists():
        with sqlite3.connect(db) as conn:
            result["stored"] = conn.execute("SELECT COUNT(*) FROM verdicts WHERE channel = 'call'").fetchone()[0]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="500,2000", help="offered calls per second, comma-separated")
    ap.add_argument("--seconds", type=int, default=6, help="seconds of calls per phase (calls = rate x seconds)")
    ap.add_argument("--limit", type=float, default=60)
    args = ap.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp not installed (Debian package sip-tester): nothing measured")
        return 0
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="skyshield-sipbench-"))
    print(f"SIP proxy on loopback, {os.cpu_count()} cores (shared with sipp caller and callee), {args.seconds} s of "
          f"calls per phase, load average {os.getloadavg()[0]:.1f} at start")
    head = (f"{'offered/s':>9} {'path':24} {'calls/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'503':>6} "
            f"{'failed':>6} {'retrans':>7} {'CPU µs/call':>11}")
    print(head)
    notes = []
    for n, rate in enumerate(rates):
        uas_port = free_udp_port()
        direct = run_calls(sipp, f"127.0.0.1:{uas_port}", uas_port, args.seconds * rate, rate, args.limit, tmp,
                           f"13{n}")
        relay = through_proxy(sipp, args, rate, False, tmp, f"15{n}")
        screened = through_proxy(sipp, args, rate, True, tmp, f"17{n}")
        for name, r, base in (("direct to callee", direct, None), ("pass-through relay", relay, None),
                              ("screening + recording", screened, relay)):
            ratio = f"{r['cps'] / base['cps']:.2f}" if base else ""
            cpu = f"{r['cpu_us']:.0f}" if "cpu_us" in r else ""
            print(f"{rate:9d} {name:24} {r['cps']:8.0f} {ratio:>6} {r['p50']:7.0f} {r['p99']:7.0f} {r['busy']:6d} "
                  f"{r['failed']:6d} {r['retrans']:7d} {cpu:>11}")
        added = (screened["p50"] - relay["p50"], screened["p99"] - relay["p99"])
        notes.append(f"at {rate}/s: screening adds p50 {added[0]:+.0f} ms, p99 {added[1]:+.0f} ms over the relay; "
                     f"relay adds p50 {relay['p50'] - direct['p50']:+.0f} ms, p99 {relay['p99'] - direct['p99']:+.0f} "
                     f"ms over direct; {screened.get('stored', 0)} call verdicts stored; proxy {screened['decisions']}"
                     + (" (call screener unavailable: calls passed unscreened)" if screened["unscreened"] else ""))
    for line in notes:
        print(line)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
