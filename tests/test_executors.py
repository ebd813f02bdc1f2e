"""Executors: ordered results and a bounded number of tasks in flight."""

from __future__ import annotations

import os
import time

import pytest

from biomedclip.data.executors import batched, map_ordered


def _slow_square(x: int) -> tuple[int, int]:
    # Later items finish first, so ordering is the executor's work, not luck.
    time.sleep(0.02 * (5 - x % 5))
    return x * x, os.getpid()


def test_batched() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_local_map_is_ordered(workers: int) -> None:
    out = list(map_ordered(_slow_square, range(20), executor="local", workers=workers))
    assert [v for v, _ in out] == [x * x for x in range(20)]
    pids = {pid for _, pid in out}
    if workers == 1:
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids


def test_local_map_pulls_input_lazily() -> None:
    pulled: list[int] = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield i

    results = map_ordered(_slow_square, source(), executor="local", workers=2, window=4)
    first = next(results)
    assert first[0] == 0
    assert len(pulled) <= 5  # the window, not the whole input
    results.close()


def test_unknown_executor() -> None:
    with pytest.raises(ValueError, match="unknown executor"):
        list(map_ordered(_slow_square, range(2), executor="spark", workers=2))  # type: ignore[arg-type]
