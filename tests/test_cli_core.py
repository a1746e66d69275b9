"""The core CLI with the real engine: ``check`` prints and stores a verdict, ``classify`` streams a file into
JSON lines with an error record for every unreadable line, ``why`` explains a stored verdict."""

from __future__ import annotations

import io
import json
import sys
import tracemalloc

import pytest

from skyshield import cli
from skyshield.commands import read_lines

PROMOTION = "【某宝】双11狂欢，全场5折起，点击 t.cn/abc 抢购，回T退订"
FRAUD = "您好，这里是市公安局，您的银行卡涉嫌洗钱，请立即下载会议APP配合调查"
CATEGORIES = {"personal", "notification", "verification", "promotion", "fraud", "illicit"}


@pytest.fixture(scope="module")
def real_build_engine(tmp_path_factory):
    """The real ``build_engine``, remembering what it built per policy so each test does not reload the model."""
    try:
        import skyshield.text.classify  # noqa: F401
        import skyshield.text.rules  # noqa: F401
    except ModuleNotFoundError as exc:
        pytest.skip(f"the text model is not in the tree yet ({exc.name}); CLI tests need the real engine")
    from skyshield.assembly import build_engine

    engines: dict[str, object] = {}

    def build_once(policy=None):
        key = getattr(policy, "source", str(policy))
        if key not in engines:
            engines[key] = build_engine(policy)
        return engines[key]

    # Detectors with their own tables (the consent ledger) open $SKYSHIELD_DB: keep them out of the repo.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYSHIELD_DB", f"sqlite:///{tmp_path_factory.mktemp('engine') / 'engine.db'}")
        mp.delenv("SKYSHIELD_KEY_FILE", raising=False)
        yield build_once


@pytest.fixture
def run(real_build_engine, tmp_path, monkeypatch, capsys):
    """``skyshield ARGS`` in this process against a database in tmp_path, with the real engine."""
    monkeypatch.setenv("SKYSHIELD_DB", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.delenv("SKYSHIELD_KEY_FILE", raising=False)
    monkeypatch.setattr("skyshield.assembly.build_engine", real_build_engine)

    def _run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def test_check_prints_a_readable_verdict_and_why_explains_it(run):
    code, out, err = run("check", PROMOTION, "--sender", "106900001234")
    assert code == 0, err
    assert "category: promotion" in out
    assert "SIGNATURE" in out and "OPT_OUT_TEXT" in out
    verdict_id = int(out.split("verdict id: ")[1].split()[0])

    code, out, err = run("why", str(verdict_id))
    assert code == 0, err
    assert f"verdict {verdict_id}" in out and PROMOTION in out
    assert "promotion" in out and "SIGNATURE" in out and "【某宝】" in out
    assert "106900001234" not in out, "the sender is shown pseudonymised"


def test_check_json_for_the_fraud_example(run):
    code, out, _ = run("check", FRAUD, "--json")
    assert code == 0
    verdict = json.loads(out)
    assert verdict["category"] == "fraud" and verdict["subtype"] == "authority_impersonation"
    assert verdict["reasons"] and verdict["model_version"] and isinstance(verdict["id"], int)

    code, out, _ = run("why", str(verdict["id"]), "--json")
    stored = json.loads(out)
    assert stored["message"]["text"] == FRAUD and stored["category"] == "fraud"
    assert {s["name"] for s in stored["signals"]} >= {s["name"] for s in verdict["signals"]}


def test_check_without_storing_and_bad_text(run, tmp_path):
    code, out, _ = run("check", "明天下午三点开会", "--no-store", "--json")
    assert code == 0 and json.loads(out)["id"] is None
    code, out, err = run("check", "   ")
    assert code == 2 and "empty" in err
    code, out, err = run("check", "x" * 100_000)
    assert code == 2 and "100,000 characters" in err
    code, out, _ = run("check", "-", "--json", stdin=PROMOTION.encode() + b"\n")
    assert json.loads(out)["category"] == "promotion"


def test_why_says_what_is_missing(run, tmp_path, monkeypatch):
    run("check", PROMOTION)
    code, _, err = run("why", "999999")
    assert code == 1 and "no verdict with id 999999" in err
    code, _, err = run("why", "1", "--db", f"sqlite:///{tmp_path / 'nowhere.db'}")
    assert code == 2 and "no database" in err
    assert not (tmp_path / "nowhere.db").exists()


def test_classify_writes_one_record_per_line_and_reports_bad_lines(run, tmp_path):
    lines = [
        PROMOTION.encode(),
        b"",
        b"\xe6\x82\xa8\xe5\xa5\xbd \xff\xfe broken",
        FRAUD.encode() + b"\r",
        ("长" * 10_001).encode(),
        "验证码 482913，5分钟内有效，请勿告诉他人。".encode(),
    ]
    path = tmp_path / "messages.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")

    code, out, err = run("classify", str(path), "--batch-size", "2")
    assert code == 1, "a failed line makes the exit status 1"
    records = [json.loads(x) for x in out.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 6], "nothing dropped, input order kept"
    errors = {r["line"]: r["error"]["code"] for r in records if "error" in r}
    assert errors == {2: "empty_text", 3: "invalid_utf8", 5: "line_too_long"}
    for n in (2, 3, 5):
        assert f"line {n}:" in err
    assert "3 lines classified, 3 failed" in err
    good = {r["line"]: r for r in records if "error" not in r}
    assert good[1]["category"] == "promotion" and good[4]["category"] in CATEGORIES
    for r in good.values():
        assert {"id", "line", "category", "subtype", "unwanted", "action", "signals"} <= set(r)
        assert 0.0 <= r["unwanted"] <= 1.0
    code, out, _ = run("why", str(good[4]["id"]))
    assert code == 0 and FRAUD in out and "id: 4" in out


