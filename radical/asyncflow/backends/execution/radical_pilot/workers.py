"""The threads a RADICAL-Pilot backend calls RP from.

RP's client calls block (starting a pilot, submitting tasks, waiting for a
service to come up, closing the session), so the backend makes them from a
small pool of its own threads, started as needed up to a bound and kept for
the backend's life, instead of a thread per call.  The threads are daemons:
an RP call that hangs never keeps the process from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from typing import Any, Callable, List, Optional

#: Threads a backend calls RP from at most (one of them runs the health watch's loop).
POOL_SIZE = 5


class DaemonPool:
    """Up to ``size`` daemon threads running the calls given to :meth:`submit`, in order."""

    def __init__(self, name: str, size: int = POOL_SIZE) -> None:
        self._name = name
        self._size = size
        self._queue: 'queue.SimpleQueue[Optional[tuple]]' = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, func: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Run ``func(*args)`` in one of the threads; its future."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f'{self._name}: the thread pool is closed')
            if self._idle == 0 and len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f'{self._name}-{len(self._threads)}')
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1 if self._idle else 0
            self._queue.put((future, func, args))
        return future

    def run(self, func: Callable[..., Any], *args: Any) -> 'asyncio.Future':
        """:meth:`submit`, as an asyncio future of the running loop."""
        return asyncio.wrap_future(self.submit(func, *args))

    def call(self, func: Callable[..., Any], *args: Any, timeout: float) -> bool:
        """Run ``func(*args)`` and wait at most ``timeout`` s; True if it returned in time
        (its exception, if it raised, is raised here)."""
        future = self.submit(func, *args)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def close(self) -> None:
        """No new calls; idle threads end, busy ones after their call."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)

    @property
    def threads(self) -> int:
        """Threads started so far."""
        return len(self._threads)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, func, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func(*args))
                except BaseException as exc:        # handed to whoever waits
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1
