"""Run every fuzz target for a set time: ``python fuzz/run.py --seconds 60`` (each target gets 60 s).

Coverage-guided with atheris (libFuzzer) when it is installed (``pip install -e '.[dev]'``), else a plain
random mutator over the seeds. Each target runs in its own process, starting from ``fuzz/seeds/<target>``;
a crash or a too-slow input (``--input-timeout``, a ReDoS) is saved under ``fuzz/findings/`` and printed with
the command that reproduces it. Turn each real finding into a regression input in ``fuzz/regressions/<target>/``
(tests/test_reliability_fuzz_regressions.py replays them on every test run).

    python fuzz/run.py --seconds 60                 # all targets
    python fuzz/run.py --seconds 300 --only sip     # one target, longer
    python fuzz/run.py --replay fuzz/findings/sip-crash-...  # re-run one input and show the traceback
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from targets import INSTRUMENT, TARGETS  # noqa: E402


def _one_atheris(name: str, seconds: int, findings: Path, input_timeout: int) -> int:
    import atheris

    with atheris.instrument_imports(include=INSTRUMENT[name]):
        for module in INSTRUMENT[name]:
            importlib.import_module(module)
    target = TARGETS[name]
    work = Path(tempfile.mkdtemp(prefix=f"skyshield-fuzz-{name}-"))
    args = [sys.argv[0], f"-max_total_time={seconds}", f"-timeout={input_timeout}", "-rss_limit_mb=2048",
            f"-artifact_prefix={findings}/{name}-", "-print_final_stats=1", str(work), str(HERE / "seeds" / name)]
    atheris.Setup(args, target)
    atheris.Fuzz()
    return 0


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and b:
            del b[pos:pos + rng.randint(1, 8)]
        elif op == 3 and b:
            start = rng.randrange(len(b))
            b[pos:pos] = b[start:start + rng.randint(1, 32)] * rng.randint(1, 50)
        else:
            b[pos:pos] = rng.choice([b"\x00", b"\xff", b"\r\n", "【".encode(), b"%", b'"', b"[", b"=", b";"])
    return bytes(b)


def _one_random(name: str, seconds: int, findings: Path, input_timeout: int) -> int:
    target = TARGETS[name]
    seeds = [p.read_bytes() for p in sorted((HERE / "seeds" / name).iterdir())] or [b""]
    rng = random.Random(0)
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(seeds))
        started = time.monotonic()
        try:
            target(data)
        except Exception:  # noqa: BLE001 - a finding
            path = findings / f"{name}-crash-{runs}"
            path.write_bytes(data)
            traceback.print_exc()
            print(f"crash saved to {path}", file=sys.stderr)
            return 1
        if time.monotonic() - started > input_timeout:
            path = findings / f"{name}-timeout-{runs}"
            path.write_bytes(data)
            print(f"slow input ({time.monotonic() - started:.1f} s) saved to {path}", file=sys.stderr)
            return 1
        runs += 1
    print(f"stat::number_of_executed_units: {runs}  (random mutator, {seconds} s)", file=sys.stderr)
    return 0


def replay(path: Path) -> int:
    """``fuzz/findings/<target>-crash-...`` or ``fuzz/regressions/<target>/<name>``."""
    name = path.parent.name if path.parent.name in TARGETS else path.name.split("-")[0]
    started = time.monotonic()
    TARGETS[name](path.read_bytes())
    print(f"{name}: {path} ran clean in {time.monotonic() - started:.3f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--only", choices=sorted(TARGETS), action="append", help="run only these targets")
    parser.add_argument("--input-timeout", type=int, default=5, help="an input slower than this is a finding")
    parser.add_argument("--engine", choices=["atheris", "random"], default=None, help="default: atheris if present")
    parser.add_argument("--replay", type=Path, help="run one saved input through its target")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:
        return replay(args.replay)
    findings = HERE / "findings"
    findings.mkdir(exist_ok=True)
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "random"
    if args.child:
        run = _one_atheris if engine == "atheris" else _one_random
        return run(args.child, args.seconds, findings, args.input_timeout)

    summary = []
    for name in args.only or list(TARGETS):
        before = set(findings.iterdir())
        started = time.monotonic()
        cmd = [sys.executable, __file__, "--child", name, "--seconds", str(args.seconds), "--engine", engine,
               "--input-timeout", str(args.input_timeout)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        new = sorted(set(findings.iterdir()) - before)
        stats = [line.split(":")[-1].split()[0] for line in proc.stderr.splitlines()
                 if "number_of_executed_units" in line]
        execs = stats[0] if stats else None
        status = "ok" if proc.returncode == 0 and not new else "FINDING"
        summary.append((name, status, time.monotonic() - started, execs, new))
        print(f"{name:<16} {status:<8} {time.monotonic() - started:6.1f} s  runs={execs or '?'}", flush=True)
        if status != "ok":
            print("\n".join(proc.stderr.splitlines()[-40:]))
            for path in new:
                print(f"  reproduce: python fuzz/run.py --replay {path.relative_to(HERE.parent)}")
    return 1 if any(s[1] != "ok" for s in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
