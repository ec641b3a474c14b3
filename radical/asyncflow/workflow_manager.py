"""The workflow engine: decorators, futures, and the lifetime of a run.

Calling a decorated function registers a *component* (a task or a block)
and returns an ``asyncio.Future`` at once.  Every future of this engine found
among the call's arguments is a dependency.  The :class:`~.graph.DependencyGraph`
counts unmet dependencies; when the last one finishes (a done-callback on its
future), the component joins the ready queue of the :mod:`.scheduler`, which
hands it to its backend; the backend's reports settle the future
(:mod:`.outcomes`).  Nothing polls and nothing sleeps waiting for state.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import os
import signal
import sys
import threading
import time
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Union

from .decorators import call_keywords, make_decorator, scan_arguments
from .graph import DependencyGraph, NodeState
from .journal import ENV_JOURNAL, Journal
from .monitor import RunMonitor, make_profiler, outcome_of, profiling_wanted
from .outcomes import EngineReporter, Outcomes
from .policy import DEFAULT_POLICY
from .process_wide import SHUTDOWN_SIGNALS, SignalHub, uid_counter
from .progress import progress_enabled
from .recorder import CampaignRecorder
from .records import (_BLOCK_CHAIN, _BLOCK_ROUTE, _WORKFLOW_ID, BLOCK, EXECUTABLE, FUNCTION,
                      TASK, ComponentRecord, FutureState, _Attempts, _ComponentSpec,
                      _ComponentsView, _TaskFuture, _cycle_error, _describe_type,
                      _upstream_blocks)
from .closing import abandon_engine, cancel_pending, stop_engine
from .routing import check_names, find_route, make_route, open_backends
from .run_stats import STATS
from .scheduler import SUBMIT_BATCH, Scheduler

__all__ = ['WorkflowEngine', 'TASK', 'BLOCK', 'FUNCTION', 'EXECUTABLE', 'SUBMIT_BATCH',
           'SHUTDOWN_SIGNALS', 'FutureState', '_get_event_loop_or_raise']



def _get_event_loop_or_raise(context_name: str = 'radical.asyncflow') -> asyncio.AbstractEventLoop:
    """The running loop, or a RuntimeError saying how to get one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f'{context_name} must be created inside a running event loop: '
            f'call "await WorkflowEngine.create(...)" from an async function '
            f'started with asyncio.run()') from None


