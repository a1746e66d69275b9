"""The Jasmin SMS gateway as a peer: the same load through Jasmin (no content screening) to the SMSC simulator.

Jasmin is a store-and-forward gateway (RabbitMQ + Redis): it answers submit_sm once the message is
queued, and delivers later. So its "accepted" rate is not the same thing as skyshield's, which answers
after judging and (for delivered messages) after the SMS centre answered; it is the reference point an
operator would compare with. Needs Jasmin in its own virtualenv (it pins Twisted and friends):

    python3.11 -m venv /tmp/jasvenv && /tmp/jasvenv/bin/pip install jasmin==0.11.1
    .venv/bin/python bench/smpp_jasmin.py [--jasmin-venv /tmp/jasvenv]

RabbitMQ (127.0.0.1:5672, guest/guest) and Redis (127.0.0.1:6379) must be running; the script uses
Redis database 7, and deletes the queues and exchanges Jasmin created when it is done. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smpp_throughput as b  # noqa: E402

JCLI = r'''
import sys, telnetlib, re
t = telnetlib.Telnet("127.0.0.1", int(sys.argv[1]), 10)
t.read_until(b"Username: ", 10); t.write(b"jcliadmin\n")
t.read_until(b"Password: ", 10); t.write(b"jclipwd\n")
t.read_until(b"jcli : ", 10)
for c in sys.argv[2:]:
    t.write(c.encode() + b"\n")
    t.expect([re.compile(rb"jcli : $"), re.compile(rb"> $")], 15)
t.write(b"quit\n")
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


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listening on {port}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jasmin-venv", default=os.environ.get("JASMIN_VENV", "/tmp/jasvenv"),
                    help="virtualenv with jasmin installed (bin/jasmind.py); default $JASMIN_VENV or /tmp/jasvenv")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=1000)
    args = ap.parse_args()
    venv = Path(args.jasmin_venv)
    jasmind, jpython = venv / "bin" / "jasmind.py", venv / "bin" / "python"
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
    smpp_port, jcli_port, http_port, sim_port = (b.free_port() for _ in range(4))
    (root / "etc/jasmin/jasmin.cfg").write_text(
        f"[smpp-server]\nbind = 127.0.0.1\nport = {smpp_port}\nlog_level = WARNING\n"
        f"[jcli]\nbind = 127.0.0.1\nport = {jcli_port}\n[http-api]\nbind = 127.0.0.1\nport = {http_port}\n"
        f"[amqp-broker]\nhost = 127.0.0.1\nport = 5672\nspec = {spec}\n"
        "[redis-client]\nhost = 127.0.0.1\nport = 6379\ndbid = 7\n")
    env = dict(os.environ, ROOT_PATH=str(root))
    sim = subprocess.Popen([sys.executable, "-m", "skyshield.gateway.smsc_sim", "--listen", f"127.0.0.1:{sim_port}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jas_log = (root / "jasmind.out").open("w")
    jas = subprocess.Popen([str(jpython), str(jasmind), "-c", str(root / "etc/jasmin/jasmin.cfg")], env=env,
                           stdout=jas_log, stderr=subprocess.STDOUT)
    try:
        wait_port(sim_port)
        try:
            wait_port(jcli_port, 60)
        except SystemExit:
            raise SystemExit(f"Jasmin did not start: {(root / 'jasmind.out').read_text()[-1500:]}") from None
        subprocess.run([str(jpython), "-W", "ignore", "-c", JCLI, str(jcli_port),
                        "group -a", "gid g1", "ok",
                        "user -a", "username bench", "password bench", "uid u1", "gid g1", "ok",
                        "smppccm -a", "cid smsc", "host 127.0.0.1", f"port {sim_port}", "username sim",
                        "password sim", "submit_throughput 100000", "ok", "smppccm -1 smsc",
                        "mtrouter -a", "type defaultroute", "connector smppc(smsc)", "rate 0.00", "ok"],
                       check=True, timeout=60)
        time.sleep(2)  # the connector binds to the simulator
        pdus = b.make_pdus(args.n)
        cpu0 = b.cpu_seconds(jas.pid)
        sat = asyncio.run(b.saturate(smpp_port, pdus, 4, 64, 120))
        cpu = (b.cpu_seconds(jas.pid) - cpu0) / max(sat["done"], 1) * 1e6
        lat = asyncio.run(b.paced(smpp_port, pdus[: int(args.rate * 4)], 4, args.rate, 60))
    finally:
        for proc in (jas, sim):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run([str(jpython), "-c", CLEANUP], timeout=30, check=False)
        subprocess.run(["redis-cli", "-n", "7", "flushdb"], capture_output=True, check=False)
    print(f"Jasmin {args.n} submit_sm, 4 binds, window 64 (load average {os.getloadavg()[0]:.1f}): "
          f"{sat['rate']:,.0f} accepted/s, jasmind CPU {cpu:.0f} µs per message (RabbitMQ and Redis not counted), "
          f"errors {sat['errors']}; at {args.rate:g}/s: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
