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
import contextvars
import functools
import inspect
import os
import signal
import threading
from typing import Any, Callable, Dict, List, Optional, Union

from .data import File, InputFile, OutputFile
from .graph import DependencyGraph, NodeState
from .journal import ENV_JOURNAL, Journal
from .monitor import RunMonitor, make_profiler
from .outcomes import EngineReporter, Outcomes
from .policy import DEFAULT_POLICY, TaskPolicy
from .process_wide import SHUTDOWN_SIGNALS, SignalHub, uid_counter
from .progress import progress_enabled
from .recorder import CampaignRecorder
from .records import (_BLOCK_CHAIN, BLOCK, EXECUTABLE, FUNCTION, TASK, ComponentRecord,
                      ComponentType, TaskType, _Attempts, _ComponentSpec, _ComponentsView,
                      _TaskFuture, _cycle_error, _describe_type, _upstream_blocks)
from .routing import check_names, make_route, open_backends, shutdown_backends
from .run_stats import STATS
from .scheduler import SUBMIT_BATCH, Scheduler

__all__ = ['WorkflowEngine', 'TASK', 'BLOCK', 'FUNCTION', 'EXECUTABLE', 'SUBMIT_BATCH',
           'SHUTDOWN_SIGNALS', '_get_event_loop_or_raise']

#: Seconds shutdown() waits for the engine's own coroutines to stop.
SHUTDOWN_WAIT = 5.0

