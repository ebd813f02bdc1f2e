"""Where per-article work runs: in-process, a local process pool, or a Ray cluster.

All executors expose the same thing — an *ordered*, *bounded* map — because the build's
writer must see results in discovery order (reproducible dedup, byte-exact resume) and must
never buffer more than a few batches (bounded memory on millions of articles). Neither
``multiprocessing.Pool.imap`` (its feeder thread drains the input eagerly) nor
``ray.util.ActorPool`` gives both guarantees, so the window is kept here.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import Any, Literal, TypeVar

T = TypeVar("T")
R = TypeVar("R")

ExecutorName = Literal["local", "ray"]


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def map_ordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    executor: ExecutorName = "local",
    workers: int | None = None,
    window: int | None = None,
    ray_address: str | None = None,
) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in input order, with at most ``window`` in flight.

    ``workers=1`` with the local executor runs in this process (simplest to debug and profile).
    ``fn`` must be a picklable module-level function.
    """
    workers = workers or default_workers()
    window = window or max(2, 2 * workers)
    if executor == "local" and workers == 1:
        yield from map(fn, items)
    elif executor == "local":
        yield from _map_process_pool(fn, items, workers, window)
    elif executor == "ray":
        yield from _map_ray(fn, items, workers, window, ray_address)
    else:
        raise ValueError(f"unknown executor {executor!r}: use 'local' or 'ray'")


def _map_process_pool(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int) -> Iterator[R]:
    # forkserver: no fork of a process that runs threads (Rich's refresh thread), cheap restarts.
    # The server imports the task's module once and every worker forks from it with that module
    # (lxml, Pillow, libvips, …) already loaded, instead of each importing it again at start-up.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([fn.__module__])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _map_ray(
    fn: Callable[[T], R], items: Iterable[T], workers: int, window: int, address: str | None
) -> Iterator[R]:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the Ray executor needs Ray: pip install 'biomedclip[ray]'") from exc

    started_here = not ray.is_initialized()
    if started_here:
        init_args: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            init_args["address"] = address
        else:
            init_args["num_cpus"] = workers
        ray.init(**init_args)
    remote_fn = ray.remote(num_cpus=1, max_retries=2)(fn)
    pending: deque[Any] = deque()
    try:
        for item in items:
            pending.append(remote_fn.remote(item))
            if len(pending) >= window:
                yield ray.get(pending.popleft())
        while pending:
            yield ray.get(pending.popleft())
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
