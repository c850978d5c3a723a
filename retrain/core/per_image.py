"""Where per-image work runs, as a value the engines take: a map over keyed items, here in threads or on a cluster.

The audit's decoding pass takes one; for ``--executor ray`` the shell passes the Ray executor's
(``retrain.training.ray_executor.ray_map``), so the engines never import Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# (key, arguments): the key comes back with the result, whose order an executor need not keep.
Item = tuple[int, tuple]
ItemMap = Callable[[Callable[..., Any], Sequence[Item]], Iterator[tuple[int, Any]]]


def thread_map(function: Callable[..., Any], items: Sequence[Item], workers: int = 2) -> Iterator[tuple[int, Any]]:
    """``function(*arguments)`` for each item in this process's threads, in order (hashing and decoding release the
    GIL)."""
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda item: function(*item[1]), items)
        yield from zip((key for key, _ in items), results, strict=True)
