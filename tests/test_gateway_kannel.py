"""Kannel (bearerbox + smsbox, Debian package ``kannel``) as a third-party sender through the SMPP firewall.

Kannel binds as a transceiver, splits long messages itself (UCS-2 with a UDH) and reads the firewall's
answers; this checks that a peer we did not write gets a clean message through and a clean refusal.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from gateway_helpers import KeywordEngine, LoopThread, wait_for
from skyshield.gateway.smpp import Firewall
from skyshield.gateway.smsc_sim import SmscSimulator
from skyshield.policy import Policy

pytestmark = pytest.mark.skipif(not (shutil.which("bearerbox") and shutil.which("smsbox")),
                                reason="Kannel not installed (Debian package kannel)")

FRAUD = ("【公安局】您的银行卡涉嫌洗钱，已被冻结。请立即将资金转入安全账户配合调查，否则将承担法律责任。"
         "逾期未处理将影响您的征信记录，工作人员将在核实后为您解冻。如有疑问请勿挂断来电，按照客服指引操作即可完成验证，"
         "切勿向他人透露本通知内容。")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kannel_conf(tmp, smpp_port: int, admin: int, box: int, http: int) -> str:
    return f"""group = core
admin-port = {admin}
admin-password = adm
smsbox-port = {box}
log-file = "{tmp}/bearerbox.log"
log-level = 0
box-allow-ip = "127.0.0.1"

group = smsc
smsc = smpp
smsc-id = skyshield
host = 127.0.0.1
port = {smpp_port}
transceiver-mode = true
smsc-username = acme
smsc-password = secret
system-type = "VMA"
reconnect-delay = 1

group = smsbox
bearerbox-host = 127.0.0.1
sendsms-port = {http}
log-file = "{tmp}/smsbox.log"
global-sender = 10690001

group = sendsms-user
username = tester
password = foobar
max-messages = 10
concatenation = true

group = sms-service
keyword = default
text = "ok"
omit-empty = true
"""


def sendsms(http: int, text: str) -> str:
    query = urllib.parse.urlencode({"username": "tester", "password": "foobar", "to": "13800138000",
                                    "charset": "UTF-8", "coding": "2" if not text.isascii() else "0", "text": text})
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/cgi-bin/sendsms?{query}", timeout=5) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_kannel_message_arrives_and_fraud_is_refused_part_by_part(tmp_path):
    loop = LoopThread()
    smsc = SmscSimulator()
    engine = KeywordEngine()
    firewall = Firewall(Policy.from_text('[tenants.acme]\nsystem_id = "acme"\npassword = "secret"\n'), engine,
                        loop.run(smsc.start()))
    smpp_port = loop.run(firewall.start("127.0.0.1", 0))[1]
    admin, box, http = free_port(), free_port(), free_port()
    conf = tmp_path / "kannel.conf"
    conf.write_text(kannel_conf(tmp_path, smpp_port, admin, box, http))
    procs = []
    try:
        procs.append(subprocess.Popen(["bearerbox", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert wait_for(lambda: any(s.bound for s in list(firewall.sessions)), timeout=15), "Kannel did not bind"
        procs.append(subprocess.Popen(["smsbox", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert sendsms(http, "Your parcel is at the locker, code 2045").startswith("0: Accepted")
        assert sendsms(http, FRAUD).startswith("0: Accepted")
        assert wait_for(lambda: firewall.counts["block"] == 1 and firewall.counts["deliver"] == 1, timeout=15)
        # Kannel splits the fraud text into UCS-2 parts (UDH) and reads a refusal for each.
        assert wait_for(lambda: (tmp_path / "bearerbox.log").read_text().count("error code 0x00000045") == 2,
                        timeout=10), (tmp_path / "bearerbox.log").read_text()[-3000:]
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        loop.run(firewall.close())
        loop.run(smsc.close())
        loop.stop()
    assert [r.text for r in smsc.received] == ["Your parcel is at the locker, code 2045"]
    assert [m.text for m in engine.seen][-1] == FRAUD  # Kannel's UCS-2 parts were judged as one message
