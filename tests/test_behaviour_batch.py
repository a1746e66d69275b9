"""The message detector feeds a whole batch at once (one model call): same signals as one message at a time."""

from __future__ import annotations

from collections import Counter

from skyshield.behaviour.features import prepare_calls, to_seconds
from skyshield.behaviour.lists import ReputationLists
from skyshield.behaviour.service import BehaviourService
from skyshield.behaviour.simulate import SimConfig, simulate
from skyshield.policy import Policy


def _key(signals) -> list[tuple]:
    return [(s.name, s.score, repr(s.evidence)) for s in signals]


def test_batched_messages_get_the_signals_of_one_by_one_including_auto_blocks() -> None:
    calls, messages, _, _ = simulate(SimConfig(subscribers=1500, days=2, seed=3))
    policy = Policy.load()
    one, batched = BehaviourService(policy, lists=ReputationLists()), BehaviourService(policy, lists=ReputationLists())
    cs = prepare_calls(calls).collect().select("caller", "callee", "ts", "duration", "answered", "cell", "device")
    ms = messages.with_columns(to_seconds("time").alias("ts")).select("sender", "recipient", "ts", "template")
    events = sorted([(c[2], 0, c) for c in cs.iter_rows()] + [(m[2], 1, m) for m in ms.iter_rows()],
                    key=lambda e: (e[0], e[1]))
    expected, got, pending = [], [], []

    def flush() -> None:
        got.extend(batched.observe_messages([(s, r, t, False, tpl) for s, r, t, tpl in pending]))
        pending.clear()

    for _, kind, e in events:
        if kind == 0:  # a call: both services see it between message batches
            flush()
            one.observe_call(*e)
            batched.observe_call(*e)
        else:
            expected.append(one.observe_message(e[0], e[1], e[2], False, e[3]))
            pending.append(e)
            if len(pending) >= 300:
                flush()
    flush()
    names = Counter(s.name for signals in expected for s in signals)
    # the replay exercises the model, its auto-blocks and what follows from them within a batch
    assert names["SENDER_FRAUD_SCORE"] > 0 and names["BLOCKED_NUMBER"] > 0 and names["ROTATED_NUMBER"] > 0
    assert one.rotation.blocked.keys() == batched.rotation.blocked.keys() and one.rotation.blocked
    assert [_key(s) for s in got] == [_key(s) for s in expected]
