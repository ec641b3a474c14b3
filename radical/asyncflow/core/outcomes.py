"""How a task's outcome reaches its future, its dependents and its backend.

Backends report through the engine's
:class:`~.reporter.EngineReporter`; :class:`Outcomes` then settles the
task's future (or tries the task again, as its retry policy allows), and
the done-callback on every future releases or aborts the dependents in the
graph.  A report about a task the engine no longer tracks (it finished, or
the report is about an earlier attempt, or the engine shut down) is dropped,
logged at debug level.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Dict, Optional, Sequence

from ..backends.execution.spec import CommandResult, TaskSpec, outcome_fields
from ..errors import DependencyFailure
from .graph import DependencyGraph, NodeState, transition
from .handlers import CustomHandlers
from .interfaces import TaskRecorder
from .records import BLOCK, Attempt, ComponentRecord
from .routing import Routes
from .scheduler import ReadyQueue
from .views import task_dict


class Outcomes:
    """Settles the futures of one engine's components from backend reports."""

    def __init__(self, *, records: Dict[str, ComponentRecord], graph: DependencyGraph,
                 ready: ReadyQueue, routes: Routes, loop: asyncio.AbstractEventLoop, log: Any,
                 placed: Callable[..., None], stopping: asyncio.Event,
                 handlers: Optional[CustomHandlers] = None,
                 recorder: Optional[TaskRecorder] = None) -> None:
        self._records = records
        self._graph = graph
        self._ready = ready
        self._routes = routes
        self._loop = loop
        self._log = log
        self._placed = placed
        self._stopping = stopping
        # An engine subclass's own handle_task_*/handle_component_* (None: ours).
        self._handlers = handlers
        self._custom_success = handlers is not None and handlers.success is not None
        self._custom_failure = handlers is not None and handlers.failure is not None
        self._custom_cancel = handlers is not None and handlers.cancellation is not None
        #: The campaign recorder, while the engine has a journal open.
        self.recorder = recorder
        self._background: set = set()        # backend cancel calls in flight
        #: Reports dropped because no task of this engine was their subject (any more).
        self.dropped = 0

    # ------------------------------------------------------------- reports

    def drop(self, subject: Any, why: str) -> None:
        """Count and log (debug) a report that is about no task this engine runs now."""
        self.dropped += 1
        uid = subject.get('uid') if isinstance(subject, dict) else getattr(subject, 'uid', '?')
        self._log.debug('report on %s dropped: %s', uid, why)

    def _current(self, spec: TaskSpec, what: str) -> Optional[ComponentRecord]:
        """The record ``spec`` is the current attempt of, else None (dropped)."""
        record = self._records.get(spec.uid)
        attempt = record.attempt if record is not None else None
        if attempt is None or attempt.spec.attempt != spec.attempt:
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
            self._placed(where)
        if record.policy.timeout:
            self.arm_timeout(record)          # a timeout counts running time only

    def on_placed(self, spec: TaskSpec, where: Sequence[str]) -> None:
        """A placement learned late: counted per node, and a PLACED profile event."""
        record = self._current(spec, 'PLACED')
        if record is not None and where:
            self._placed(where, record.uid)

    def on_done(self, spec: TaskSpec, result: Any) -> None:
        """The task succeeded: resolve its future and release its dependents."""
        record = self._records.get(spec.uid)     # _current(), inlined: once per task
        attempt = record.attempt if record is not None else None
        if attempt is None or attempt.spec.attempt != spec.attempt:
            self.drop(spec, 'DONE, but the engine runs no such task (attempt) now')
            return
        future = record.future
        if future is None or future.done():
            self.drop(spec, 'DONE, but its future is settled already')
            return
        recorder = self.recorder
        if recorder is not None and not self._custom_success and recorder.defer(
                record, spec, result.stdout if type(result) is CommandResult else result):
            record.backend_final = True
            attempt.stop_timer()        # it finished: no timeout while its row is written
            return      # settled by settle_durable() once its journal row is durable
        self._settle_done(record, spec, result, future, recorded=False)

    def settle_durable(self, spec: TaskSpec, value: Any) -> None:
        """A deferred task whose journal row is durable now: settle its future."""
        record = self._current(spec, 'DONE and journaled')
        if record is None:
            return
        future = record.future
        if future is None or future.done():
            self.drop(spec, 'DONE and journaled, but its future is settled already')
            return
        self._settle_done(record, spec, value, future, recorded=True)

    def _settle_done(self, record: ComponentRecord, spec: TaskSpec, result: Any,
                     future: asyncio.Future, recorded: bool) -> None:
        record.backend_final = True
        # Settled right here, not by the done-callback a loop turn later: the
        # dependents are released in the same step (one hop less per chain
        # link).  Other outcomes, user cancellation included, still arrive
        # through the callback.
        direct = future.remove_done_callback(self.on_future_done)
        if self._custom_success:
            task = task_dict(record)
            task.update(outcome_fields(spec.type, result))
            self._handlers.success(task, future)
        else:
            future.set_result(result.stdout if type(result) is CommandResult else result)
        if self.recorder is not None and not recorded and future.done() \
                and not future.cancelled() and future.exception() is None:
            self.recorder.record_done(record, future.result())
        if direct:
            if future.done():
                self.on_future_done(future)
            else:       # an override of handle_task_success left it pending
                future.add_done_callback(self.on_future_done)

    def on_failed(self, spec: TaskSpec, error: BaseException) -> None:
        """The task failed: try again if its policy allows, else fail its future."""
        record = self._current(spec, 'FAILED')
        if record is None:
            return
        future = record.future
        if future is None or future.done():
            self.drop(spec, 'FAILED, but its future is settled already')
            return
        if self.retry(record, error):
            return
        record.backend_final = True
        if self._custom_failure:
            task = task_dict(record)
            task['exception'] = error
            self._handlers.failure(task, future)
        else:
            future.set_exception(error)

    def on_cancelled(self, spec: TaskSpec, _: Any = None) -> None:
        """The backend cancelled the task."""
        record = self._current(spec, 'CANCELED')
        if record is None:
            return
        record.backend_final = True
        future = record.future
        if future is None or future.done():
            return
        if self._custom_cancel:
            self._handlers.cancellation(task_dict(record), future)
        else:
            future.cancel()

    def on_task_dict(self, task: Any, state: Any, service_callback: Optional[Callable]) -> None:
        """A report given as a task dict and a state of its backend (``task_callbacks``)."""
        task_dct = task if isinstance(task, dict) else task.as_dict()
        record = self._records.get(task_dct.get('uid'))
        if record is None:
            self.drop(task_dct, f'state {state} of a task this engine does not know')
            return
        future = record.future
        if future is None:
            return      # it succeeded, and the program has let go of its future
        if service_callback is not None:
            service_callback(future, task, state)
        attempt = record.attempt
        if attempt is None:
            return
        spec = attempt.spec
        states = self._routes.of(record).states
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
        attempt = record.attempt
        if attempt is not None and attempt.timer is not None:
            attempt.stop_timer()
        succeeded = False
        if future.cancelled():
            submitted = record.state in (NodeState.SUBMITTED, NodeState.RUNNING)
            for dependent in self._graph.abort(record, NodeState.CANCELED):
                dependent.future.cancel()
            if submitted and not record.backend_final:
                self.cancel_in_backend(record)
        elif future.exception() is not None:
            error = future.exception()
            root = error.root_cause if isinstance(error, DependencyFailure) else error
            for dependent in self._graph.abort(record, NodeState.FAILED):
                if dependent.future.done():     # another failed dependency got there first
                    continue
                dependent.future.set_exception(dependency_failure(dependent, root))
        else:
            succeeded = True
            released = self._graph.succeed(record)
            if released:
                self._ready.extend(released)
        record.release(succeeded)

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
            result = self._routes.of(record).driver.cancel_task(record.uid)
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
        attempt = record.attempt
        attempt.stop_timer()
        attempt.timer = self._loop.call_later(record.policy.timeout, self._on_timeout,
                                              record, attempt)

    def _on_timeout(self, record: ComponentRecord, attempt: Attempt) -> None:
        attempt.timer = None
        if record.future.done() or record.attempt is not attempt:
            return
        self.cancel_in_backend(record)
        error = TimeoutError(f"task '{record.name}' ({record.uid}) did not finish within its "
                             f"timeout of {record.policy.timeout:g} s (attempt "
                             f"{attempt.number}); raise timeout= or check why it hangs")
        if not self.retry(record, error):
            record.future.set_exception(error)

    def retry(self, record: ComponentRecord, error: Optional[BaseException]) -> bool:
        """Make the next attempt and queue it if the policy allows one; True if it did."""
        policy = record.policy
        number = record.attempt.number
        if number > policy.retries or self._stopping.is_set():
            return False
        delay = policy.delay(number + 1)
        self._log.warning('task %s (%s) failed (%s); attempt %d of %d in %.1f s', record.name,
                          record.uid, error, number + 1, policy.retries + 1, delay)
        record.attempt.stop_timer()
        # Reports about the earlier attempt are stale from now on.
        record.attempt = Attempt(record.attempt.spec._replace(attempt=number + 1))
        transition(record, NodeState.READY)
        self._loop.call_later(delay, self._requeue, record)
        return True

    def _requeue(self, record: ComponentRecord) -> None:
        future = record.future
        if future is not None and not future.done() and not self._stopping.is_set():
            self._ready.retries.put_nowait([record])


def dependency_failure(record: ComponentRecord, root: BaseException) -> DependencyFailure:
    """What ``record`` raises when dependencies of it failed (``root``: the first cause)."""
    failed = [dep for dep in record.dependencies or () if dep.state is NodeState.FAILED]
    names = ', '.join(f"'{dep.name}' ({dep.uid})" for dep in failed) or 'a dependency'
    return DependencyFailure(
        f"Cannot execute '{record.name}' due to dependency failure: {names} failed "
        f"(root cause: {root!r})",
        failed_dependencies=[dep.name for dep in failed], root_cause=root)
