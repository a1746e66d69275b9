"""The SMPP firewall's engine in a child process of its own.

Why a process and not a thread: on a thread, ``engine.check`` holds the GIL most of the time it runs
(numpy releases it only for large arrays), so the event loop waits for it before it can read, answer or
relay anything, and every wait shows up as added latency. In a child process the event loop keeps its own
interpreter; the two talk over one socket pair (``multiprocessing.Pipe``), which the loop watches with
``add_reader``, so no thread of the gateway's process competes for the GIL either.

Protocol, one request in flight at a time (the firewall's batcher sends the next batch only after the
answer to the last one):

    parent -> child  ("check", [Message, ...])      child -> parent  ("verdicts", [answer, ...], seconds)
                                                                     ("failed", "error text", seconds)
    parent -> child  ("kept", {index, ...})         (the hold queue stored these itself; record the rest)
    parent -> child  ("stop",)                      child -> parent  ("stopped", saved, failed)

An answer is the whole ``Verdict`` only for a held message (the hold queue stores it); for the rest it is
``(action, score, reasons)``, what the gateway acts on and logs (pickling every verdict with its signals both
ways cost ~15 µs a message). The child answers before it finishes (``Engine.check_answer_first``): the text
model's terms and the consent ledger's send log (about a third of a small batch's cost, and no decision
depends on them) are done after the answer has gone, then the child writes the records (write-behind, in
chunks, only while no batch waits), so none of it delays an answer unless the next batch arrives meanwhile,
and record-keeping costs the event loop nothing. A held message's batch is finished before it is answered
(the hold queue stores its verdict as it comes). What a crash loses is what it lost on the thread, and the
send-log rows of the batches not yet finished: a child killed outright loses the batch in flight (answered
per ``fail_open``) and what it had not yet written; the parent starts a new child.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from skyshield.engine import nothing_to_finish
from skyshield.events import Action, Message, Verdict
from skyshield.gc_control import IncrementalCollector
from skyshield.policy import Policy

log = logging.getLogger("skyshield.gateway.engine")

#: Records written in one store transaction between batches: a batch arriving meanwhile waits for one
#: chunk at most (35-70 µs a record).
RECORD_CHUNK = 16
#: Fewer records than a chunk wait up to this long for more: at low rates a commit of one or two records cost the
#: child most of its CPU (each commit writes every page the rows touch, and the checkpoint copies them again).
RECORD_LINGER = 0.1

Answer = tuple[list[Any] | None, float, Exception | None]


class Decision:
    """What the gateway reads of a verdict it does not store itself: the action, the score and the reasons."""

    __slots__ = ("action", "score", "_reasons")

    def __init__(self, action: str, score: float, reasons: list[str]):
        self.action = Action(action)
        self.score = score
        self._reasons = reasons

    def reasons(self) -> list[str]:
        return self._reasons


def _compact(verdicts: list[Verdict], explain: bool) -> list[Any]:
    """The child's answer: held messages' whole verdicts, the rest as (action, score, top reasons)."""
    out: list[Any] = []
    for v in verdicts:
        if v.action is Action.HOLD:
            out.append(v)
        else:
            out.append((v.action.value, v.score, v.reasons()[:3] if explain and v.action is Action.BLOCK else []))
    return out


class EngineUnavailable(RuntimeError):
    """The engine process is not running (it failed to start, or died and is being restarted)."""


class EngineProcess:
    """``engine.check`` in a spawned child process; for an asyncio gateway (answers come on the loop).

    ``record`` makes the child store every ``(message, verdict)`` of the batches it judged, except those the
    gateway reports as kept by itself (:meth:`settle`). ``factory`` (a module-level function, so the child can
    import it) builds the engine from the policy instead of :func:`skyshield.assembly.build_engine`.
    """

    def __init__(self, policy: Policy, record: bool = True, start_timeout: float = 120.0,
                 factory: Callable[[Policy], Any] | None = None, answer_timeout: float = 5.0):
        self.policy = policy
        self.record = record
        self.factory = factory
        self.start_timeout = start_timeout
        #: A batch not answered in this time means a stuck child: it is killed and replaced (fail mode meanwhile).
        self.answer_timeout = answer_timeout
        self.model_version: str | None = None
        self.saved = 0
        self.failed = 0
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._loop: Any = None
        self._waiting: Callable[[Answer], None] | None = None
        self._deadline: Any = None  # the loop's timer for the batch in flight
        self._closing = False

    # ----------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Spawn the child and wait until its engine is built; raises ``EngineUnavailable`` if it is not."""
        self._adopt(*self._spawn())

    def _spawn(self) -> tuple[Any, Connection, str]:
        ours, theirs = self._ctx.Pipe(duplex=True)
        # Block lines are logged by the gateway at INFO: only then does the child send their reasons.
        explain_blocks = logging.getLogger("skyshield.gateway.smpp").isEnabledFor(logging.INFO)
        process = self._ctx.Process(target=_serve, args=(theirs, self.policy, self.record, self.factory,
                                                         explain_blocks), name="skyshield-engine", daemon=True)
        process.start()
        theirs.close()
        if not ours.poll(self.start_timeout):
            process.kill()
            raise EngineUnavailable(f"the engine process did not start within {self.start_timeout:.0f} s")
        try:
            reply = ours.recv()
        except EOFError:
            process.join(5)
            raise EngineUnavailable(f"the engine process exited while starting (exit code {process.exitcode})") \
                from None
        if reply[0] != "ready":
            process.join(5)
            raise EngineUnavailable(f"the engine could not be built: {reply[1]}")
        return process, ours, reply[1]

    def _adopt(self, process: Any, conn: Connection, version: str) -> None:
        if self._closing:  # closed while a restart was building the engine
            conn.send(("stop",))
            process.join(30)
            return
        self.model_version = version
        self._process, self._conn = process, conn
        if self._loop is not None:
            self._loop.add_reader(conn.fileno(), self._readable)
        log.info("engine process %d ready (model %s)", process.pid, version)

    def attach(self, loop: Any) -> None:
        """Deliver answers on ``loop`` (call from the loop's thread, once it runs)."""
        self._loop = loop
        if self._conn is not None:
            loop.add_reader(self._conn.fileno(), self._readable)

    @property
    def alive(self) -> bool:
        return self._conn is not None

    def close(self, timeout: float = 30.0) -> None:
        """Let the child write every record it holds, then stop it."""
        self._closing = True
        deadline = time.monotonic() + timeout
        while self._conn is not None and self._waiting is not None:
            # A batch in flight is answered (and its records kept) before the child is told to stop.
            if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                break
            self._readable()
        conn, process = self._detach()
        if conn is None:
            return
        try:
            conn.send(("stop",))
            if conn.poll(timeout):
                reply = conn.recv()
                if reply[0] == "stopped":
                    self.saved, self.failed = reply[1], reply[2]
        except (EOFError, OSError):
            log.error("the engine process ended before it could write its last records")
        finally:
            conn.close()
            process.join(timeout)
            if process.is_alive():
                process.kill()

    # ----------------------------------------------------------------- requests

    def check(self, messages: Sequence[Message], on_answer: Callable[[Answer], None]) -> None:
        """Judge ``messages``; ``on_answer((verdicts, seconds, error))`` is called on the loop. One at a time."""
        if self._waiting is not None:
            raise RuntimeError("one batch at a time: the last one has not been answered")
        if self._conn is None:
            on_answer((None, 0.0, EngineUnavailable("the engine process is not running")))
            return
        self._waiting = on_answer
        if self._loop is not None:
            self._deadline = self._loop.call_later(self.answer_timeout, self._overdue)
        try:
            self._conn.send(("check", list(messages)))
        except OSError as exc:
            self._lost(exc)

    def _overdue(self) -> None:
        self._deadline = None
        if self._waiting is None or self._process is None:
            return
        log.error("the engine process %d gave no answer within %.1f s: killing it", self._process.pid,
                  self.answer_timeout)
        self._process.kill()
        self._lost(TimeoutError(f"no answer within {self.answer_timeout:.1f} s"))

    def settle(self, kept: set[int]) -> None:
        """The last batch is acted on; the gateway stored the messages at ``kept`` itself (held ones)."""
        if self._conn is None:
            return
        try:
            self._conn.send(("kept", kept))
        except OSError as exc:
            self._lost(exc)

    def _readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            reply = conn.recv()
        except (EOFError, OSError) as exc:
            self._lost(exc)
            return
        on_answer, self._waiting = self._waiting, None
        self._cancel_deadline()
        if on_answer is None:
            log.error("the engine process answered %r with no batch in flight", reply[0])
            return
        if reply[0] == "verdicts":
            answers = [a if isinstance(a, Verdict) else Decision(*a) for a in reply[1]]
            on_answer((answers, reply[2], None))
        else:
            on_answer((None, reply[2], RuntimeError(reply[1])))

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _detach(self) -> tuple[Connection | None, Any]:
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None and self._loop is not None:
            self._loop.remove_reader(conn.fileno())
        return conn, process

    def _lost(self, exc: BaseException) -> None:
        """The child died: answer the batch in flight as failed, then start a new child."""
        conn, process = self._detach()
        if conn is not None:
            conn.close()
        exit_code = None
        if process is not None:
            process.join(1)
            exit_code = process.exitcode
        log.error("the engine process ended (exit code %s): %s", exit_code, exc or "connection closed")
        on_answer, self._waiting = self._waiting, None
        self._cancel_deadline()
        if on_answer is not None:
            on_answer((None, 0.0, EngineUnavailable(f"the engine process ended (exit code {exit_code})")))
        if not self._closing and self._loop is not None:
            # Building an engine takes seconds: do it off the loop; meanwhile batches fail per fail_open.
            self._loop.run_in_executor(None, self._restart)

    def _restart(self) -> None:
        """In an executor thread: build the new child, then hand it to the loop."""
        try:
            spawned = self._spawn()
        except EngineUnavailable as exc:
            log.error("the engine process could not be restarted: %s", exc)
            return
        self.restarts += 1
        self._loop.call_soon_threadsafe(self._adopt, *spawned)