_NO_DESCRIPTION: Dict[str, Any] = {}


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
                     implicit_data: bool = True, *, journal: Optional[str] = None,
                     progress: Optional[bool] = None) -> 'WorkflowEngine':
        """Create an engine on ``backend`` and start its scheduler.

        ``backend=None`` means the Noop backend with ``dry_run=True``, else
        the backend configured by ``radical-asyncflow-run`` or the
        environment (:mod:`radical.asyncflow.config`).  ``journal`` is the
        path of a campaign journal (default: ``$RADICAL_ASYNCFLOW_JOURNAL``):
        tasks recorded there as done are not run again.  ``progress``: show
        live progress and print the run summary at shutdown (default: unless
        ``$RADICAL_ASYNCFLOW_PROGRESS`` is ``0``; see :mod:`.progress`).
        """
        _get_event_loop_or_raise('WorkflowEngine')
        progress = progress_enabled(progress)           # TypeError before anything starts
        _check_bool('implicit_data', implicit_data)
        journal = journal or os.environ.get(ENV_JOURNAL) or None
        opened = Journal(journal) if journal else None    # fails before any backend starts
        try:
            backends = await open_backends(backend, dry_run)
            instance = cls(backend=backends, dry_run=dry_run, implicit_data=implicit_data)
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
        instance._monitor.start(progress)
        await instance._start_async_components()
        STATS.engines_created += 1
        return instance

    def __init__(self, backend: Any, dry_run: bool = False, implicit_data: bool = True) -> None:
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

        session = getattr(self.backend, 'session', None)
        self.work_dir = getattr(session, 'path', None) or os.getcwd()

        import radical.utils as ru   # deferred: keeps "import radical.asyncflow" fast
        self.log = ru.Logger(name='radical.asyncflow', ns='radical.asyncflow', path=self.work_dir)
        self.prof = make_profiler(self.work_dir)

        self._records: Dict[str, ComponentRecord] = {}
        self.components = _ComponentsView(self._records)
        self._graph = DependencyGraph()
        self._scheduler = Scheduler(self)
        self._ready = self._scheduler.ready
        self.queue = self._scheduler.queue
        self._outcomes = Outcomes(self)
        self._reporter = EngineReporter(self._outcomes, self.loop, self.log)
        self._recorder: Optional[CampaignRecorder] = None
        self._monitor = RunMonitor(self.loop, self.log, self.prof,
                                   ', '.join(type(r.backend).__name__ for r in self._routes),
                                   self.work_dir)
        # uid prefix and the process-wide number source per kind: 'task.000001'
        self._counters = {kind: (f'{kind.value}.', uid_counter(kind.value))
                          for kind in (TASK, BLOCK)}
        self._done_cb = self._outcomes.done_callback
        self._context = contextvars.copy_context()

        self.block = self._register_decorator(comp_type=BLOCK)
        self.function_task = self._register_decorator(comp_type=TASK, task_type=FUNCTION)
        self.executable_task = self._register_decorator(comp_type=TASK, task_type=EXECUTABLE)

        self._run_task: Optional[asyncio.Task] = None
        self._submit_task: Optional[asyncio.Task] = None
        self._shutdown_event = asyncio.Event()
        self._shutdown_task: Optional[asyncio.Task] = None
        self.exit_signal: Optional[int] = None
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

    def _owns(self, record: ComponentRecord) -> bool:
        return self._records.get(record.uid) is record

    # -------------------------------------------------------------- decorators

    def _register_decorator(self, comp_type: ComponentType,
                            task_type: Optional[TaskType] = None) -> Callable:
        def decorator(func: Optional[Callable] = None, *, service: bool = False,
                      retries: int = 0, timeout: Optional[float] = None,
                      retry_backoff: float = 1.0) -> Callable:
            if func is None:
                return functools.partial(decorator, service=service, retries=retries,
                                         timeout=timeout, retry_backoff=retry_backoff)
            name = getattr(func, '__qualname__', repr(func))
            if not isinstance(service, bool):
                raise TypeError(f"'{name}': service must be True or False, not {service!r}")
            spec = _make_spec(func, comp_type, task_type, service)
            if comp_type is BLOCK and (retries or timeout is not None):
                raise TypeError(f"block '{name}' takes no retries= or timeout=: set them on "
                                f"the tasks inside the block")
            policy = TaskPolicy.build(name, retries, timeout, retry_backoff)
            spec.policy, spec.description = policy.overridden(name, spec.description)

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> asyncio.Future:
                return self._register(spec, args, kwargs)

            wrapper.__asyncflow_original__ = func
            return wrapper

        decorator.__name__ = comp_type.value if task_type is None else f'{task_type.value}_task'
        return decorator

    # ------------------------------------------------------------ registration

    def _register(self, spec: _ComponentSpec, args: tuple, kwargs: dict) -> asyncio.Future:
        if self._shutdown_event.is_set():
            raise RuntimeError(f"cannot run '{spec.name}': the engine has been shut down; "
                               f"call tasks before engine.shutdown(), or create a new engine")
        options = spec.description
        if 'task_description' in kwargs:
            given = kwargs.pop('task_description')
            if given is not None and not isinstance(given, dict):
                raise TypeError(f"'{spec.name}': task_description must be a dict, "
                                f"not {_describe_type(given)}")
            if given:
                options = {**options, **given}
        policy = spec.policy
        if options:
            policy, options = policy.overridden(spec.name, options)
        dependencies: Any = ()
        files: Any = None
        if args or kwargs:
            found: Dict[ComponentRecord, None] = {}
            file_args: List[File] = []
            if args:
                self._scan(args, found, file_args)
            if kwargs:
                self._scan(kwargs.values(), found, file_args)
            if found:
                dependencies = list(found)
            if file_args:
                files = (tuple(f.filename for f in file_args if type(f) is InputFile),
                         tuple(f.filename for f in file_args if type(f) is OutputFile))

        prefix, counter = self._counters[spec.kind]
        uid = f'{prefix}{counter():06d}'
        future = _TaskFuture(loop=self.loop)
        record = ComponentRecord(uid, spec, future, args, kwargs, options, dependencies, files)
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

    def _scan(self, values: Any, dependencies: Dict[ComponentRecord, None],
              files: List[File]) -> None:
        """Collect this engine's futures and File arguments among ``values``."""
        for value in values:
            vtype = type(value)
            if vtype is _TaskFuture:
                record = value._af_record
                if self._records.get(record.uid) is record:
                    dependencies[record] = None
            elif vtype is list or vtype is tuple:
                self._scan(value, dependencies, files)
            elif vtype is InputFile or vtype is OutputFile:
                files.append(value)

    # ---------------------------------------------------- the documented methods

    async def run(self) -> None:
        """Drain the ready queue into the backends; runs until cancelled."""
        await self._scheduler.run()

    async def submit(self) -> None:
        """Dispatch batches of prepared components put on ``queue``; runs until cancelled."""
        await self._scheduler.serve_queue()

    async def execute_block(self, block_fut: asyncio.Future, func: Callable,
                            *args: Any, **kwargs: Any) -> None:
        """Run a block's function and put its result or exception on ``block_fut``."""
        record = getattr(block_fut, '_af_record', None)
        if record is not None:
            _BLOCK_CHAIN.set(_BLOCK_CHAIN.get() + (record,))   # this task's own context
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
        """Stop everything; ``interrupted``: by a signal (the hub ends the process)."""
        self.log.debug('shutting down')
        self._shutdown_event.set()
        internal = [t for t in (self._run_task, self._submit_task) if t is not None]
        for task in internal:
            task.cancel()
        if internal:
            done, pending = await asyncio.wait(internal, timeout=SHUTDOWN_WAIT)
            if pending:
                self.log.warning('engine coroutines did not stop within %ss', SHUTDOWN_WAIT)
        if interrupted:
            # the futures are cancelled as the process exits: later reports change nothing
            self._reporter.closed = True
        else:
            self._cancel_pending(stop_in_backend=skip_execution_backend)
        await self._outcomes.wait_background(SHUTDOWN_WAIT)
        if self._signals is not None and not interrupted:
            self._signals.leave(self)
        if skip_execution_backend:
            self.log.info('leaving the execution backends running, as asked')
        else:
            await shutdown_backends(self._routes, self.log)
        self._reporter.closed = True
        for route in self._routes:
            route.forget(self._reporter)
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = self._outcomes.recorder = None
        STATS.summaries.append(self._monitor.stop(self.exit_signal))
        self.prof.prof('engine_stop', uid='engine')
        self.prof.flush()
        self.log.info('engine stopped')

    def _cancel_pending(self, stop_in_backend: bool) -> None:
        """Cancel every unfinished future; the backend is told only if asked."""
        pending = [r for r in self._records.values()
                   if r.state is not NodeState.DONE and not r.future.done()]
        if pending:
            self.log.info('cancelling %d unfinished components', len(pending))
        for record in pending:
            # Block coroutines are the engine's own: always stopped.
            record.backend_final = not stop_in_backend and record.spec.kind is not BLOCK
            record.future.cancel()

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

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.shutdown()