def test_classify_a_tsv_column_from_stdin_into_a_file(run, tmp_path):
    tsv = f"id\ttext\n1\t{PROMOTION}\n2\n3\t{FRAUD}\textra\n".encode()
    out_file = tmp_path / "verdicts.jsonl"
    code, out, err = run("classify", "-", "--column", "2", "--header", "--no-store", "--out", str(out_file), stdin=tsv)
    assert code == 1 and out == ""
    records = [json.loads(x) for x in out_file.read_text("utf-8").splitlines()]
    assert [r["line"] for r in records] == [2, 3, 4]
    assert records[0]["category"] == "promotion" and records[0]["id"] is None
    assert records[1]["error"]["code"] == "missing_column" and "line 3" in err
    assert records[2]["category"] in CATEGORIES and records[2]["id"] is None


def test_classify_all_good_exits_zero_and_missing_file_is_a_clear_error(run, tmp_path):
    path = tmp_path / "ok.txt"
    path.write_text(f"{PROMOTION}\n{FRAUD}", encoding="utf-8")  # no final newline
    code, out, _ = run("classify", str(path), "--no-store")
    assert code == 0 and len(out.splitlines()) == 2
    code, _, err = run("classify", str(tmp_path / "absent.txt"))
    assert code == 2 and "absent.txt" in err


def test_policy_errors_name_the_file_and_line(run, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text("[actions]\nblock = 20.0\nblok = 3.0\n", encoding="utf-8")
    code, _, err = run("--policy", str(policy), "check", PROMOTION)
    assert code == 2 and f"{policy}:3:" in err and "blok" in err
    code, _, err = run("check", PROMOTION, "--policy", str(policy))
    assert code == 2 and f"{policy}:3:" in err


def test_reading_an_endless_line_needs_little_memory():
    huge = b"x" * 5_000_000 + b"\nhello\n"
    tracemalloc.start()
    try:
        got = list(read_lines(io.BytesIO(huge), max_chars=10_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(x.number, x.error and x.error[0], x.text) for x in got] == [(1, "line_too_long", None), (2, None, "hello")]
    assert peak < 1_000_000, f"peak {peak:,} bytes for a 5 MB line"


def test_classify_memory_does_not_grow_with_the_input(run, tmp_path):
    sample = [PROMOTION, FRAUD, "明天下午三点开会，记得带电脑", "您的验证码是 482913，5分钟内有效", "回复TD退订"]

    def peak_for(n_lines: int) -> int:
        path = tmp_path / f"in_{n_lines}.txt"
        with path.open("w", encoding="utf-8") as f:
            for i in range(n_lines):
                f.write(f"{sample[i % len(sample)]} #{i}\n")
        out = tmp_path / f"out_{n_lines}.jsonl"
        tracemalloc.start()
        try:
            code, _, _ = run("classify", str(path), "--batch-size", "50", "--out", str(out))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert code == 0
        assert sum(1 for _ in out.open(encoding="utf-8")) == n_lines
        return peak

    peak_for(50)  # warm caches (tokeniser, model) so both runs measure the streaming itself
    small, large = peak_for(150), peak_for(750)
    print(f"classify peak traced memory: {small:,} bytes for 150 lines, {large:,} for 750")
    assert large < small * 1.5, f"peak {large:,} bytes for 750 lines vs {small:,} for 150"
