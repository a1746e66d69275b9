"""Core subcommands: ``check`` one message, ``classify`` a file, ``why`` a stored verdict, ``serve`` the API."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

#: stderr lines about bad input lines before classify only counts them.
MAX_REPORTED_LINE_ERRORS = 100


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given after the subcommand it wins; otherwise the root parser's --policy stays.
    common.add_argument("--policy", default=argparse.SUPPRESS, help="operator policy TOML merged over the defaults")
    common.add_argument("--db", help="database URL (default $SKYSHIELD_DB or sqlite:///skyshield.db)")

    p = sub.add_parser("check", parents=[common], help="check one message and print its verdict")
    p.add_argument("text", help="the message text ('-' reads it from stdin)")
    p.add_argument("--sender", default="", help="sender number or id")
    p.add_argument("--recipient", default="", help="recipient number")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.add_argument("--no-store", action="store_true", help="do not store the verdict")
    p.set_defaults(handler=check_command)

    p = sub.add_parser(
        "classify",
        parents=[common],
        help="classify a file, one message per line, into JSON lines",
        description="Reads one message per line (or one TSV column) in batches and writes one JSON line per input "
        "line, in order: a verdict, or an error record for a line that cannot be read (invalid UTF-8, empty, too "
        "long, missing column). Exit status 1 when any line failed.",
    )
    p.add_argument("file", help="input file, '-' for stdin")
    p.add_argument("--column", type=_positive_int, help="read column N (1-based) of tab-separated lines")
    p.add_argument("--header", action="store_true", help="skip the first line")
    p.add_argument("--batch-size", type=_positive_int, default=1000, help="lines scored together (default 1000)")
    p.add_argument("--out", help="write JSON lines here instead of stdout")
    p.add_argument(
        "--resume",
        action="store_true",
        help="with --out: keep the complete lines already in OUT and continue after the last one (after a crash)",
    )
    p.add_argument("--no-store", action="store_true", help="do not store verdicts (ids are then null)")
    p.set_defaults(handler=classify_command)

    p = sub.add_parser("why", parents=[common], help="show a stored verdict and every reason behind it")
    p.add_argument("id", type=_positive_int, help="verdict id (from check, classify or the API)")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(handler=why_command)

    p = sub.add_parser("serve", parents=[common], help="run the HTTP API (OpenAPI docs at /docs)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="worker processes (default 1); with more, set [state] url so caps are shared")
    p.set_defaults(handler=serve_command)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value


def _settings(args: argparse.Namespace) -> Any:
    import os

    from skyshield.config import load_settings

    if args.db:
        # Detectors with tables of their own (consent ledger) find the database the same way.
        os.environ["SKYSHIELD_DB"] = args.db
    return load_settings(args.db)


def _policy(args: argparse.Namespace) -> Any:
    from skyshield.policy import Policy

    return Policy.load(getattr(args, "policy", None))


# -- check ---------------------------------------------------------------------------------------


def check_command(args: argparse.Namespace) -> int:
    from skyshield.assembly import build_engine
    from skyshield.events import Channel, Message
    from skyshield.explain import dumps, format_verdict, verdict_summary

    settings = _settings(args)
    text = sys.stdin.read() if args.text == "-" else args.text
    if args.text == "-":
        text = text.rstrip("\r\n")
    if not text.strip():
        print("skyshield check: error: the text is empty", file=sys.stderr)
        return 2
    if len(text) > settings.max_text_chars:
        print(
            f"skyshield check: error: the text has {len(text):,} characters; the limit is "
            f"{settings.max_text_chars:,} (SKYSHIELD_MAX_TEXT_CHARS)",
            file=sys.stderr,
        )
        return 2
    policy = _policy(args)
    store = None
    if not args.no_store:
        from skyshield.store import open_store_for

        store = open_store_for(policy, settings)  # before the engine: its detectors may use the same database
    try:
        engine = build_engine(policy)
        message = Message(text=text, sender=args.sender, recipient=args.recipient, channel=Channel.SMS)
        verdict = engine.check_one(message)
        if store is not None:
            store.save([(message, verdict)])
    finally:
        if store is not None:
            store.close()
    if args.json:
        data = verdict_summary(verdict, top=len(verdict.signals))
        data["probabilities"] = {k: round(p, 4) for k, p in verdict.probabilities.items()}
        data["model_version"] = verdict.model_version
        print(dumps(data, indent=2))
    else:
        print(format_verdict(verdict))
        if verdict.id is not None:
            print(f"verdict id: {verdict.id}  (skyshield why {verdict.id})")
    return 0


# -- classify ------------------------------------------------------------------------------------


@dataclass(slots=True)
class InputLine:
    number: int
    text: str | None = None
    #: (code, message) when the line cannot be checked.
    error: tuple[str, str] | None = None


def read_lines(
    stream: IO[bytes], *, max_chars: int, column: int | None = None, header: bool = False
) -> Iterator[InputLine]:
    """Lines of a byte stream as texts or errors, never holding more than one (bounded) line in memory."""
    # A character is at most 4 bytes in UTF-8; +2 for the line ending.
    limit = max_chars * 4 + 2
    number = 0
    while True:
        raw = stream.readline(limit)
        if not raw:
            return
        number += 1
        too_long = not raw.endswith(b"\n") and len(raw) >= limit
        while too_long:  # skip the rest of the line without reading it whole
            rest = stream.readline(1 << 16)
            if not rest or rest.endswith(b"\n"):
                break
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if header and number == 1:
            continue
        if too_long:
            yield InputLine(number, error=("line_too_long", f"line is longer than {max_chars:,} characters"))
            continue
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1].hex()
            yield InputLine(number, error=("invalid_utf8", f"not valid UTF-8 (byte 0x{bad} at offset {exc.start})"))
            continue
        if column is not None:
            fields = text.split("\t")
            if len(fields) < column:
                yield InputLine(
                    number, error=("missing_column", f"has {len(fields)} column(s); --column {column} was asked for")
                )
                continue
            text = fields[column - 1]
        if not text.strip():
            what = "empty line" if column is None else f"column {column} is empty"
            yield InputLine(number, error=("empty_text", what))
        elif len(text) > max_chars:
            yield InputLine(number, error=("line_too_long", f"text has {len(text):,} characters; limit {max_chars:,}"))
        else:
            yield InputLine(number, text=text)


def _batches(lines: Iterator[InputLine], size: int) -> Iterator[list[InputLine]]:
    batch: list[InputLine] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def classify_command(args: argparse.Namespace) -> int:
    from skyshield.assembly import build_engine, tune_gc_for_serving
    from skyshield.events import Channel, Message
    from skyshield.explain import dumps, verdict_summary
    from skyshield.metrics import record_batch, record_error

    settings = _settings(args)
    policy = _policy(args)
    resume_after = 0
    if getattr(args, "resume", False):
        if not args.out:
            print("skyshield classify: error: --resume needs --out (the file to continue)", file=sys.stderr)
            return 2
        resume_after = _resume_point(args.out)
        if resume_after:
            print(f"skyshield classify: resuming after input line {resume_after:,}", file=sys.stderr)
    if args.file == "-":
        source: IO[bytes] = sys.stdin.buffer
    else:
        source = open(args.file, "rb")  # noqa: SIM115 - closed in finally; FileNotFoundError becomes a CLI error
    store = None
    if not args.no_store:
        from skyshield.store import open_store_for

        store = open_store_for(policy, settings)  # before the engine: its detectors may use the same database
    engine = build_engine(policy)
    tune_gc_for_serving()
    out: IO[bytes] = open(args.out, "ab" if resume_after else "wb") if args.out else sys.stdout.buffer  # noqa: SIM115
    started = time.perf_counter()
    done = failed = 0
    try:
        lines = read_lines(source, max_chars=settings.max_text_chars, column=args.column, header=args.header)
        if resume_after:
            lines = (line for line in lines if line.number > resume_after)
        for batch in _batches(lines, args.batch_size):
            good = [line for line in batch if line.error is None]
            messages = [
                Message(text=line.text or "", channel=Channel.FILE, external_id=str(line.number)) for line in good
            ]
            t0 = time.perf_counter()
            verdicts = engine.check(messages)
            record_batch("cli", verdicts, time.perf_counter() - t0)
            if store is not None and messages:
                store.save(list(zip(messages, verdicts, strict=True)))
            by_line = {line.number: v for line, v in zip(good, verdicts, strict=True)}
            chunk = []
            for line in batch:
                if line.error is None:
                    record = {"line": line.number, **verdict_summary(by_line[line.number], reasons=False)}
                    done += 1
                else:
                    code, message = line.error
                    message = f"line {line.number}: {message}"
                    record = {"line": line.number, "id": None, "error": {"code": code, "message": message}}
                    failed += 1
                    record_error("cli", code)
                    if failed <= MAX_REPORTED_LINE_ERRORS:
                        print(f"skyshield classify: {message}; written as an error record", file=sys.stderr)
                    elif failed == MAX_REPORTED_LINE_ERRORS + 1:
                        print("skyshield classify: more bad lines: see the error records", file=sys.stderr)
                chunk.append(dumps(record))
            out.write(("\n".join(chunk) + "\n").encode("utf-8"))
            out.flush()
    finally:
        if source is not sys.stdin.buffer:
            source.close()
        if out is not sys.stdout.buffer:
            out.close()
        if store is not None:
            store.close()
    seconds = time.perf_counter() - started
    rate = (done + failed) / seconds if seconds > 0 else 0.0
    print(
        f"skyshield classify: {done:,} lines classified, {failed:,} failed, in {seconds:.1f} s ({rate:,.0f} lines/s)",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _resume_point(path: str) -> int:
    """The input line number of the last complete record in ``path`` (0 when there is none); a partly
    written last record (the process was killed mid-write) is cut off so the file ends on a whole line."""
    import json
    import os

    try:
        f = open(path, "r+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return 0
    with f:
        last_line, end = 0, 0
        offset = 0
        for raw in f:
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break
            try:
                number = json.loads(raw)["line"]
            except (ValueError, KeyError, TypeError):
                where = f"{path}: the line ending at byte {offset}"
                raise ValueError(f"{where} is not a classify record; cannot resume") from None
            last_line, end = int(number), offset
        if end < os.fstat(f.fileno()).st_size:
            f.truncate(end)
    return last_line


# -- why -----------------------------------------------------------------------------------------


def why_command(args: argparse.Namespace) -> int:
    from skyshield.explain import dumps, format_stored
    from skyshield.store import open_store

    settings = _settings(args)
    if settings.db_url.startswith("sqlite:///") and not settings.sqlite_path.exists():
        where = settings.sqlite_path
        print(f"skyshield why: error: no database at {where} (set --db or SKYSHIELD_DB)", file=sys.stderr)
        return 2
    with open_store(settings) as store:
        stored = store.get(args.id)
        held = held_message(store, stored.id) if stored is not None and stored.verdict.action == "hold" else None
    if stored is None:
        print(f"skyshield why: error: no verdict with id {args.id} in {settings.db_url}", file=sys.stderr)
        return 1
    if args.json:
        data = stored.to_dict()
        data["reasons"] = stored.verdict.reasons()
        if held is not None:
            data["held"] = held
        print(dumps(data, indent=2))
    else:
        print(format_stored(stored))
        if held is not None:
            from skyshield.disposal.held import describe

            print(f"\nheld by the SMPP firewall\n  {describe(held)}")
    return 0


def held_message(store: Any, verdict_id: int) -> dict | None:
    """What became of the message the SMPP firewall held under this verdict, if it held one."""
    from skyshield.disposal.held import status_of
    from skyshield.store.sql import Database

    store.migrate()  # the held-message table, on a database no firewall has written yet
    db = Database(store.connect)
    try:
        return status_of(db, [verdict_id]).get(verdict_id)
    finally:
        db.close()


# -- serve ---------------------------------------------------------------------------------------


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from skyshield.api.app import create_app

    settings = _settings(args)
    policy = _policy(args)
    if policy.section("privacy")["mask_logs"]:
        from skyshield.security.logmask import install_log_masking

        install_log_masking()
    app = create_app(policy, settings)
    engine = app.state.skyshield.engine
    if not app.state.security.keyring.any_keys() and not _is_loopback(args.host):
        print(
            f"skyshield serve: error: refusing to serve on {args.host} without API keys (anyone could read the "
            "stored messages). Create one first: skyshield keys create --tenant NAME --scopes check,read "
            "(or serve on 127.0.0.1).",
            file=sys.stderr,
        )
        return 2
    from skyshield.security.audit import record_policy_if_changed

    record_policy_if_changed(app.state.skyshield.store, policy)
    print(
        f"skyshield: serving http://{args.host}:{args.port} (docs at /docs); database {settings.db_url}; "
        f"model {engine.model.version}",
        file=sys.stderr,
        flush=True,
    )
    if args.workers > 1:
        import os

        from skyshield.shared_state.workers import APP_FACTORY, POLICY_ENV, worker_warning

        warning = worker_warning(policy, args.workers)
        if warning:
            print(f"skyshield serve: warning: {warning}", file=sys.stderr, flush=True)
        if getattr(args, "policy", None):
            os.environ[POLICY_ENV] = os.path.abspath(args.policy)
        app.state.skyshield.store.close()  # this process only supervises; each worker builds its own app
        uvicorn.run(APP_FACTORY, factory=True, workers=args.workers, host=args.host, port=args.port,
                    log_level=args.log_level, access_log=not args.no_access_log)
        return 0
    from skyshield.assembly import tune_gc_for_serving

    tune_gc_for_serving()
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=not args.no_access_log)
    return 0


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
