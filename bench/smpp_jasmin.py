"""The Jasmin SMS gateway as a peer: the same load through Jasmin, without and with a content interceptor.

Jasmin is a store-and-forward gateway (RabbitMQ + Redis): it answers submit_sm once the message is
queued, and delivers later. So its "accepted" rate is not the same thing as skyshield's, which answers
after judging and (for delivered messages) after the SMS centre answered; it is the reference point an
operator would compare with. One run measures, on the same messages to the same SMSC simulator:

1. Jasmin with no content screening (jasmind only; the MT route goes straight to the SMSC connector);
2. Jasmin with a one-line MT interceptor (``interceptord.py`` + a ``DefaultInterceptor`` added in jcli)
   that refuses any message whose UCS-2 text contains 安全账户 ("safe account", the fraud keyword in the
   bench traffic) with ``smpp_status = 0x45`` (ESME_RSUBMITFAIL) and lets the rest through;
3. skyshield's firewall (full scoring) on the same load, for the ratios (``--no-skyshield`` skips it).

For each it prints accepted submit_sm/s with many outstanding requests, p50/p99 latency at a paced rate
(``--rate``, lowered to half of the measured maximum where that is lower, so the queue does not just
grow), CPU per message, how many fraud-keyword messages were refused with 0x45, and how many of them
reached the SMSC simulator. Needs Jasmin in its own virtualenv (it pins Twisted and friends):

    python3.11 -m venv /tmp/jasvenv && /tmp/jasvenv/bin/pip install jasmin==0.11.1
    .venv/bin/python bench/smpp_jasmin.py [--jasmin-venv /tmp/jasvenv] [--n 3000] [--n-interceptor 1000]

RabbitMQ (127.0.0.1:5672, guest/guest) and Redis (127.0.0.1:6379) must be running; the script uses
Redis database 7, and deletes the queues and exchanges Jasmin created when it is done. Only 127.0.0.1;
every phase is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smpp_throughput as b  # noqa: E402

P = b.P
KEYWORD = "安全账户"
KEY_UCS2 = KEYWORD.encode("utf-16-be")
# The whole interceptor: Jasmin evaluates it with `routable` bound; setting smpp_status refuses the message.
# (ASCII escapes for the keyword, so the file is the same whatever the locale of the jcli reading it.)
INTERCEPTOR = ("smpp_status = 0x45 if '\\u5b89\\u5168\\u8d26\\u6237' in routable.pdu.params['short_message']"
               ".decode('utf-16-be', 'ignore') else None\n")

JCLI = r'''
import sys, telnetlib, re
t = telnetlib.Telnet("127.0.0.1", int(sys.argv[1]), 10)
t.read_until(b"Username: ", 10); t.write(b"jcliadmin\n")
t.read_until(b"Password: ", 10); t.write(b"jclipwd\n")
t.read_until(b"jcli : ", 10)
out = b""
for c in sys.argv[2:]:
    t.write(c.encode() + b"\n")
    out += t.expect([re.compile(rb"jcli : $"), re.compile(rb"> $")], 15)[2]
t.write(b"quit\n")
sys.stdout.write(out.decode("utf-8", "replace"))
'''
CLEANUP = r'''
import amqp
c = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest"); c.connect(); ch = c.channel()
for q in ("submit.sm.smsc", "RouterPB_deliver_sm_all", "RouterPB_bill_request_submit_sm_resp_all"):
    try: ch.queue_delete(q)
    except Exception: ch = c.channel()
for e in ("billing", "messaging"):
    try: ch.exchange_delete(e)
    except Exception: ch = c.channel()
c.close()
'''
# The repo's SMSC simulator, plus a count of what reached it (all submit_sm, and those carrying the keyword),
# written to a file every 0.1 s. The keyword test is a byte search on the UCS-2 form of the keyword.
SIM = r'''
import asyncio, sys
from pathlib import Path
from skyshield.gateway import smpp_pdu as P, smsc_sim as S
KEY, out, counts = "安全账户".encode("utf-16-be"), Path(sys.argv[2]), [0, 0]
class Session(S.SmscSession):
    def pdu_received(self, pdu):
        if P.HEADER.unpack_from(pdu)[1] == P.SUBMIT_SM:
            counts[0] += 1
            counts[1] += KEY in pdu
        super().pdu_received(pdu)
async def main():
    smsc = S.SmscSimulator(keep=False)
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: Session(smsc), "127.0.0.1", int(sys.argv[1]))
    while True:
        out.write_text(f"{counts[0]} {counts[1]}"); await asyncio.sleep(0.1)
asyncio.run(main())
'''


class TrackingEsme(b.Esme):
    """The bench's load generator, also counting answers to the fraud-keyword messages by status."""

    tally: Counter = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.fraud_seqs: set[int] = set()

    def submit(self, body: bytes) -> None:
        super().submit(body)
        if KEY_UCS2 in body:
            self.fraud_seqs.add(self.seq)

    def pdu_received(self, pdu: bytes) -> None:
        _, cmd, status, seq = P.HEADER.unpack_from(pdu)
        if (cmd == P.SUBMIT_SM_RESP or cmd == P.GENERIC_NACK) and seq in self.sent:
            kind = "fraud" if seq in self.fraud_seqs else "other"
            self.fraud_seqs.discard(seq)
            TrackingEsme.tally[kind, "ok" if status == 0 else "0x45" if status == 0x45 else "error"] += 1
        super().pdu_received(pdu)


