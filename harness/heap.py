"""Keep Python's cyclic garbage collector off what a long-running harness process loaded at startup.

The harness's processes import large packages (the kubernetes client, pydantic, MLServer) and then run
for minutes: the pytest session that runs the suites and hosts the simulated cluster, the load client,
the simulated mesh, MLServer's fork server. With CPython's default thresholds (700, 10, 10) every full
collection traverses that whole startup heap again; measured on the sim (docs/benchmarks.md), a suite
run's full collections took 0.1 s each and the harness's own test workers spent 9-13 % of their CPU in
the collector. A pause of 0.1 s is also a stall in whatever the process serves or measures just then.

`freeze_startup_heap()` moves every object allocated so far into the permanent generation (`gc.freeze`:
never traversed again, and never freed: right for modules, classes, the parsed profile and collected
tests, which live as long as the process) and collects the young generation every 50,000 net
allocations instead of every 700. Reference cycles made later are still found. In a process that forks
without exec (the fork server) it also keeps each child from writing to, and so copying, the parent's
pages, the use `gc.freeze` was made for.
"""

from __future__ import annotations

import gc

# (young, middle, old): the young generation is collected after this many net container allocations,
# each older one after that many collections of the one below it.
THRESHOLDS = (50_000, 20, 20)


def freeze_startup_heap() -> None:
    """Call once the process has imported and parsed what it keeps for its lifetime.

    Only the first call freezes (a fork inherits its parent's): a later one would also freeze whatever
    was alive by then and dies later in a reference cycle (an in-process simulated cluster, say, when a
    test calls the CLI's `main` while one runs), and a frozen cycle is never freed."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
    gc.set_threshold(*THRESHOLDS)