def _make_spec(func: Any, comp_type: ComponentType, task_type: Optional[TaskType],
               service: bool) -> _ComponentSpec:
    """What a decorator captures of ``func``; TypeError if it cannot be a task."""
    what = 'block' if task_type is None else f'{task_type.value}_task'
    if not callable(func):
        raise TypeError(f'@{what} decorates an async function, not {_describe_type(func)}')
    name = getattr(func, '__qualname__', repr(func))
    if getattr(func, '__name__', '') == '<lambda>':
        raise TypeError(f"@{what} needs an 'async def' function: a lambda ('{name}') "
                        f"cannot be a task; define it with 'async def'")
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"@{what} needs an 'async def' function: '{name}' is not one "
                        f"(write 'async def {getattr(func, '__name__', name)}(...)')")
    description: Dict[str, Any] = _NO_DESCRIPTION
    try:
        param = inspect.signature(func).parameters.get('task_description')
    except (TypeError, ValueError):
        param = None
    if param is not None and param.default is not inspect.Parameter.empty:
        default = param.default
        if default is not None and not isinstance(default, dict):
            raise TypeError(f"'{name}': the default of task_description must be a dict, "
                            f"not {_describe_type(default)}")
        description = dict(default or {})
    return _ComponentSpec(comp_type, task_type, func, service, description)


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f'{name} must be True or False, not {value!r}')