class WorkflowEngine:
    """Runs tasks and blocks on execution backends as their dependencies finish.

    Create it with ``await WorkflowEngine.create(backend)``; decorate ``async
    def`` functions with :attr:`function_task`, :attr:`executable_task` or
    :attr:`block`; call them to get futures; ``await engine.shutdown()`` at
    the end.
    """

    @classmethod
    async def create(cls, backend: Any = None, dry_run: bool = False,
                     implicit_data: bool = True, *, uid: Optional[str] = None,
                     work_dir: Optional[str] = None, journal: Optional[str] = None,
                     progress: Optional[bool] = None,
                     profile: Optional[bool] = None) -> 'WorkflowEngine':
        """Create an engine on ``backend`` and start its scheduler.

        ``backend`` is one backend or a list of them (the first is the
        default; tasks name the others with ``backend='name'``).
        ``backend=None`` means the Noop backend with ``dry_run=True``, else
        the backend(s) configured by ``radical-asyncflow-run`` or the
        environment (:mod:`radical.asyncflow.config`).  ``uid`` names the
        engine (default: made from the time and the process id); ``work_dir``
        is where it writes (default: the default backend's session directory,
        else the current directory).  ``journal`` is the
        path of a campaign journal (default: ``$RADICAL_ASYNCFLOW_JOURNAL``):
        tasks recorded there as done are not run again.  ``progress``: show
        live progress and print the run summary at shutdown (default: unless
        ``$RADICAL_ASYNCFLOW_PROGRESS`` is ``0``; see :mod:`.progress`).
        ``profile``: record the task profile (default: as ``$RADICAL_ASYNCFLOW_PROFILE``
        or ``$RADICAL_PROFILE`` say, else off; see :mod:`.monitor`).
        """
        _get_event_loop_or_raise('WorkflowEngine')
        progress = progress_enabled(progress)           # TypeErrors before anything starts
        profile = profiling_wanted(profile)
        _check_bool('implicit_data', implicit_data)
        _check_names(uid, work_dir)
        journal = journal or os.environ.get(ENV_JOURNAL) or None
        opened = Journal(journal) if journal else None    # fails before any backend starts
        try:
            backends = await open_backends(backend, dry_run)
            instance = cls(backend=backends, dry_run=dry_run, implicit_data=implicit_data,
                           uid=uid, work_dir=work_dir, profile=profile)
        except BaseException:
            if opened is not None:
                opened.close()
            raise
        if opened is not None:
            from .backends.execution.noop import NoopExecutionBackend
            instance._recorder = instance._outcomes.recorder = CampaignRecorder(
                opened, instance.loop, instance.log, instance.work_dir,
                read_only=dry_run or isinstance(instance.backend, NoopExecutionBackend),
                owns=instance._owns)
        instance._creator = asyncio.current_task()
        instance._monitor.start(progress)
        if progress:
            print(f'radical.asyncflow: run {instance.uid} in {instance.run_dir}',
                  file=sys.stderr, flush=True)
        await instance._start_async_components()
        STATS.engines_created += 1
        return instance

    def __init__(self, backend: Any, dry_run: bool = False, implicit_data: bool = True, *,
                 uid: Optional[str] = None, work_dir: Optional[str] = None,
                 profile: Optional[bool] = None) -> None:
        """Private: use :meth:`create`, which also starts the scheduler."""
        self.loop = _get_event_loop_or_raise('WorkflowEngine')
        self._loop_thread = threading.get_ident()
        _check_bool('dry_run', dry_run)
        _check_bool('implicit_data', implicit_data)
        backends = list(backend) if isinstance(backend, (list, tuple)) else [backend]
        check_names(backends)
        self._routes = [make_route(given) for given in backends]
        self._default_route = self._routes[0]
        #: The default backend (the first one given).
        self.backend = self._default_route.backend
        #: Every backend of the engine by name, the default first.
        self.backends = {route.name: route.backend for route in self._routes}
        self.dry_run = dry_run
        self.implicit_data_mode = implicit_data
        self.task_states_map = self.backend.get_task_states_map()

        _check_names(uid, work_dir)
        #: The engine's name: its run directory and its profile's are called so.
        self.uid = uid or _engine_uid()
        session = getattr(self.backend, 'session', None)
        if work_dir is not None:
            os.makedirs(work_dir, exist_ok=True)
        self.work_dir = os.path.abspath(work_dir) if work_dir is not None else \
            getattr(session, 'path', None) or os.getcwd()
        #: This run's own directory (owner-only): log, profile, summary, task outputs.
        self.run_dir = make_run_dir(self.work_dir, self.uid)

        import radical.utils as ru   # deferred: keeps "import radical.asyncflow" fast
        self.log = ru.Logger(name='radical.asyncflow', ns='radical.asyncflow', path=self.run_dir)
        self.prof = make_profiler(self.run_dir, profiling_wanted(profile))

        self._records: Dict[str, ComponentRecord] = {}
        self.components = _ComponentsView(self._records)
        self._graph = DependencyGraph()
        self._scheduler = Scheduler(self)
        self._ready = self._scheduler.ready
        self.queue = self._scheduler.queue
        self._outcomes = Outcomes(self)
        self._reporter = EngineReporter(self._outcomes, self.loop, self.log)
        self._recorder: Optional[CampaignRecorder] = None
        self._monitor = RunMonitor(self.loop, self.log, self.prof, _describe_routes(self._routes),
                                   self.work_dir, self.run_dir)
        # uid prefix and the process-wide number source per kind: 'task.000001'
        self._counters = {kind: (f'{kind.value}.', uid_counter(kind.value))
                          for kind in (TASK, BLOCK)}
        self._done_cb = self._outcomes.done_callback
        self._context = contextvars.copy_context()

        self.block = make_decorator(self, BLOCK)
        self.function_task = make_decorator(self, TASK, FUNCTION)
        self.executable_task = make_decorator(self, TASK, EXECUTABLE)

        self._run_task: Optional[asyncio.Task] = None
        self._submit_task: Optional[asyncio.Task] = None
        self._shutdown_event = asyncio.Event()
        self._shutdown_task: Optional[asyncio.Task] = None
        self.exit_signal: Optional[int] = None
        #: How the run ended, once known (see monitor.outcome_of).
        self._outcome: Optional[Dict[str, Any]] = None
        self._creator: Optional[asyncio.Task] = None
        self._signals = SignalHub.join(self.loop, self)

    async def _start_async_components(self) -> None:
        self._run_task = self.loop.create_task(self.run(), name='asyncflow-run')
        self._submit_task = self.loop.create_task(self.submit(), name='asyncflow-submit')
        self.prof.prof('engine_start', uid='engine')
        self.prof.flush()        # in the file before the profile writer process appends
        self.log.info('engine started on %s (work_dir %s)',
                      ', '.join(self.backends), self.work_dir)

    def _route_of(self, record: ComponentRecord) -> Any:
        return record.route or self._default_route

    def _route_named(self, name: Any, what: str) -> Any:
        """The route called ``name``; ValueError naming the known ones."""
        route = find_route(self._routes, name)
        if route is None:
            raise ValueError(f"{what}: no backend named {name!r} in this engine (it has "
                             f"{', '.join(repr(r.name) for r in self._routes)})")
        return route

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
            raise TypeError(f'workflow_id must be a non-empty str, not {workflow_id!r}')
        token = _WORKFLOW_ID.set(workflow_id)
        try:
            yield workflow_id
        finally:
            _WORKFLOW_ID.reset(token)

    def _owns(self, record: ComponentRecord) -> bool:
        return self._records.get(record.uid) is record

    # ------------------------------------------------------------ registration

    def _register(self, spec: _ComponentSpec, args: tuple, kwargs: dict) -> asyncio.Future:
        if self._shutdown_event.is_set():
            raise RuntimeError(f"cannot run '{spec.name}': the engine has been shut down; "
                               f"call tasks before engine.shutdown(), or create a new engine")
        options = spec.description
        route = spec.route or _BLOCK_ROUTE.get()
        workflow_id = _WORKFLOW_ID.get()
        if kwargs:
            options, route, workflow_id = call_keywords(self, spec, kwargs, options, route,
                                                        workflow_id)
        policy = spec.policy
        if options:
            policy, options = policy.overridden(spec.name, options)
        dependencies: Any = ()
        files: Any = None
        if args or kwargs:
            dependencies, files = scan_arguments(self._records, args, kwargs)

        prefix, counter = self._counters[spec.kind]
        uid = f'{prefix}{counter():06d}'
        future = _TaskFuture(loop=self.loop)
        record = ComponentRecord(uid, spec, future, args, kwargs, options, dependencies, files)
        if route is not None and route is not self._default_route:
            record.route = route
        if workflow_id is not None:
            record.workflow_id = workflow_id
        future._af_record = record
        # The engine's callback runs in the engine's context: no per-future copy.
        future.add_done_callback(self._done_cb, context=self._context)
        self._records[uid] = record
        spec.calls += 1
        if policy is not DEFAULT_POLICY or self._recorder is not None:
            record.attempts = _Attempts(policy, None)
            if self._recorder is not None:
                record.attempts.identity = self._recorder.identity(record)
        if dependencies:
            upstream = _upstream_blocks(dependencies)
            if upstream:
                record.upstream_blocks = upstream
                chain = _BLOCK_CHAIN.get()
                if chain and not upstream.isdisjoint(chain):
                    self._graph.add(record, ())
                    self._monitor.created(record)
                    future.set_exception(_cycle_error(record, chain))
                    return future

        blocker = self._graph.add(record, dependencies)
        # Counted (and observed from now on) in the state add() left it in:
        # READY at once, or WAITING.
        self._monitor.created(record)
        if blocker is not None:
            self._outcomes.finish_after_dependency(record, blocker)
        elif record.state is NodeState.READY:
            ready = self._ready
            if not ready:           # else the scheduler is awake or about to be
                self._scheduler.wakeup.set()
            ready.append(record)
        return future

    # ---------------------------------------------------- the documented methods

    async def run(self) -> None:
        """Drain the ready queue into the backends; runs until cancelled."""
        try:
            await self._scheduler.run()
        except asyncio.CancelledError:
            if not self._shutdown_event.is_set():
                self._abandoned()       # the loop is torn down: shutdown() never came
            raise

    async def submit(self) -> None:
        """Dispatch batches of prepared components put on ``queue``; runs until cancelled."""
        await self._scheduler.serve_queue()

    async def execute_block(self, block_fut: asyncio.Future, func: Callable,
                            *args: Any, **kwargs: Any) -> None:
        """Run a block's function and put its result or exception on ``block_fut``."""
        record = getattr(block_fut, '_af_record', None)
        if record is not None:               # this task's own context: its tasks inherit
            _BLOCK_CHAIN.set(_BLOCK_CHAIN.get() + (record,))
            _BLOCK_ROUTE.set(record.route)
            _WORKFLOW_ID.set(record.workflow_id)
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
        if threading.get_ident() == self._loop_thread:
            self._outcomes.on_task_dict(task, state, service_callback)
            return
        try:
            self.loop.call_soon_threadsafe(self._outcomes.on_task_dict, task, state,
                                           service_callback)
        except RuntimeError:            # the loop is closed: the run is over
            pass

    # ---------------------------------------------------------------- shutdown

    async def shutdown(self, skip_execution_backend: bool = False) -> None:
        """Stop the scheduler, cancel what is pending, shut the backends down.

        Safe to call more than once; later calls wait for the first.
        """
        if self._shutdown_task is None:
            self._shutdown_task = self.loop.create_task(self._shutdown(skip_execution_backend))
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self, skip_execution_backend: bool, interrupted: bool = False) -> None:
        await stop_engine(self, skip_execution_backend, interrupted)

    def _abandoned(self) -> None:
        abandon_engine(self)

    def _cancel_pending(self, stop_in_backend: bool) -> None:
        cancel_pending(self, stop_in_backend)

    def _on_signal(self, sig: int) -> Optional[asyncio.Task]:
        """A shutdown signal (from the loop's SignalHub): stop in order; the stop task."""
        if self.exit_signal is not None:
            return None
        self.exit_signal = sig
        self.log.warning('received %s: shutting down', signal.Signals(sig).name)
        if self._shutdown_task is None:
            self._shutdown_task = self.loop.create_task(
                self._shutdown(skip_execution_backend=False, interrupted=True))
        return self._shutdown_task

    def _signal_finish(self) -> None:
        """Called by the SignalHub right before the process exits."""
        self._cancel_pending(stop_in_backend=False)

    # ----------------------------------------------------------- observability

    def state_counts(self) -> Dict[str, int]:
        """Tasks and blocks per state right now: NodeState name -> count."""
        return self._monitor.state_counts()

    @property
    def peak_concurrency(self) -> int:
        """The most tasks that were in the backend (SUBMITTED or RUNNING) at once."""
        return self._monitor.peak_concurrency

    @property
    def summary(self) -> Optional[Dict[str, Any]]:
        """The run summary written at shutdown (None before it)."""
        return self._monitor.summary

    async def __aenter__(self) -> 'WorkflowEngine':
        return self

    async def __aexit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        if exc is not None and self._outcome is None:
            self._outcome = outcome_of(exc)
        await self.shutdown()


