"""Pause CPython's cyclic garbage collector while a batch builds its results.

A batch of 4,096 messages leaves some 80,000 small container objects (analyses, entity lists,
predictions, probability dicts), and every one survives until the caller is done with it. With the
collector on, each 700 new objects start a young-generation collection that walks all of them again,
and every tenth one walks the older generation as well: in a process holding a large heap this cost
as much as the scoring itself (``bench/text_throughput.py``). Paused, the objects are walked once,
at the next collection after the batch. Nothing is leaked: reference counting frees garbage as usual,
and the collector is only ever switched back on if it was on before.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
