"""Process tuning for the long-running commands (worker, serve, the benchmarks).

CPython's cyclic garbage collector runs a full pass over every tracked object now and then;
with Django's import graph in memory that costs milliseconds, and the ledger's batch engine
allocates enough small objects to trigger it every few hundred transfers. ``tune_gc`` moves
what start-up allocated out of the collector's sight (``gc.freeze``) and lets more young
objects pile up before a pass; reference counting still frees almost everything at once.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # CPython's default is 700


def tune_gc() -> None:
    """Freeze start-up objects and make young-generation passes rarer; call once set up."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
