"""Build the engine a policy asks for: which analyser, which model, which detectors run.

The only module that knows every detector; ingresses (API, CLI, gateways) call
:func:`build_engine` and never wire detectors themselves.
"""

from __future__ import annotations

import gc
from pathlib import Path

from skyshield.config import Settings
from skyshield.engine import Detector, Engine
from skyshield.policy import Policy


def build_engine(policy: Policy | str | Path | None = None, settings: Settings | None = None) -> Engine:
    """``settings`` names the database stateful detectors share with the caller (default: load_settings())."""
    if not isinstance(policy, Policy):
        policy = Policy.load(policy)
    from skyshield.text.classify import TextModelDetector, load_model
    from skyshield.text.extract import analyse_batch
    from skyshield.text.rules import StructureDetector

    model = load_model(policy.section("detectors.text_model")["path"] or None)
    detectors: list[Detector] = []
    if policy.section("detectors.structure")["enabled"]:
        detectors.append(StructureDetector(policy))
    if policy.section("detectors.text_model")["enabled"]:
        detectors.append(TextModelDetector(float(policy.section("detectors.text_model")["min_probability"])))
    if policy.section("detectors.compliance")["enabled"]:
        from skyshield.compliance.detector import ComplianceDetector

        # opens the consent ledger (the settings' database) on first use
        detectors.append(ComplianceDetector(policy, settings=settings))
    if policy.section("detectors.behaviour")["enabled"]:
        from skyshield.behaviour.detector import BehaviourDetector

        detectors.append(BehaviourDetector(policy))  # shares state with behaviour.calls.CallScreener(policy)
    if policy.section("detectors.blocklist")["enabled"]:
        from skyshield.disposal.blocks import BlocklistDetector

        detectors.append(BlocklistDetector(policy, settings=settings))  # operator blocks; opens the database lazily
    return Engine(policy, analyse_batch, model, detectors)


def tune_gc_for_serving() -> None:
    """Call once in a long-running process (server, gateway, batch job) after its engine is built.

    Every message leaves small objects in the detectors' per-number state (deques, sets), and CPython's
    cyclic collector rescans all of them on each full collection: on a busy engine that ran every couple of
    batches and cost a third of the time (``bench/engine_throughput.py`` prints both). ``gc.freeze`` moves
    what start-up loaded (models, policy, lists) out of the collector's sight for good, and a larger first
    threshold makes full collections rare; garbage is still freed by reference counting as before.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