b.Esme = TrackingEsme  # saturate() and paced() connect with b.Esme


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listening on {port}")


def sim_counts(path: Path) -> tuple[int, int]:
    try:
        total, fraud = path.read_text().split()
        return int(total), int(fraud)
    except (OSError, ValueError):
        return 0, 0


def drain(path: Path, limit_s: float = 90) -> tuple[int, int]:
    """Wait until the SMSC simulator's count stops growing (Jasmin delivers after it answered)."""
    last, since, deadline = sim_counts(path), time.time(), time.time() + limit_s
    while time.time() < deadline and time.time() - since < 2:
        time.sleep(0.25)
        now = sim_counts(path)
        if now != last:
            last, since = now, time.time()
    return last


def measure(name: str, port: int, pdus: list[bytes], rate: float, pids: list[int], counts: Path,
            limit_s: float) -> dict:
    """Saturation then paced latency on one peer; what reached the SMSC simulator; CPU of ``pids``."""
    TrackingEsme.tally.clear()
    before = sim_counts(counts)
    cpu0 = [b.cpu_seconds(pid) for pid in pids]
    sat = asyncio.run(b.saturate(port, pdus, 4, 64, limit_s))
    cpu = [(b.cpu_seconds(pid) - c) / max(sat["done"], 1) * 1e6 for pid, c in zip(pids, cpu0, strict=True)]
    paced_rate = min(rate, sat["rate"] / 2)
    lat = asyncio.run(b.paced(port, pdus[: max(200, int(paced_rate * 4))], 4, paced_rate, limit_s))
    after = drain(counts)
    tally = dict(TrackingEsme.tally)
    return {"name": name, "sat": sat, "lat": lat, "cpu": cpu, "paced_rate": paced_rate, "tally": tally,
            "reached": (after[0] - before[0], after[1] - before[1])}


def report(res: dict) -> str:
    t = res["tally"]
    fraud = sum(v for (k, _), v in t.items() if k == "fraud")
    return (f"{res['name']:34} {res['sat']['rate']:10,.0f} {res['lat']['p50']:8.2f} {res['lat']['p99']:8.2f} "
            f"{res['paced_rate']:8,.0f} {'/'.join(f'{c:.0f}' for c in res['cpu']):>12} "
            f"{str(t.get(('fraud', '0x45'), 0)) + '/' + str(fraud):>12} {res['reached'][1]:11d} "
            f"{t.get(('other', '0x45'), 0):11d} {sum(v for (_, s), v in t.items() if s == 'error'):7d}")


