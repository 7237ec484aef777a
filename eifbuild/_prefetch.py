"""Run a chunk producer on its own thread, a few chunks ahead of the consumer.

The EIF writer's consumer hashes (two SHA-384 streams and a CRC, on two threads) and writes;
the producer walks the rootfs, inflates layer content and lays out cpio. hashlib and zlib
release the GIL on large buffers, so with the producer on a third thread the inflate and the
hashing run side by side on two cores instead of one after the other. Memory: at most
``depth`` chunks in flight.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetched(items: Iterator[T], depth: int = 4, name: str = "eifbuild-produce") -> Iterator[T]:
    """Yield ``items`` in order, produced on a helper thread; its exceptions re-raise here.

    Closing the returned generator (or an exception in the consumer) stops the producer and
    closes ``items`` on the producer's thread.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        end: object = _DONE
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            end = _Failure(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        put(end)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            got = q.get()
            if got is _DONE:
                return
            if isinstance(got, _Failure):
                raise got.exc
            yield got  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
