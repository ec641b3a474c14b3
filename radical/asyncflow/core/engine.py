"""The engine core: decorators, futures, and the lifetime of a run.

Calling a decorated function registers a *component* (a task or a block)
and returns an ``asyncio.Future`` at once.  Every future of this engine found
among the call's arguments is a dependency.  The :class:`~.graph.DependencyGraph`
counts unmet dependencies; when the last one finishes (a done-callback on its
future), the component joins the :class:`~.scheduler.ReadyQueue`, which the
:class:`~.scheduler.Scheduler` hands to its backend; the backend's reports
settle the future (:mod:`.outcomes`).  Nothing polls and nothing sleeps
waiting for state.

:class:`Engine` is given everything it works with when it is made: its
backends (:class:`~.routing.Routes`), its run observer and campaign recorder
(:mod:`.interfaces`), its log and profiler.  The public
:class:`radical.asyncflow.workflow_manager.WorkflowEngine` builds those and
adds ``create()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import signal
import threading
from typing import Any, AsyncIterator, Callable, Dict, Optional, Union

from .context import RunContext
from .decorators import call_keywords, make_decorator, scan_arguments
from .graph import DependencyGraph, NodeState
from .handlers import CustomHandlers
from .interfaces import RunObserver, TaskRecorder
from .outcomes import Outcomes
from .process_wide import SignalHub, SignalMember, uid_counter
from .records import (BLOCK, BLOCK_CHAIN, BLOCK_ROUTE, EXECUTABLE, FUNCTION, PROMPT, TASK,
                      WORKFLOW_ID, ComponentRecord, ComponentSpec, TaskFuture, cycle_error,
                      scope_with, scoped, upstream_blocks)
from .reporter import EngineReporter
from .routing import Routes
from .scheduler import ReadyQueue, Scheduler
from .shutdown import Shutdown, outcome_of
from .views import ComponentsView
from ..errors import UsageStateError, UsageTypeError


def running_loop(context_name: str = 'radical.asyncflow') -> asyncio.AbstractEventLoop:
    """The running loop, or a RuntimeError saying how to get one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise UsageStateError(
            f'{context_name} must be created inside a running event loop: '
            f'call "await WorkflowEngine.create(...)" from an async function '
            f'started with asyncio.run()') from None