def start_skyshield(sim_port: int, root: Path) -> tuple[subprocess.Popen, int]:
    (root / "policy.toml").write_text(b.POLICY)
    env = dict(os.environ, SKYSHIELD_DB=f"sqlite:///{root / 'skyshield.db'}", PYTHONUNBUFFERED="1")
    port = b.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "skyshield.cli", "--policy", str(root / "policy.toml"), "smpp",
                             "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{sim_port}",
                             "--log-level", "WARNING"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    b.wait_port(port, proc)
    return proc, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jasmin-venv", default=os.environ.get("JASMIN_VENV", "/tmp/jasvenv"),
                    help="virtualenv with jasmin installed (bin/jasmind.py); default $JASMIN_VENV or /tmp/jasvenv")
    ap.add_argument("--n", type=int, default=5000, help="submit_sm for the saturation phase without interceptor")
    ap.add_argument("--n-interceptor", type=int, default=1000, help="submit_sm for the phase with the interceptor")
    ap.add_argument("--rate", type=float, default=1000, help="offered rate of the latency phase (at most half the max)")
    ap.add_argument("--limit", type=float, default=120, help="seconds at most per phase")
    ap.add_argument("--no-skyshield", action="store_true", help="do not measure skyshield's firewall for the ratios")
    args = ap.parse_args()
    venv = Path(args.jasmin_venv)
    jasmind, interceptord, jpython = (venv / "bin" / f for f in ("jasmind.py", "interceptord.py", "python"))
    if not jasmind.exists():
        print(f"no {jasmind}: install Jasmin first (see the module docstring); nothing measured")
        return 0
    for port, name in ((5672, "RabbitMQ"), (6379, "Redis")):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            print(f"{name} is not running on 127.0.0.1:{port}; nothing measured")
            return 0
    spec = next(venv.glob("lib/python*/site-packages/txamqp/specs/standard/amqp0-9-1.stripped.xml"))
    root = Path(tempfile.mkdtemp(prefix="skyshield-jasmin-"))
    (root / "etc/jasmin/store").mkdir(parents=True)
    (root / "var/log/jasmin").mkdir(parents=True)
    smpp_port, jcli_port, http_port, sim_port, icpt_port = (b.free_port() for _ in range(5))
    (root / "etc/jasmin/jasmin.cfg").write_text(
        f"[smpp-server]\nbind = 127.0.0.1\nport = {smpp_port}\nlog_level = WARNING\n"
        f"[jcli]\nbind = 127.0.0.1\nport = {jcli_port}\n[http-api]\nbind = 127.0.0.1\nport = {http_port}\n"
        f"[amqp-broker]\nhost = 127.0.0.1\nport = 5672\nspec = {spec}\n"
        "[redis-client]\nhost = 127.0.0.1\nport = 6379\ndbid = 7\n"
        f"[interceptor-client]\nhost = 127.0.0.1\nport = {icpt_port}\n")
    (root / "etc/jasmin/interceptor.cfg").write_text(
        f"[interceptor]\nbind = 127.0.0.1\nport = {icpt_port}\nlog_level = WARNING\n")
    script = root / "etc/jasmin/refuse_keyword.py"
    script.write_text(INTERCEPTOR)
    counts = root / "smsc.counts"
    env = dict(os.environ, ROOT_PATH=str(root))
    sim = subprocess.Popen([sys.executable, "-c", SIM, str(sim_port), str(counts)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logs = [(root / f).open("w") for f in ("interceptord.out", "jasmind.out")]
    icpt = subprocess.Popen([str(jpython), str(interceptord), "-c", str(root / "etc/jasmin/interceptor.cfg")],
                            env=env, stdout=logs[0], stderr=subprocess.STDOUT)
    jas = None
    results, pdus, skyshield_log = [], b.make_pdus(args.n), ""
    sent_fraud = sum(KEY_UCS2 in p for p in pdus)
    try:
        wait_port(sim_port)
        try:
            wait_port(icpt_port, 60)
        except SystemExit:
            raise SystemExit(f"interceptord did not start: {(root / 'interceptord.out').read_text()[-1500:]}") from None
        jas = subprocess.Popen([str(jpython), str(jasmind), "-c", str(root / "etc/jasmin/jasmin.cfg"),
                                "--enable-interceptor-client"], env=env, stdout=logs[1], stderr=subprocess.STDOUT)
        try:
            wait_port(jcli_port, 60)
        except SystemExit:
            raise SystemExit(f"Jasmin did not start: {(root / 'jasmind.out').read_text()[-1500:]}") from None
        jcli = [str(jpython), "-W", "ignore", "-c", JCLI, str(jcli_port)]
        subprocess.run(jcli + ["group -a", "gid g1", "ok",
                               "user -a", "username bench", "password bench", "uid u1", "gid g1", "ok",
                               "smppccm -a", "cid smsc", "host 127.0.0.1", f"port {sim_port}", "username sim",
                               "password sim", "submit_throughput 100000", "ok", "smppccm -1 smsc",
                               "mtrouter -a", "type defaultroute", "connector smppc(smsc)", "rate 0.00", "ok"],
                       check=True, timeout=60, capture_output=True)
        time.sleep(2)  # the connector binds to the simulator
        results.append(measure("Jasmin, no content screening", smpp_port, pdus, args.rate, [jas.pid], counts,
                               args.limit))
        out = subprocess.run(jcli + ["mtinterceptor -a", "type DefaultInterceptor", f"script python3({script})",
                                     "ok", "mtinterceptor -l"], check=True, timeout=60, capture_output=True,
                             text=True).stdout
        if "DefaultInterceptor" not in out.rpartition("mtinterceptor -l")[2]:
            raise SystemExit(f"jcli did not add the interceptor:\n{out[-1500:]}")
        results.append(measure("Jasmin + one-line interceptor", smpp_port, pdus[: args.n_interceptor], args.rate,
                               [jas.pid, icpt.pid], counts, args.limit))
    finally:
        for proc in (jas, icpt):
            if proc is not None:
                b.stop(proc)
        for f in logs:
            f.close()
        subprocess.run([str(jpython), "-c", CLEANUP], timeout=30, check=False)
        subprocess.run(["redis-cli", "-n", "7", "flushdb"], capture_output=True, check=False)
        if args.no_skyshield or len(results) < 2:
            b.stop(sim)
    if not args.no_skyshield:
        try:
            proc, port = start_skyshield(sim_port, root)
            asyncio.run(b.saturate(port, pdus[:500], 1, 64, args.limit))  # warm-up (model load)
            results.append(measure("skyshield firewall, full scoring", port, pdus, args.rate, [proc.pid], counts,
                                   args.limit))
            skyshield_log = b.stop(proc)
        finally:
            b.stop(sim)
    # jcli's telnet option negotiation leaves harmless OptionRefused tracebacks in jasmind.out: not counted.
    lines = (root / "jasmind.out").read_text().splitlines() + skyshield_log.splitlines()
    problems = sum("Traceback" in line for line in lines) - sum("OptionRefused" in line for line in lines)
    print(f"Same load, 4 binds, window 64, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}); "
          f"{args.n} submit_sm ({sent_fraud} with {KEYWORD}), {args.n_interceptor} with the interceptor; "
          f"latency paced at --rate {args.rate:g}/s or half the max")
    print(f"{'path':34} {'accepted/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'paced/s':>8} {'CPU µs/msg':>12} "
          f"{'fraud 0x45':>12} {'fraud@SMSC':>11} {'other 0x45':>11} {'errors':>7}")
    for res in results:
        print(report(res))
    print("CPU: jasmind (and /interceptord), or the firewall process; RabbitMQ and Redis not counted. "
          "'fraud 0x45': refused (0x45) / sent messages with the keyword; 'fraud@SMSC': those that "
          "reached the simulator (Jasmin delivers after answering, so the script waits until delivery stops).")
    plain, icpt_res = results[0], results[1]
    print(f"Jasmin with / without interceptor: throughput {icpt_res['sat']['rate'] / plain['sat']['rate']:.3f}, "
          f"CPU per message {sum(icpt_res['cpu']) / max(sum(plain['cpu']), 1):.1f}x (jasmind + interceptord)")
    if len(results) > 2:
        sky = results[2]
        print(f"skyshield firewall / Jasmin: {sky['sat']['rate'] / plain['sat']['rate']:.2f}x Jasmin without "
              f"screening, {sky['sat']['rate'] / icpt_res['sat']['rate']:.1f}x Jasmin with the interceptor")
    if problems:
        print(f"{problems} tracebacks in the logs under {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