def _serve(conn: Connection, policy: Policy, record: bool, factory: Callable[[Policy], Any] | None,
           explain_blocks: bool) -> None:
    """The child: build the engine, then answer batches and write records until told to stop."""
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the gateway stops this child
    # itself (after its last batch) and an ended gateway shows here as end of file, so neither is lost.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from skyshield.store.sqlite_conn import BackgroundCheckpoints

    # The ledger's commits inside engine.check and the record writes between batches must not copy the WAL
    # back (4-6 ms each time, the firewall's whole p99): a thread of this process does it.
    checkpoints = BackgroundCheckpoints().start()
    try:
        from skyshield.assembly import build_engine, tune_gc_for_serving

        engine = (factory or build_engine)(policy)
        recorder = None
        if record:
            from skyshield.gateway.recording import open_recorder

            recorder = open_recorder(policy)
        tune_gc_for_serving()
    except Exception as exc:  # noqa: BLE001 - the parent says why the gateway runs in its fail mode
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", getattr(getattr(engine, "model", None), "version", type(engine).__name__)))
    judge = getattr(engine, "check_answer_first", None) or (lambda batch: (engine.check(batch),
                                                                           nothing_to_finish))
    last: tuple[list[Message], list[Verdict], Callable[[], None]] | None = None
    # Work for the idle time between batches, in order: finish a batch, then write its records.
    finishes: deque[Callable[[], None]] = deque()
    records: deque[tuple[Message, Verdict]] = deque()

    records_since = 0.0  # when the oldest record waiting was kept, roughly

    def keep(batch: tuple[list[Message], list[Verdict], Callable[[], None]], kept: set[int]) -> None:
        nonlocal records_since
        finishes.append(batch[2])
        if recorder is not None:
            if not records:
                records_since = time.monotonic()
            records.extend(pair for i, pair in enumerate(zip(batch[0], batch[1], strict=True)) if i not in kept)

    collector = IncrementalCollector()
    while True:
        if not conn.poll(0):
            # Idle: collect garbage while the young generation is small (a backlog of finishing and records
            # can take all the idle time), then finish batches, then write records.
            if collector.collect_if_due():
                continue
            if finishes:
                _finish(finishes.popleft())
                continue
            if records:
                wait = records_since + RECORD_LINGER - time.monotonic()
                if len(records) >= RECORD_CHUNK or wait <= 0:
                    chunk = [records.popleft() for _ in range(min(RECORD_CHUNK, len(records)))]
                    recorder.write(chunk)  # type: ignore[union-attr]
                    records_since = time.monotonic()
                    continue
                if not conn.poll(wait):  # a few records: wait for more rather than commit them alone
                    continue
        collector.collect_if_overdue()
        try:
            request = conn.recv()
        except EOFError:  # the gateway died: keep what was judged
            request = ("stop",)
        kind = request[0]
        if kind == "check":
            if last is not None:  # no "kept" came for the last batch: keep every record rather than none
                keep(last, set())
                last = None
            messages = request[1]
            started = time.perf_counter()
            try:
                verdicts, finish = judge(messages)
                if any(v.action is Action.HOLD for v in verdicts):
                    _finish(finish)  # the hold queue stores these verdicts as they are answered
                    finish = nothing_to_finish
            except Exception as exc:  # noqa: BLE001 - fail open or closed per policy, in the gateway
                conn.send(("failed", "".join(traceback.format_exception_only(exc)).strip(),
                           time.perf_counter() - started))
                continue
            conn.send(("verdicts", _compact(verdicts, explain_blocks), time.perf_counter() - started))
            last = (messages, verdicts, finish)
        elif kind == "kept":
            if last is not None:
                keep(last, request[1])
            last = None
        elif kind == "stop":
            if last is not None:
                keep(last, set())
            for finish in finishes:
                _finish(finish)
            if recorder is not None:
                if records:
                    recorder.write(list(records))
                recorder.close()
            checkpoints.stop()
            try:
                conn.send(("stopped", recorder.saved if recorder else 0, recorder.failed if recorder else 0))
            except OSError:
                pass
            return


def _finish(finish: Callable[[], None]) -> None:
    try:
        finish()
    except Exception:  # noqa: BLE001 - the verdicts stand; stored without the model's terms, sends unlogged
        log.exception("could not finish a batch (explanations, send log)")
