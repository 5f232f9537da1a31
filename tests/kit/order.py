"""The order in which `make test`'s xdist workers get the tests: the longest start first, on every worker.

pytest-xdist's `worksteal` scheduler hands each worker one contiguous block of the collection (block i
holds `remaining // (workers - i)` tests) and later lets idle workers steal from the back of a busy
worker's queue. Collected by folder, the end-to-end runs sit together in one block, so one worker
starts them one after the other while the others run out of work and can steal only the short tests
behind them. Here the tests are dealt, longest first, to one block per worker in a snake order
(0..W-1, W-1..0, ...), so each block starts with its share of the long tests and ends with short
ones, which are the ones stolen. Durations come from tests/durations.json (seconds, measured by
`make test-durations`); a test not listed counts as short. A stale file only changes the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

UNLISTED_S = 0.2


def block_sizes(count: int, workers: int) -> list[int]:
    """The sizes of the blocks xdist's worksteal scheduler sends first, in order."""
    sizes, left = [], count
    for i in range(workers):
        size = left // (workers - i)
        sizes.append(size)
        left -= size
    return sizes


def balanced_order(ids: Sequence[str], durations: Mapping[str, float], workers: int) -> list[str]:
    """`ids` reordered so that each of the first blocks xdist sends holds a fair share of the long tests,
    longest first. Deterministic: every worker must compute the same order from the same collection."""
    if workers < 2 or len(ids) < 2:
        return list(ids)
    # (a stable sort: among equal durations the collection order is kept)
    by_length = sorted(ids, key=lambda i: -durations.get(i, UNLISTED_S))
    sizes = block_sizes(len(ids), workers)
    blocks: list[list[str]] = [[] for _ in range(workers)]
    turn = [*range(workers), *reversed(range(workers))]
    position = 0
    for test in by_length:
        # the next block in snake order that still has room
        while len(blocks[turn[position % len(turn)]]) >= sizes[turn[position % len(turn)]]:
            position += 1
        blocks[turn[position % len(turn)]].append(test)
        position += 1
    return [test for block in blocks for test in block]
