"""The reporter an engine gives its backends: the one way reports come back.

A backend calls :class:`EngineReporter` from any thread.  On the loop's
thread a report is handled at once; from other threads reports are queued
and handed to the loop in one place, in bursts, and handled at most
``DRAIN_SLICE`` seconds per loop turn so that a storm of reports never
stalls the loop.  Once the engine shut down, reports are dropped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..backends.execution.spec import TaskSpec

#: Seconds of reports the loop handles per turn; the rest waits for its next turn.
DRAIN_SLICE = 0.005


class EngineReporter:
    """The reporter one engine gives its backends; safe to call from any thread."""

    def __init__(self, outcomes: Any, loop: asyncio.AbstractEventLoop, log: Any) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._log = log
        self._lock = threading.Lock()
        self._pending: List[Tuple[Callable, TaskSpec, Any]] = []
        self._scheduled = False
        # Taken from _pending by the loop, handled up to _cursor (loop thread only).
        self._backlog: List[Tuple[Callable, TaskSpec, Any]] = []
        self._cursor = 0
        #: Set when the engine shut down: later reports are dropped.
        self.closed = False
        self._on_running = outcomes.on_running
        self._on_placed = outcomes.on_placed
        self._on_done = outcomes.on_done
        self._on_failed = outcomes.on_failed
        self._on_cancelled = outcomes.on_cancelled
        self._drop = outcomes.drop
        self._on_task_dict = outcomes.on_task_dict

    def running(self, task: TaskSpec, where: Optional[Sequence[str]] = None) -> None:
        """The task started to run (on the nodes ``where``, if given)."""
        if threading.get_ident() == self._loop_thread and not self.closed:
            self._on_running(task, where)
        else:
            self._hand_over(self._on_running, task, where)

    def placed(self, task: TaskSpec, where: Sequence[str]) -> None:
        """The nodes a running task runs on, learned after it was reported running."""
        if threading.get_ident() == self._loop_thread and not self.closed:
            self._on_placed(task, where)
        else:
            self._hand_over(self._on_placed, task, where)

    def done(self, task: TaskSpec, result: Any) -> None:
        """The task succeeded with ``result``."""
        if threading.get_ident() == self._loop_thread and not self.closed:
            self._on_done(task, result)
        else:
            self._hand_over(self._on_done, task, result)

    def failed(self, task: TaskSpec, error: BaseException) -> None:
        """The task failed with ``error``."""
        if threading.get_ident() == self._loop_thread and not self.closed:
            self._on_failed(task, error)
        else:
            self._hand_over(self._on_failed, task, error)

    def cancelled(self, task: TaskSpec) -> None:
        """The task was cancelled."""
        if threading.get_ident() == self._loop_thread and not self.closed:
            self._on_cancelled(task, None)
        else:
            self._hand_over(self._on_cancelled, task, None)

    def task_dict(self, task: Any, state: Any, service_callback: Any = None) -> None:
        """A report given as a task dict and a backend state (``engine.task_callbacks``)."""
        if threading.get_ident() == self._loop_thread and not self.closed:
            self._on_task_dict(task, state, service_callback)
        else:
            self._hand_over(self._dict_report, task, (state, service_callback))

    def hand_over(self, handler: Callable[[Any, Any], None], task: Any, value: Any) -> None:
        """Have the loop call ``handler(task, value)`` in order with the reports (from
        any thread, e.g. the journal's writer; dropped once the engine shut down)."""
        self._hand_over(handler, task, value)

    def _dict_report(self, task: Any, state_and_callback: Tuple[Any, Any]) -> None:
        self._on_task_dict(task, *state_and_callback)

    def _hand_over(self, handler: Callable, task: TaskSpec, value: Any) -> None:
        """Queue a report for the loop; one wake-up per burst of reports."""
        if self.closed:
            self._drop(task, 'the engine shut down')
            return
        with self._lock:
            self._pending.append((handler, task, value))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:            # the loop is closed: the run is over
            pass

    def _drain(self) -> None:
        """Handle the queued reports, in order, for at most DRAIN_SLICE seconds.

        What is left waits for the loop's next turn (timers, I/O and the
        scheduler go first), so a storm of reports does not stall the loop.
        Until the queue is empty the drain stays scheduled: the reporting
        threads do not wake the loop again.
        """
        backlog, start = self._backlog, self._cursor
        if start >= len(backlog):
            with self._lock:
                backlog, self._pending = self._pending, []
            self._backlog, start = backlog, 0
        deadline = time.perf_counter() + DRAIN_SLICE
        end = len(backlog)
        index = start
        while index < end:
            handler, task, value = backlog[index]
            index += 1
            if self.closed:
                self._drop(task, 'the engine shut down')
            else:
                try:
                    handler(task, value)
                except Exception:       # one bad report must not lose the others
                    self._log.exception('handling a report on %s failed',
                                       getattr(task, 'uid', None) or task.get('uid'))
            if not index & 255 and time.perf_counter() > deadline:
                break
        if index < end:
            self._cursor = index
        else:
            self._backlog, self._cursor = [], 0
            with self._lock:
                if not self._pending:
                    self._scheduled = False
                    return
        self._loop.call_soon(self._drain)
