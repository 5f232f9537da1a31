"""The order of `make test`'s workers (tests/kit/order.py): every first block starts with long tests."""

from __future__ import annotations

import pytest

from tests.kit.order import balanced_order, block_sizes


def test_block_sizes_are_what_worksteal_sends() -> None:
    assert block_sizes(1666, 5) == [333, 333, 333, 333, 334]
    assert sum(block_sizes(7, 3)) == 7


@pytest.mark.parametrize("workers", [2, 3, 5, 8])
def test_each_block_starts_with_its_share_of_the_long_tests(workers: int) -> None:
    # collected by folder: the long end-to-end tests together near the end
    ids = [f"short{i}" for i in range(100)] + [f"long{i}" for i in range(10)] + [f"tail{i}" for i in range(30)]
    durations = {f"long{i}": 60.0 - i for i in range(10)}
    order = balanced_order(ids, durations, workers)
    assert sorted(order) == sorted(ids)
    blocks, start = [], 0
    for size in block_sizes(len(ids), workers):
        blocks.append(order[start:start + size])
        start += size
    longs = [sum(1 for t in b if t.startswith("long")) for b in blocks]
    assert max(longs) - min(longs) <= 1, longs
    for block in blocks:  # long ones first in each block, then the short ones
        kinds = [t.startswith("long") for t in block]
        assert kinds == sorted(kinds, reverse=True), block
    # the first block sent is never the only one with long tests (the fault this order removes)
    assert sum(1 for n in longs if n) == min(workers, 10)


def test_one_worker_keeps_the_collection_order() -> None:
    assert balanced_order(["b", "a"], {"a": 9.0}, 1) == ["b", "a"]
