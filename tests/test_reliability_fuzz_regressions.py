"""Every fuzz seed and every saved finding (fuzz/seeds, fuzz/regressions) replayed through its fuzz target on
each test run, plus the API-level regressions the fuzzing and adversarial inputs found."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))
from targets import TARGETS  # noqa: E402

CASES = sorted(
    (target, path)
    for kind in ("seeds", "regressions")
    for target in TARGETS
    for path in (FUZZ / kind / target).glob("*")
    if path.is_file()
)


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.parent.parent.name}/{p.name}" for t, p in CASES])
def test_fuzz_inputs_replay_clean(target, path):
    TARGETS[target](path.read_bytes())


def test_every_target_has_seeds():
    assert {t for t, _ in CASES} == set(TARGETS)


@pytest.fixture(scope="module")
def client(api_client):
    return api_client


def test_a_lone_surrogate_in_one_text_does_not_sink_the_batch(client):
    # Found while fuzzing the text path: JSON may carry half a UTF-16 pair ("\ud83d"); the store could not encode
    # it and the whole batch (the good message too) went unrecorded.
    good_text = "\\u665a\\u4e0a\\u5403\\u996d\\u5417"  # 晚上吃饭吗, escaped
    body = ('{"messages":[{"text":"hi \\ud83d there","id":"s1"},{"text":"' + good_text + '","id":"s2"}]}').encode()
    r = client.post("/v1/messages:check", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    bad, good = r.json()["results"]
    assert bad["error"]["code"] == "invalid_text" and "surrogate" in bad["error"]["message"]
    assert good["id"] is not None and "failsafe" not in good
    assert client.get(f"/v1/verdicts/{good['id']}").json()["message"]["text"] == "晚上吃饭吗"


def test_json_nested_thousands_deep_is_a_400_not_a_server_error(client):
    deep = b'{"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = client.post("/v1/messages:check", content=deep)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
