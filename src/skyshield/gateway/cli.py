"""``skyshield smpp``, ``skyshield sip`` and ``skyshield smsc-sim``: the gateways in the traffic path."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("smpp", help="SMPP firewall: judge every submit_sm between senders and the SMS centre")
    p.add_argument("--listen", default="127.0.0.1:2775", help="where senders bind (default %(default)s)")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the SMS centre")
    p.add_argument("--no-scoring", action="store_true", help="relay without judging (a pass-through baseline)")
    p.add_argument("--no-record", action="store_true", help="do not write verdicts to the store")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the port (SO_REUSEPORT), one engine each; binds are spread across them")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(handler=run_smpp)

    p = subparsers.add_parser("sip", help="SIP call screening: a UDP proxy that refuses unwanted calls with 607")
    p.add_argument("--listen", default="127.0.0.1:5060", help="where callers send INVITEs (default %(default)s)")
    p.add_argument("--next-hop", required=True, help="HOST:PORT that screened calls go on to")
    p.add_argument("--no-screening", action="store_true", help="relay without screening (a pass-through baseline)")
    p.add_argument("--no-record", action="store_true", help="do not write call decisions to the store")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(handler=run_sip)

    p = subparsers.add_parser("smsc-sim", help="a small SMS centre simulator (SMPP 3.4) for trying the firewall")
    p.add_argument("--listen", default="127.0.0.1:2776")
    p.set_defaults(handler=run_smsc_sim)


def _serve_until_stopped(start: Any, stop: Any) -> None:
    """Run ``start()`` then wait for Ctrl-C / SIGTERM, then ``stop()``."""

    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        await start()
        await done.wait()
        await stop()

    asyncio.run(main())


def run_smpp(args: argparse.Namespace) -> int:
    if args.workers <= 1:
        return run_smpp_worker(args)
    import multiprocessing

    # Workers fork before any engine is built; each builds its own (behaviour counters are per worker
    # unless the policy points them at a shared store).
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=run_smpp_worker, args=(args, True), name=f"smpp-worker-{i}")
               for i in range(args.workers)]
    for w in workers:
        w.start()

    def forward(signum: int, frame: Any) -> None:
        for w in workers:
            if w.is_alive() and w.pid is not None:
                os.kill(w.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for w in workers:
        w.join()
    return max((w.exitcode or 0) for w in workers)


def run_smpp_worker(args: argparse.Namespace, reuse_port: bool = False) -> int:
    from skyshield.gateway.recording import open_recorder
    from skyshield.gateway.replies import open_reply_handler
    from skyshield.gateway.smpp import Firewall, SmppSettings, parse_hostport
    from skyshield.gateway.smpp_hold import open_held_messages
    from skyshield.policy import Policy

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("skyshield.gateway.smpp")
    policy = Policy.load(args.policy)
    listen, upstream = parse_hostport(args.listen), parse_hostport(args.upstream)
    settings = SmppSettings.from_policy(policy)
    in_process = settings.engine_process
    engine: Any = None
    if not args.no_scoring:
        try:
            if in_process:
                from skyshield.gateway.engine_process import EngineProcess

                # The child builds the engine and writes the records; this process keeps the event loop alone.
                engine = EngineProcess(policy, record=not args.no_record, answer_timeout=settings.engine_timeout)
                engine.start()
            else:
                from skyshield.assembly import build_engine

                engine = build_engine(policy)
                # The engine judges on a worker thread while the event loop relays; with CPython's default 5 ms
                # GIL switch interval the loop waits up to 5 ms each time the engine holds the GIL, which is
                # what dominated the added latency. Switch every 0.5 ms instead.
                sys.setswitchinterval(0.0005)
        except Exception as exc:  # noqa: BLE001 - run in the policy's fail mode and say so
            engine = None
            mode = "forwarding unjudged" if settings.fail_open else "refusing"
            log.error("the engine could not be built (%s): %s every message per gateway.smpp.fail_open", exc, mode)
    from skyshield.assembly import tune_gc_for_serving

    tune_gc_for_serving()
    recorder = None if args.no_record or args.no_scoring or in_process else open_recorder(policy)
    replies = open_reply_handler(policy)
    # Held messages are kept for review even with --no-record: the review needs their verdicts.
    held = None
    if not args.no_scoring and settings.hold_response == "queue":
        held = open_held_messages(policy)
    firewall = Firewall(policy, engine, upstream, scoring=not args.no_scoring, recorder=recorder, on_reply=replies,
                        settings=settings, held=held)

    async def start() -> None:
        await firewall.start(*listen, reuse_port=reuse_port)
        print(f"SMPP firewall on {listen[0]}:{listen[1]} -> SMS centre {upstream[0]}:{upstream[1]}"
              f"{' (pass-through, no scoring)' if args.no_scoring else ''}", flush=True)

    async def stop() -> None:
        await firewall.close()

    _serve_until_stopped(start, stop)
    if recorder is not None:
        recorder.close()
    if replies is not None:
        replies.close()
    if held is not None:
        held.close()
        held.store.close()
    print(firewall.scorer.stats())
    if firewall.scorer.process is not None:
        process = firewall.scorer.process
        print(f"engine process: {process.saved} records saved, {process.failed} failed, {process.restarts} restarts")
    print("decisions: " + ", ".join(f"{k}={v}" for k, v in firewall.counts.items()))
    return 0


def run_sip(args: argparse.Namespace) -> int:
    from skyshield.assembly import tune_gc_for_serving
    from skyshield.gateway.recording import open_recorder
    from skyshield.gateway.sip import build_screener, start_proxy
    from skyshield.gateway.smpp import parse_hostport
    from skyshield.policy import Policy

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    policy = Policy.load(args.policy)
    listen, next_hop = parse_hostport(args.listen), parse_hostport(args.next_hop)
    screening = not args.no_screening
    screener = build_screener(policy) if screening else None
    # Calls come one at a time: gather up to 50 ms of them per transaction rather than one transaction each.
    recorder = open_recorder(policy, linger=0.05) if screening and not args.no_record else None
    tune_gc_for_serving()
    if recorder is not None:
        # The recorder thread builds rows while the event loop relays: switch every 0.5 ms rather than CPython's
        # default 5 ms, so a datagram never waits that long for the GIL (as the SMPP firewall does).
        sys.setswitchinterval(0.0005)
    proxies = []

    async def start() -> None:
        proxies.append(await start_proxy(policy, screener, listen, next_hop, recorder=recorder, screening=screening))
        transports = "UDP and TCP" if proxies[0].tcp else "UDP"
        print(f"SIP screening proxy on {listen[0]}:{listen[1]} ({transports}) -> next hop {next_hop[0]}:{next_hop[1]}"
              f"{' (pass-through, no screening)' if not screening else ''}", flush=True)

    async def stop() -> None:
        for proxy in proxies:
            proxy.close()

    try:
        _serve_until_stopped(start, stop)
    finally:
        if recorder is not None:
            recorder.close()  # every decision taken is in the store before the process ends
    if proxies:
        print("decisions: " + ", ".join(f"{k}={v}" for k, v in proxies[0].counts.items()))
        if recorder is not None:
            print(f"recorded: {recorder.saved} saved, {recorder.failed} failed")
    return 0


def run_smsc_sim(args: argparse.Namespace) -> int:
    from skyshield.gateway.smsc_sim import main

    return main(["--listen", args.listen])
