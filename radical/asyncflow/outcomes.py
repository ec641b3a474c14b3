"""How a task's outcome reaches its future, its dependents and its backend.

Backends report through the engine's :class:`EngineReporter`, from any
thread; reports from other threads are handed to the loop in batches, in
one place.  :class:`Outcomes` then settles the task's future (or tries the
task again, as its retry policy allows), and the done-callback on every
future releases or aborts the dependents in the graph.  A report about a
task the engine no longer tracks (it finished, or the report is about an
earlier attempt, or the engine shut down) is dropped, logged at debug level.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .backends.execution.spec import CommandResult, TaskSpec, outcome_fields
from .errors import DependencyFailure
from .graph import NodeState, transition
from .records import BLOCK, ComponentRecord, task_dict
from .run_stats import STATS

#: Seconds of reports the loop handles per turn; the rest waits for its next turn.
DRAIN_SLICE = 0.005


class EngineReporter:
    """The reporter one engine gives its backends; safe to call from any thread."""

    def __init__(self, outcomes: 'Outcomes', loop: asyncio.AbstractEventLoop, log: Any) -> None:
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
                    self._log.exception('handling a report on %s failed', task.uid)
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


class Outcomes:
    """Settles the futures of one engine's components from backend reports."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._records: Dict[str, ComponentRecord] = engine._records
        self._graph = engine._graph
        self._scheduler = engine._scheduler
        self._log = engine.log
        self._loop = engine.loop
        self._background: set = set()        # backend cancel calls in flight
        #: Reports dropped because no task of this engine was their subject (any more).
        self.dropped = 0
        #: The engine's CampaignRecorder, if it has a journal.
        self.recorder: Any = None
        # Subclasses of the engine may override the documented handlers;
        # then they are called with the task dict, as they expect.
        cls = type(engine)
        base = _engine_base(cls)
        self._custom_success = cls.handle_task_success is not base.handle_task_success
        self._custom_failure = cls.handle_task_failure is not base.handle_task_failure
        #: The one done-callback every future of the engine gets.
        self.done_callback = self.on_future_done

    # ------------------------------------------------------------- reports

    def drop(self, spec: TaskSpec, why: str) -> None:
        """Count and log (debug) a report that is about no task this engine runs now."""
        self.dropped += 1
        self._log.debug('report on %s (attempt %d) dropped: %s', spec.uid, spec.attempt, why)

    def _current(self, spec: TaskSpec, what: str) -> Optional[ComponentRecord]:
        """The record ``spec`` is the current attempt of, else None (dropped)."""
        record = self._records.get(spec.uid)
        current = record.task_spec if record is not None else None
        if current is None or current.attempt != spec.attempt:
            self.drop(spec, f'{what}, but the engine runs no such task (attempt) now')
            return None
        return record

    def on_running(self, spec: TaskSpec, where: Optional[Sequence[str]] = None) -> None:
        """The backend started the task: SUBMITTED -> RUNNING, and its timeout starts."""
        record = self._current(spec, 'RUNNING')
        if record is None or record.state is not NodeState.SUBMITTED:
            return
        transition(record, NodeState.RUNNING)
        if where:
            self._engine._monitor.placed(where)
        attempts = record.attempts
        if attempts is not None and attempts.policy.timeout:
            self.arm_timeout(record)          # a timeout counts running time only

    def on_placed(self, spec: TaskSpec, where: Sequence[str]) -> None:
        """A placement learned late: counted per node, and a PLACED profile event."""
        record = self._current(spec, 'PLACED')
        if record is not None and where:
            self._engine._monitor.placed(where, record.uid)

    def on_done(self, spec: TaskSpec, result: Any) -> None:
        """The task succeeded: resolve its future and release its dependents."""
        record = self._records.get(spec.uid)     # _current(), inlined: once per task
        current = record.task_spec if record is not None else None
        if current is None or current.attempt != spec.attempt:
            self.drop(spec, 'DONE, but the engine runs no such task (attempt) now')
            return
        future = record.future
        if future is None or future.done():
            self.drop(spec, 'DONE, but its future is settled already')
            return
        record.backend_final = True
        # Settled right here, not by the done-callback a loop turn later: the
        # dependents are released in the same step (one hop less per chain
        # link).  Other outcomes, user cancellation included, still arrive
        # through the callback.
        direct = future.remove_done_callback(self.done_callback)
        if self._custom_success:
            task = task_dict(record)
            task.update(outcome_fields(spec.type, result))
            self._engine.handle_task_success(task, future)
        else:
            future.set_result(result.stdout if type(result) is CommandResult else result)
        if self.recorder is not None and future.done() and not future.cancelled() \
                and future.exception() is None:
            self.recorder.record_done(record, future.result())
        if direct:
            if future.done():
                self.on_future_done(future)
            else:       # an override of handle_task_success left it pending
                future.add_done_callback(self.done_callback)

    def on_failed(self, spec: TaskSpec, error: BaseException) -> None:
        """The task failed: try again if its policy allows, else fail its future."""
        record = self._current(spec, 'FAILED')
        if record is None:
            return
        future = record.future
        if future is None or future.done():
            self.drop(spec, 'FAILED, but its future is settled already')
            return
        if record.attempts is not None and self.retry(record, error):
            return
        record.backend_final = True
        if self._custom_failure:
            task = task_dict(record)
            task['exception'] = error
            self._engine.handle_task_failure(task, future)
        else:
            future.set_exception(error)

    def on_cancelled(self, spec: TaskSpec, _: Any = None) -> None:
        """The backend cancelled the task."""
        record = self._current(spec, 'CANCELED')
        if record is None:
            return
        record.backend_final = True
        future = record.future
        if future is not None and not future.done():
            future.cancel()

    def on_task_dict(self, task: Any, state: Any, service_callback: Optional[Callable]) -> None:
        """A report given as a task dict and a state of its backend (``task_callbacks``)."""
        task_dct = task if isinstance(task, dict) else task.as_dict()
        record = self._records.get(task_dct.get('uid'))
        if record is None or self._engine._reporter.closed:
            self._log.debug('state %s of unknown task %s dropped', state, task_dct.get('uid'))
            return
        future = record.future
        if future is None:
            return      # it succeeded, and the program has let go of its future
        if service_callback is not None:
            service_callback(future, task, state)
        spec = record.task_spec
        if spec is None:
            return
        states = self._engine._route_of(record).states
        if state == states.DONE:
            self.on_done(spec, task_dct.get('return_value') if spec.is_function
                         else task_dct.get('stdout'))
        elif state == states.FAILED:
            error = task_dct.get('exception') or task_dct.get('stderr') or \
                f"task '{record.name}' failed with an unknown error"
            self.on_failed(spec, error if isinstance(error, BaseException)
                           else RuntimeError(str(error)))
        elif state == states.CANCELED:
            self.on_cancelled(spec)
        elif state == states.RUNNING:
            self.on_running(spec)

    # ------------------------------------------------------------ the graph

    def on_future_done(self, future: asyncio.Future) -> None:
        """A component finished: release or abort its dependents."""
        record: ComponentRecord = future._af_record
        attempts = record.attempts
        if attempts is not None and attempts.timer is not None:
            attempts.timer.cancel()
            attempts.timer = None
        if future.cancelled():
            STATS.canceled += 1
            submitted = record.state in (NodeState.SUBMITTED, NodeState.RUNNING)
            for dependent in self._graph.abort(record, NodeState.CANCELED):
                dependent.future.cancel()
            if submitted and not record.backend_final:
                self.cancel_in_backend(record)
        elif future.exception() is not None:
            STATS.failed += 1
            error = future.exception()
            root = error.root_cause if isinstance(error, DependencyFailure) else error
            for dependent in self._graph.abort(record, NodeState.FAILED):
                if dependent.future.done():     # another failed dependency got there first
                    continue
                dependent.future.set_exception(dependency_failure(dependent, root))
        else:
            STATS.done += 1
            released = self._graph.succeed(record)
            if released:
                scheduler = self._scheduler
                if not scheduler.ready:     # else the scheduler is awake or about to be
                    scheduler.wakeup.set()
                scheduler.ready.extend(released)
            # The result lives on in the program's future alone.
            record.release_future()
        record.args = record.kwargs = None
        record.dependencies = None
        record.task_spec = None

    def finish_after_dependency(self, record: ComponentRecord, dep: ComponentRecord) -> None:
        """Settle a new component whose dependency ``dep`` had failed or was cancelled."""
        if dep.state is NodeState.CANCELED:
            record.future.cancel()
            return
        error = dep.future.exception()
        root = error.root_cause if isinstance(error, DependencyFailure) else error
        record.future.set_exception(dependency_failure(record, root))

    def cancel_in_backend(self, record: ComponentRecord) -> None:
        """Tell the backend of a submitted task that it is cancelled (in the background)."""
        if record.spec.kind is BLOCK:
            if record.block_task is not None:
                record.block_task.cancel()
            return
        try:
            result = self._engine._route_of(record).driver.cancel_task(record.uid)
        except Exception as exc:
            self._log.warning('cancelling %s in the backend failed: %s', record.uid, exc)
            return
        if inspect.isawaitable(result):
            self.in_background(result)

    def in_background(self, awaitable: Any) -> None:
        """Run ``awaitable``; shutdown waits for it (bounded), failures are logged."""
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.warning('backend call failed: %s', task.exception())

    async def wait_background(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for the backend calls still running."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)

    # ------------------------------------------------- retries and timeouts

    def arm_timeout(self, record: ComponentRecord) -> None:
        """Start (again) the timer of the current attempt's timeout."""
        attempts = record.attempts
        if attempts.timer is not None:
            attempts.timer.cancel()
        attempts.timer = self._loop.call_later(attempts.policy.timeout, self._on_timeout,
                                               record, attempts.attempt)

    def _on_timeout(self, record: ComponentRecord, attempt: int) -> None:
        attempts = record.attempts
        attempts.timer = None
        if record.future.done() or attempts.attempt != attempt:
            return
        self.cancel_in_backend(record)
        error = TimeoutError(f"task '{record.name}' ({record.uid}) did not finish within its "
                             f"timeout of {attempts.policy.timeout:g} s (attempt {attempt}); "
                             f"raise timeout= or check why it hangs")
        if not self.retry(record, error):
            record.future.set_exception(error)

    def retry(self, record: ComponentRecord, error: Optional[BaseException]) -> bool:
        """Schedule another attempt if the policy allows one; True if it did."""
        attempts = record.attempts
        engine = self._engine
        if attempts.attempt > attempts.policy.retries or engine._shutdown_event.is_set():
            return False
        attempts.attempt += 1
        delay = attempts.policy.delay(attempts.attempt)
        self._log.warning('task %s (%s) failed (%s); attempt %d of %d in %.1f s', record.name,
                          record.uid, error, attempts.attempt, attempts.policy.retries + 1,
                          delay)
        # Reports about the earlier attempt are stale from now on.
        record.task_spec = record.task_spec._replace(attempt=attempts.attempt)
        transition(record, NodeState.READY)
        self._loop.call_later(delay, self._resubmit, record)
        return True

    def _resubmit(self, record: ComponentRecord) -> None:
        if record.future.done() or self._engine._shutdown_event.is_set():
            return
        self.in_background(self._scheduler.dispatch([record]))


def dependency_failure(record: ComponentRecord, root: BaseException) -> DependencyFailure:
    """What ``record`` raises when dependencies of it failed (``root``: the first cause)."""
    failed = [dep for dep in record.dependencies or () if dep.state is NodeState.FAILED]
    names = ', '.join(f"'{dep.name}' ({dep.uid})" for dep in failed) or 'a dependency'
    return DependencyFailure(
        f"Cannot execute '{record.name}' due to dependency failure: {names} failed "
        f"(root cause: {root!r})",
        failed_dependencies=[dep.name for dep in failed], root_cause=root)


def _engine_base(cls: type) -> type:
    """The engine class that defines the documented handlers (not a user subclass)."""
    for klass in reversed(cls.__mro__):
        if 'handle_task_success' in vars(klass):
            return klass
    return cls
