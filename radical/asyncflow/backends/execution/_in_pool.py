"""Running a function task's body in a pool's worker instead of on the event loop.

A scientist's ``async def`` task is usually a wrapper around blocking code;
on the engine's loop it would stall every other task, report and signal.
:class:`ThreadLoops` runs such a body to completion in the pool thread that
picked it up, on an event loop that thread keeps for the next body (making
and closing a loop per task, as ``asyncio.run`` does, costs more than a no-op
task itself).  Tasks the body started and left behind are cancelled when it
returns, as ``asyncio.run`` would.

For a process pool, :func:`shippable` names a module-level function by
reference and pickles anything else (closures, lambdas, nested functions)
by value with cloudpickle.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from ...errors import UsageTypeError
from ._functions import FunctionRef


class RunningBody:
    """A body handed to a pool thread: lets the loop's side cancel it there."""

    __slots__ = ('_cancelled', '_lock', '_loop', '_task')

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._task: Optional[asyncio.Task] = None
        self._cancelled = False

    def cancel(self) -> None:
        """Cancel the body at its next ``await`` (a blocking call runs on)."""
        with self._lock:
            self._cancelled = True
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._task.cancel)

    def _started(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> bool:
        with self._lock:
            if self._cancelled:
                return False
            self._loop, self._task = loop, task
            return True

    def _finished(self) -> None:
        with self._lock:
            self._loop = self._task = None


class ThreadLoops:
    """One event loop per pool thread, made on first use, closed by :meth:`close`."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._loops: List[asyncio.AbstractEventLoop] = []

    def _loop(self) -> Tuple[asyncio.AbstractEventLoop, set]:
        local = self._local
        loop = getattr(local, 'loop', None)
        if loop is None:
            loop = asyncio.new_event_loop()
            spawned: set = set()

            def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
                task = asyncio.Task(coro, loop=loop, **kwargs)
                spawned.add(task)
                task.add_done_callback(spawned.discard)
                return task

            loop.set_task_factory(factory)
            local.loop, local.spawned = loop, spawned
            with self._lock:
                self._loops.append(loop)
        return loop, local.spawned

    def run(self, func: Callable, args: Tuple, kwargs: Dict[str, Any],
            handle: Optional[RunningBody] = None, started: Optional[Callable] = None) -> Any:
        """Call ``func(*args, **kwargs)`` (a coroutine function) here, to completion;
        ``started()`` first."""
        if started is not None:
            started()
        loop, spawned = self._loop()
        main = loop.create_task(func(*args, **kwargs))
        if handle is not None and not handle._started(loop, main):
            main.cancel()
        try:
            return loop.run_until_complete(main)
        finally:
            if handle is not None:
                handle._finished()
            if spawned:
                _cancel_leftovers(loop, spawned)

    def close(self) -> None:
        """Close the loops of threads that are idle (a busy one is left to its thread)."""
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            if not loop.is_running() and not loop.is_closed():
                loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop, spawned: set) -> None:
    leftovers = [task for task in spawned if not task.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))


class PickledFunction:
    """A function shipped by value (cloudpickle): closures, lambdas, nested functions."""

    __slots__ = ('payload',)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def resolve(self) -> Callable:
        import cloudpickle
        return cloudpickle.loads(self.payload)


def shippable(func: Callable, task_name: str) -> Any:
    """What crosses to a worker process for ``func``: a name if it has one, else its pickle."""
    try:
        return FunctionRef.of(func, task_name)
    except TypeError:
        pass
    try:
        import cloudpickle
    except ImportError:
        raise UsageTypeError(f"task '{task_name}': {func.__qualname__} is defined inside another "
                        f"function; a ProcessPoolExecutor needs the 'cloudpickle' package to "
                        f"ship it (pip install cloudpickle), or move it to module level") from None
    try:
        return PickledFunction(cloudpickle.dumps(func))
    except Exception as exc:
        raise UsageTypeError(f"task '{task_name}': {func.__qualname__} cannot be sent to a worker "
                        f"process: {exc}") from exc


#: The loops of a worker process's threads (used only inside pool workers,
#: which live as long as the pool: nothing to close).
_WORKER_LOOPS = ThreadLoops()


def call_in_worker(ref: Any, args: Tuple, kwargs: Dict[str, Any],
                   marker: Optional[str] = None) -> Any:
    """Worker-side entry point: resolve ``ref`` (a name or a pickle) and call it.

    ``marker``: a file to write this worker's pid into first, so the parent
    knows which process runs the task.
    """
    if marker:
        with open(marker, 'w', encoding='ascii') as handle:
            handle.write(str(os.getpid()))
    func = ref.resolve()
    if inspect.iscoroutinefunction(func):
        return _WORKER_LOOPS.run(func, args, kwargs)
    return func(*args, **kwargs)