def _describe_routes(routes: List[Any]) -> str:
    """The backend's class; for several: ``name (Class), ...``."""
    if len(routes) == 1:
        return type(routes[0].backend).__name__
    return ', '.join(f'{r.name} ({type(r.backend).__name__})' for r in routes)


def make_run_dir(work_dir: str, uid: str) -> str:
    """``<work_dir>/<uid>``, made for the owner only; an existing one is an error
    (a run never writes into another run's record)."""
    path = os.path.join(work_dir, uid)
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        raise FileExistsError(f'the run directory {path} exists already: give the engine '
                              f'a new uid= (each run keeps its own record)') from None
    os.chmod(path, 0o700)           # makedirs' mode is filtered by the umask
    return path


def _engine_uid() -> str:
    """A name for an engine unique across runs: ``asyncflow.YYYYMMDD-HHMMSS.<pid>.<n>``."""
    return (f'asyncflow.{time.strftime("%Y%m%d-%H%M%S")}.{os.getpid()}.'
            f'{uid_counter("engine")():04d}')


def _check_names(uid: Any, work_dir: Any) -> None:
    if uid is not None and (not isinstance(uid, str) or not uid or os.sep in uid):
        raise TypeError(f'uid must be a non-empty str without {os.sep!r}, not {uid!r}')
    if work_dir is not None and not isinstance(work_dir, (str, os.PathLike)):
        raise TypeError(f'work_dir must be a path, not {_describe_type(work_dir)}')


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f'{name} must be True or False, not {value!r}')
