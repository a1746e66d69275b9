"""Shared state in Redis: the same cap semantics as the in-process counter, and no lost updates when many
workers (threads, processes, engines) count against one key at once. Skips when Redis is unreachable."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from datetime import UTC, datetime

import pytest

from compliance_helpers import make_engine
from service_helpers import require_redis
from skyshield.compliance.caps import SlidingCounter, parse_rates
from skyshield.compliance.ledger import ConsentLedger
from skyshield.events import Channel, Message
from skyshield.policy import Policy, PolicyError
from skyshield.shared_state import open_counter
from skyshield.shared_state.redis_counter import RedisWindowCounter

pytestmark = pytest.mark.service


@pytest.fixture
def redis_url():
    return require_redis()


@pytest.fixture
def prefix(redis_url):
    name = f"skyshield-test:{uuid.uuid4().hex[:10]}:"
    yield name
    RedisWindowCounter.from_url(redis_url, prefix=name).clear()


def _policy(redis_url: str, prefix: str, extra: str = "") -> Policy:
    return Policy.from_text(f'[state]\nurl = "{redis_url}"\nkey_prefix = "{prefix}"\n{extra}')


def test_the_policy_picks_the_counter(redis_url, prefix, monkeypatch):
    monkeypatch.delenv("SKYSHIELD_STATE", raising=False)
    assert isinstance(open_counter(Policy.from_text("")), SlidingCounter)
    assert isinstance(open_counter(_policy(redis_url, prefix)), RedisWindowCounter)
    with pytest.raises(PolicyError, match="redis://"):
        open_counter(Policy.from_text('[state]\nurl = "http://example"\n'))
    with pytest.raises(ConnectionError, match="cannot reach the shared state"):
        open_counter(Policy.from_text('[state]\nurl = "redis://127.0.0.1:1/0"\n'))
    monkeypatch.setenv("SKYSHIELD_STATE", redis_url)
    assert isinstance(open_counter(Policy.from_text("")), RedisWindowCounter), "the environment overrides"


def test_redis_counts_windows_exactly_like_the_in_process_counter(redis_url, prefix):
    rates = parse_rates(["1 / 1m", "3 / 1h"])
    local, shared = SlidingCounter(), RedisWindowCounter.from_url(redis_url, prefix=prefix)
    t0 = 1_763_900_000.123456
    # the boundary (t - window, t]: a send exactly one minute later is allowed again
    times = [t0, t0 + 30, t0 + 60, t0 + 60.000001, t0 + 200, t0 + 3600, t0 + 3660.5, t0 + 3700]
    for t in times:
        key = ("sig", "acme", "某宝", "h:abc", "verification")
        expected = [(h.rate, h.count) for h in local.check_and_add(key, t, rates, "r")]
        got = [(h.rate, h.count) for h in shared.check_and_add(key, t, rates, "r")]
        assert got == expected, t
    assert shared.count(key, t0 + 3700, 3600) == local.count(key, t0 + 3700, 3600) == 4
    shared.remove(key, t0 + 3700)
    local.remove(key, t0 + 3700)
    assert shared.count(key, t0 + 3700, 3600) == local.count(key, t0 + 3700, 3600) == 3
    assert shared.check_and_add(("other",), t0, rates, "r", add=False) == []
    assert shared.count(("other",), t0, 60) == 0, "add=False counts nothing"
    ttl = shared.client.ttl(shared.redis_key(key))
    assert 3600 < ttl <= 3600 + 86_400, "keys expire a day after their longest window"


def test_a_batch_of_checks_in_one_round_trip_sees_its_own_earlier_sends(redis_url, prefix):
    rates = parse_rates(["3 / 1h"])
    checks = [(("sig", "acme", "某宝", f"h:{i % 2}", "promotion"), 1_763_900_000.0 + i, rates, "r", i != 4)
              for i in range(10)]
    local, shared = SlidingCounter(), RedisWindowCounter.from_url(redis_url, prefix=prefix)
    expected = [[(h.rate, h.count) for h in hits] for hits in local.check_and_add_many(checks)]
    got = [[(h.rate, h.count) for h in hits] for hits in shared.check_and_add_many(checks)]
    assert got == expected
    # the 4th counted send to a recipient hits the cap; send 4 was not counted (add=False), so h:0 hits at 8
    assert [bool(h) for h in got] == [False] * 7 + [True] * 3
    assert shared.check_and_add_many([]) == []


def _hammer(url: str, prefix: str, calls: int, out) -> None:
    counter = RedisWindowCounter.from_url(url, prefix=prefix)
    rates = parse_rates(["100 / 1h"])
    allowed = sum(not counter.check_and_add(("recipient", "h:1"), 1_763_900_000.0, rates, "cap") for _ in range(calls))
    out.put(allowed)


def test_many_processes_and_threads_enforce_one_cap_exactly(redis_url, prefix):
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(redis_url, prefix, 150, out)) for _ in range(3)]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_hammer, args=(redis_url, prefix, 150, out)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
    allowed = [out.get(timeout=10) for _ in range(6)]
    assert sum(allowed) == 100, f"exactly the cap gets through: {allowed}"
    counter = RedisWindowCounter.from_url(redis_url, prefix=prefix)
    assert counter.count(("recipient", "h:1"), 1_763_900_000.0, 3600) == 900, "every attempt was counted: none lost"


#: One send time for all: windows count (t - w, t] by message time, so a send stamped later than another
#: worker's check is (rightly) outside that check's window; the same time makes the expected total exact.
_NOW = datetime.now(UTC)


def _codes(n: int, start: int) -> list[Message]:
    now = _NOW
    return [Message(text=f"【某宝】您的验证码是{100000 + start + i}，5分钟内有效。", sender="10690000",
                    recipient="13800138000", time=now, channel=Channel.API, tenant="acme") for i in range(n)]


def _run_two_engines(policy: Policy) -> int:
    """Two engines (as two workers would) send 80 codes each to one recipient at once; how many got through."""
    engines = [make_engine(policy, ConsentLedger(":memory:", b"k" * 32))[0] for _ in range(2)]
    passed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def send(engine, start):
        barrier.wait()
        n = 0
        for batch in range(8):
            verdicts = engine.check(_codes(10, start + batch * 10))
            n += sum(not any(s.name == "FREQUENCY_CAP" for s in v.signals) for v in verdicts)
        with lock:
            passed.append(n)

    threads = [threading.Thread(target=send, args=(e, 1000 * i)) for i, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(passed)


def test_two_engines_sharing_redis_enforce_one_cap(redis_url, prefix, monkeypatch):
    monkeypatch.delenv("SKYSHIELD_STATE", raising=False)
    caps = '[detectors.compliance.caps]\nverification = ["25 / 1d"]\n'
    assert _run_two_engines(_policy(redis_url, prefix, caps)) == 25
    counter = RedisWindowCounter.from_url(redis_url, prefix=prefix + "caps:")
    keys = list(counter.client.scan_iter(match=prefix + "caps:[[]*"))
    assert keys and all(counter.client.zcard(k) == 25 for k in keys), "blocked sends were un-counted by settle"
    # the same run with each engine counting on its own lets twice the cap through
    assert _run_two_engines(Policy.from_text(caps)) == 50


def test_warming_up_from_the_send_log_counts_each_send_once(redis_url, prefix):
    log = [(("sig", "acme", "某宝", "h:1", "promotion"), 1_763_900_000.0 + i) for i in range(3)]
    workers = [RedisWindowCounter.from_url(redis_url, prefix=prefix) for _ in range(2)]
    for w in workers:
        w.warm(iter(log))
    assert workers[1].count(log[0][0], 1_763_900_010.0, 86_400) == 3
    local = SlidingCounter()
    local.warm(iter(log))
    assert local.count(log[0][0], 1_763_900_010.0, 86_400) == 3


def test_two_behaviour_services_sharing_redis_see_one_senders_fan_out(redis_url, prefix, monkeypatch):
    from skyshield.behaviour.lists import ReputationLists
    from skyshield.behaviour.service import BehaviourService

    monkeypatch.delenv("SKYSHIELD_STATE", raising=False)

    def fan_out_signals(policy: Policy) -> int:
        workers = [BehaviourService(policy, lists=ReputationLists(), model=None) for _ in range(2)]
        fired = 0
        for i in range(40):  # the sender's messages alternate between two workers
            signals = workers[i % 2].observe_message("10690001", f"1390000{i:04d}", 1_763_900_000.0 + i)
            fired += any(s.name == "SENDER_FAN_OUT" for s in signals)
        return fired

    fan_out = '[detectors.behaviour]\nfan_out = "30 / 1h"\n'
    assert fan_out_signals(_policy(redis_url, prefix, fan_out)) == 11, "messages 30..40 of the sender"
    assert fan_out_signals(Policy.from_text(fan_out)) == 0, "each worker alone sees only 20"


def test_add_and_count_is_one_step_with_the_same_answer_in_process_and_in_redis(redis_url, prefix):
    local, shared = SlidingCounter(), RedisWindowCounter.from_url(redis_url, prefix=prefix)
    times = [1_763_900_000.0 + 10 * i for i in range(10)]
    assert [local.add_and_count("s", t, 35) for t in times] == [shared.add_and_count("s", t, 35) for t in times]
    assert shared.count("s", times[-1], 35) == 4