class Engine:
    """Runs tasks and blocks on execution backends as their dependencies finish."""

    def __init__(self, *, routes: Routes, dry_run: bool, implicit_data: bool, uid: str,
                 work_dir: str, run_dir: str, log: Any, prof: Any, observer: RunObserver,
                 recorder: Optional[TaskRecorder] = None,
                 run: Optional[RunContext] = None) -> None:
        self.loop = running_loop('WorkflowEngine')
        self._loop_thread = threading.get_ident()
        self._routes = routes
        #: The default backend (the first one given).
        self.backend = routes.default.backend
        #: Every backend of the engine by name, the default first.
        self.backends = {route.name: route.backend for route in routes}
        self.dry_run = dry_run
        self.implicit_data_mode = implicit_data
        self.task_states_map = routes.default.states
        #: The engine's name: its run directory and its profile's are called so.
        self.uid = uid
        self.work_dir = work_dir
        #: This run's own directory (owner-only): log, profile, summary, task outputs.
        self.run_dir = run_dir
        self.log = log
        self.prof = prof
        self._observer = observer
        self._recorder = recorder
        self._run = run

        self._records: Dict[str, ComponentRecord] = {}
        self.components = ComponentsView(self._records)
        self._graph = DependencyGraph()
        self._ready = ReadyQueue()
        self._shutdown_event = asyncio.Event()
        self._outcomes = Outcomes(
            records=self._records, graph=self._graph, ready=self._ready, routes=routes,
            loop=self.loop, log=log, placed=observer.placed, stopping=self._shutdown_event,
            handlers=CustomHandlers.of(self, Engine), recorder=recorder)
        self._reporter = EngineReporter(self._outcomes, self.loop, log)
        if recorder is not None:        # deferred tasks settle like backend reports
            recorder.bind(functools.partial(self._reporter.hand_over,
                                            self._outcomes.settle_durable))
        for route in routes:            # the reporter stands for this engine
            route.attach(self._reporter)
        self._scheduler = Scheduler(
            ready=self._ready, routes=routes, reporter=self._reporter, run_dir=run_dir,
            implicit_data=implicit_data, start_block=self._start_block,
            arm_timeout=self._outcomes.arm_timeout,
            batch_submitted=observer.batch_submitted, recorder=recorder)
        #: Prepared attempts queued for :meth:`submit` (retries).
        self.queue = self._ready.retries
        # uid prefix and the process-wide number source per kind: 'task.000001'
        self._counters = {kind: (f'{kind.value}.', uid_counter(kind.value))
                          for kind in (TASK, BLOCK)}
        self._done_cb = self._outcomes.on_future_done
        self._context = contextvars.copy_context()
        #: What this engine's workflow scopes and blocks are filed under in the
        #: context, so that they reach this engine's tasks only.
        self._scope_key = object()

        self.block = make_decorator(self._register, routes, BLOCK)
        self.function_task = make_decorator(self._register, routes, TASK, FUNCTION)
        self.executable_task = make_decorator(self._register, routes, TASK, EXECUTABLE)
        #: Tasks whose function returns a prompt, answered by a backend that runs
        #: prompts (radical.asyncflow 0.6); the result is the answer.
        self.prompt_task = make_decorator(self._register, routes, TASK, PROMPT)

        self._run_task: Optional[asyncio.Task] = None
        self._submit_task: Optional[asyncio.Task] = None
        self.exit_signal: Optional[int] = None
        #: How the run ended, once known (see shutdown.outcome_of).
        self._outcome: Optional[Dict[str, Any]] = None
        self._signals = SignalHub.join(self.loop, SignalMember(
            on_signal=self._on_signal, creator=asyncio.current_task(),
            cancel_pending=lambda: self._shutdown.cancel_pending(stop_in_backend=False)))
        self._shutdown = Shutdown(
            engine_log=log, prof=prof, shutdown_event=self._shutdown_event,
            records=self._records, routes=routes, reporter=self._reporter,
            outcomes=self._outcomes, observer=observer, signals=self._signals, run=run)
        if run is not None:
            run.engines_created += 1

    async def _start_async_components(self) -> None:
        self._run_task = self.loop.create_task(self.run(), name='asyncflow-run')
        self._submit_task = self.loop.create_task(self.submit(), name='asyncflow-submit')
        self._observer.start()
        self.prof.prof('engine_start', uid='engine')
        self.prof.flush()        # in the file before the profile writer process appends
        self.log.info('engine started on %s (work_dir %s)',
                      ', '.join(self.backends), self.work_dir)

    @contextlib.asynccontextmanager
    async def workflow_scope(self, workflow_id: Optional[str] = None) -> AsyncIterator[str]:
        """Tasks and blocks created inside belong to the workflow ``workflow_id``.

        ``async with engine.workflow_scope('ensemble-1') as wid: ...``; without
        an id, one is made (``workflow.000001``, ...).  Blocks pass it on to
        the tasks they create; a ``workflow_id=`` call keyword overrides it.
        """
        if workflow_id is None:
            workflow_id = f'workflow.{uid_counter("workflow")():06d}'
        elif not isinstance(workflow_id, str) or not workflow_id:
            raise UsageTypeError(f'workflow_id must be a non-empty str, not {workflow_id!r}')
        token = scope_with(WORKFLOW_ID, self._scope_key, workflow_id)
        try:
            yield workflow_id
        finally:
            WORKFLOW_ID.reset(token)

    # ------------------------------------------------------------ registration

    def _register(self, spec: ComponentSpec, args: tuple, kwargs: dict) -> asyncio.Future:
        if self._shutdown_event.is_set():
            raise UsageStateError(f"cannot run '{spec.name}': the engine has been shut down; "
                                  f"call tasks before engine.shutdown(), or create a new engine")
        options = spec.description
        route = spec.route or scoped(BLOCK_ROUTE, self._scope_key)
        if spec.task_type is PROMPT and route is not spec.route:
            route = spec.route          # chosen at decoration: a backend that answers prompts
        workflow_id = scoped(WORKFLOW_ID, self._scope_key)
        if kwargs:
            options, route, workflow_id = call_keywords(self._routes, spec, kwargs, options,
                                                        route, workflow_id)
        policy = spec.policy
        if options:
            policy, options = policy.overridden(spec.name, options)
        dependencies: Any = ()
        files: Any = None
        if args or kwargs:
            dependencies, files = scan_arguments(self._records, args, kwargs)

        prefix, counter = self._counters[spec.kind]
        uid = f'{prefix}{counter():06d}'
        future = TaskFuture(loop=self.loop)
        record = ComponentRecord(
            uid=uid, spec=spec, future=future, args=args, kwargs=kwargs, options=options,
            dependencies=dependencies, files=files, policy=policy,
            route=route if route is not self._routes.default else None,
            workflow_id=workflow_id)
        future._af_record = record
        # The engine's callback runs in the engine's context: no per-future copy.
        future.add_done_callback(self._done_cb, context=self._context)
        self._records[uid] = record
        spec.calls += 1
        if self._recorder is not None:
            self._recorder.identify(record)
        if dependencies:
            upstream = upstream_blocks(dependencies)
            if upstream:
                record.upstream_blocks = upstream
                chain = BLOCK_CHAIN.get()
                if chain and not upstream.isdisjoint(chain):
                    self._graph.add(record, ())
                    self._observer.created(record)
                    future.set_exception(cycle_error(record, chain))
                    return future

        blocker = self._graph.add(record, dependencies)
        # Counted (and observed from now on) in the state add() left it in:
        # READY at once, or WAITING.
        self._observer.created(record)
        if blocker is not None:
            self._outcomes.finish_after_dependency(record, blocker)
        elif record.state is NodeState.READY:
            self._ready.push(record)
        return future

    def _start_block(self, record: ComponentRecord, args: tuple,
                     kwargs: Dict[str, Any]) -> asyncio.Task:
        return self.loop.create_task(self.execute_block(record.future, record.spec.func,
                                                        *args, **kwargs))

    # ---------------------------------------------------- the documented methods

    async def run(self) -> None:
        """Drain the ready queue into the backends; runs until cancelled."""
        try:
            await self._scheduler.run()
        except asyncio.CancelledError:
            if not self._shutdown_event.is_set():
                await self._abandoned()     # the loop is torn down: shutdown() never came
            raise

    async def submit(self) -> None:
        """Dispatch the prepared attempts put on ``queue`` (retries); runs until cancelled."""
        await self._scheduler.serve_retries()

    async def execute_block(self, block_fut: asyncio.Future, func: Callable,
                            *args: Any, **kwargs: Any) -> None:
        """Run a block's function and put its result or exception on ``block_fut``."""
        record = getattr(block_fut, '_af_record', None)
        if record is not None:               # this task's own context: its tasks inherit
            BLOCK_CHAIN.set(BLOCK_CHAIN.get() + (record,))
            scope_with(BLOCK_ROUTE, self._scope_key, record.route)
            scope_with(WORKFLOW_ID, self._scope_key, record.workflow_id)
        try:
            if inspect.iscoroutinefunction(func):
                result = await func(*args, **kwargs)
            else:
                result = await self.loop.run_in_executor(
                    None, functools.partial(func, *args, **kwargs))
        except asyncio.CancelledError:
            block_fut.cancel()
            raise
        except Exception as exc:
            if not block_fut.done():
                block_fut.set_exception(exc)
        else:
            if not block_fut.done():
                block_fut.set_result(result)

    def handle_task_success(self, task: dict, task_fut: asyncio.Future) -> None:
        """Resolve the future with the return value (function) or stdout (executable)."""
        if task_fut.done():
            self.log.warning('task %s finished twice; the second report is ignored', task['uid'])
            return
        if task.get('function') is not None:
            task_fut.set_result(task.get('return_value'))
        else:
            task_fut.set_result(task.get('stdout'))

    def handle_task_failure(self, task: dict, task_fut: asyncio.Future,
                            override_error_message: Union[str, Exception, None] = None) -> None:
        """Fail the future with the task's exception, its stderr, or the override."""
        if task_fut.done():
            self.log.warning('task %s failed after it had finished; ignored', task['uid'])
            return
        error = override_error_message
        if error is None:
            error = task.get('exception') or task.get('stderr') or \
                f"task '{task.get('name', task['uid'])}' failed with an unknown error"
        if not isinstance(error, BaseException):
            error = RuntimeError(str(error))
        task_fut.set_exception(error)

    def handle_task_cancellation(self, task: dict, task_fut: asyncio.Future) -> bool:
        """Cancel the future of a task the backend cancelled."""
        if task_fut.done():
            return False
        return task_fut.cancel()

    def task_callbacks(self, task: Any, state: Any,
                       service_callback: Optional[Callable] = None) -> None:
        """A state report given as a task dict (the dict protocol); any thread."""
        self._reporter.task_dict(task, state, service_callback)

    # ---------------------------------------------------------------- shutdown

    async def shutdown(self, skip_execution_backend: bool = False) -> None:
        """Stop the scheduler, cancel what is pending, shut down the backends it owns.

        ``skip_execution_backend=True`` leaves every backend running.  Safe
        to call more than once; later calls wait for the first.
        """
        await self._shutdown.stop(self._internal_tasks(), skip_execution_backend,
                                  outcome=self._outcome)

    def _internal_tasks(self) -> list:
        return [t for t in (self._run_task, self._submit_task) if t is not None]

    async def _abandoned(self) -> None:
        self._outcome = await self._shutdown.abandon(self._internal_tasks())

    def _on_signal(self, sig: int) -> Optional[asyncio.Future]:
        """A shutdown signal (from the loop's SignalHub): stop in order; the stop task."""
        if self.exit_signal is not None:
            return None
        self.exit_signal = sig
        self.log.warning('received %s: shutting down', signal.Signals(sig).name)
        return self._shutdown.start(self._internal_tasks(), skip_backends=False, signal=sig)

    # ----------------------------------------------------------- observability

    def state_counts(self) -> Dict[str, int]:
        """Tasks and blocks per state right now: NodeState name -> count."""
        return self._observer.state_counts()

    @property
    def peak_concurrency(self) -> int:
        """The most tasks that were in the backend (SUBMITTED or RUNNING) at once."""
        return self._observer.peak_concurrency

    @property
    def summary(self) -> Optional[Dict[str, Any]]:
        """The run summary written at shutdown (None before it)."""
        return self._shutdown.summary

    async def __aenter__(self) -> 'Engine':
        return self

    async def __aexit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        if exc is not None and self._outcome is None:
            self._outcome = outcome_of(exc)
        await self.shutdown()


# The 0.6 names of the outcome handlers; an override of either name is honoured.
Engine.handle_component_success = Engine.handle_task_success
Engine.handle_component_failure = Engine.handle_task_failure
Engine.handle_component_cancellation = Engine.handle_task_cancellation
