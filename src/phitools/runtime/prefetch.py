"""Overlap producing items (reading, decompressing, parsing) with consuming them (encoding, scoring)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Iterate `items` in a background thread, `depth` items ahead. Exceptions re-raise in the consumer.

    Pays off when the consumer releases the GIL (tokenizers' encode_batch, numpy, zstd do).
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((True, item))
            q.put((True, _DONE))
        except BaseException as e:  # handed to the consumer, which raises it with its traceback
            q.put((False, e))

    t = threading.Thread(target=produce, name="phitools-prefetch", daemon=True)
    t.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        # drain so a blocked producer can see `stop` and finish
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(timeout=0.05)
