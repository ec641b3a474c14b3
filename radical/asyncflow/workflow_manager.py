"""The workflow engine: decorators, futures and the event-driven scheduler.

Calling a decorated function registers a *component* (a task or a block)
and returns an ``asyncio.Future`` at once.  Every future of this engine found
among the call's arguments is a dependency.  The :class:`~.graph.DependencyGraph`
counts unmet dependencies; when the last one finishes (a done-callback on its
future), the component joins the ready queue.  ``run()`` drains that queue
in batches (resolving arguments and linking data), ``submit()`` hands the
batches to the backend, and the backend's state callbacks resolve the
futures.  Nothing polls and nothing sleeps waiting for state.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import inspect
import itertools
import os
import pickle
import signal
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Union

from . import config
from .backends.execution.base import BaseExecutionBackend
from .data import File, InputFile, OutputFile
from .errors import BackendError, DependencyFailure
from .graph import DependencyGraph, NodeState, transition
from .monitor import RunMonitor, make_profiler
from .progress import progress_enabled
from .journal import Journal, JournalEntry, task_identity
from .policy import DEFAULT_POLICY, TaskPolicy
from .records import (_BLOCK_CHAIN, BLOCK, EXECUTABLE, FUNCTION, TASK, ComponentRecord,
                      ComponentType, TaskType, _Attempts, _ComponentSpec, _ComponentsView,
                      _TaskFuture, _cycle_error, _describe_type, _resolve, _resolve_one,
                      _upstream_blocks)
from .run_stats import STATS



#: Ready components handed to the backend per submission batch.
SUBMIT_BATCH = 4096
#: Seconds shutdown() waits for the engine's own coroutines to stop.
SHUTDOWN_WAIT = 5.0
#: Signals that trigger an orderly shutdown; exit status is 128 + signal.
#: SIGUSR1 is what SLURM --signal and PBS send ahead of the walltime.
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)

_NO_DESCRIPTION: Dict[str, Any] = {}
#: A succeeded task's dict drops its result (the future has it, kept alive by
#: the program, not the engine); its 'args' and 'kwargs' are emptied.
_RESULT_KEYS = ('return_value', 'stdout')
#: The 'metadata' of every task without InputFile/OutputFile arguments: one
#: shared, read-only value instead of a dict and two lists per task.
_NO_FILES: Dict[str, Any] = {'input_files': (), 'output_files': ()}


def _reset_signals_in_child() -> None:
    """After fork: a worker process must not share the engine's signal handling.

    Without this, a forked pool worker ignores SIGTERM and writes signals it
    receives into the parent loop's wake-up pipe.
    """
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        return
    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


_fork_hook_registered = False


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
    """Runs tasks and blocks on an execution backend as their dependencies finish.

    Create it with ``await WorkflowEngine.create(backend)``; decorate ``async
    def`` functions with :attr:`function_task`, :attr:`executable_task` or
    :attr:`block`; call them to get futures; ``await engine.shutdown()`` at
    the end.
    """

    @classmethod
    async def create(cls, backend: Optional[BaseExecutionBackend] = None,
                     dry_run: bool = False, implicit_data: bool = True, *,
                     journal: Optional[str] = None,
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
        journal = journal or os.environ.get(config.ENV_JOURNAL) or None
        opened = Journal(journal) if journal else None    # fails before any backend starts
        try:
            backend = await cls._setup_execution_backend(backend, dry_run)
            instance = cls(backend=backend, dry_run=dry_run, implicit_data=implicit_data)
        except BaseException:
            if opened is not None:
                opened.close()
            raise
        instance._journal = opened
        instance._monitor.start(progress)
        await instance._start_async_components()
        STATS.engines_created += 1
        return instance

    def __init__(self, backend: BaseExecutionBackend, dry_run: bool = False,
                 implicit_data: bool = True) -> None:
        """Private: use :meth:`create`, which also starts the scheduler."""
        self.loop = _get_event_loop_or_raise('WorkflowEngine')
        _check_bool('dry_run', dry_run)
        _check_bool('implicit_data', implicit_data)
        if not isinstance(backend, BaseExecutionBackend):
            raise TypeError(f'backend must be a BaseExecutionBackend, not {_describe_type(backend)}')
        self.backend = backend
        self.dry_run = dry_run
        self.implicit_data_mode = implicit_data
        self.task_states_map = backend.get_task_states_map()

        session = getattr(backend, 'session', None)
        self.work_dir = getattr(session, 'path', None) or os.getcwd()

        import radical.utils as ru   # deferred: keeps "import radical.asyncflow" fast
        self.log = ru.Logger(name='radical.asyncflow', ns='radical.asyncflow', path=self.work_dir)
        self.prof = make_profiler(self.work_dir)
        self._monitor = RunMonitor(self)     # state counts, task profile, run summary

        self._records: Dict[str, ComponentRecord] = {}
        self.components = _ComponentsView(self._records)
        self._graph = DependencyGraph()
        self._ready: collections.deque = collections.deque()
        self._wakeup = asyncio.Event()
        self.queue: asyncio.Queue = asyncio.Queue()
        # uid prefix and number per kind: 'task.000001', 'block.000001'
        self._counters = {kind: (f'{kind.value}.', itertools.count(1)) for kind in (TASK, BLOCK)}
        self._background: set = set()        # backend cancel calls in flight
        self._journal: Optional[Journal] = None
        from .backends.execution.noop import NoopExecutionBackend
        self._journal_read_only = dry_run or isinstance(backend, NoopExecutionBackend)
        self._journal_flush: Optional[asyncio.Handle] = None
        self._loop_thread = threading.get_ident()
        self._done_cb = self._on_future_done      # one bound method, added to every future
        self._context = contextvars.copy_context()

        self.block = self._register_decorator(comp_type=BLOCK)
        self.function_task = self._register_decorator(comp_type=TASK, task_type=FUNCTION)
        self.executable_task = self._register_decorator(comp_type=TASK, task_type=EXECUTABLE)

        self._run_task: Optional[asyncio.Task] = None
        self._submit_task: Optional[asyncio.Task] = None
        self._shutdown_event = asyncio.Event()
        self._shutdown_task: Optional[asyncio.Task] = None
        self._installed_signals: List[int] = []
        self.exit_signal: Optional[int] = None
        self._ignore_backend_reports = False
        self.backend.register_callback(self.task_callbacks)
        self._setup_signal_handlers()

    # ------------------------------------------------------------------ set-up

    @classmethod
    async def _setup_execution_backend(cls, backend: Optional[BaseExecutionBackend],
                                       dry_run: bool) -> BaseExecutionBackend:
        from .backends.execution.noop import NoopExecutionBackend
        _check_bool('dry_run', dry_run)
        if backend is None:
            if dry_run:
                backend = NoopExecutionBackend()
            else:
                backend = await config.create_default_backend()
        elif not isinstance(backend, BaseExecutionBackend):
            raise TypeError(f'backend must be a BaseExecutionBackend (e.g. '
                            f'await ConcurrentExecutionBackend(ThreadPoolExecutor())), '
                            f'not {_describe_type(backend)}')
        elif dry_run and not isinstance(backend, NoopExecutionBackend):
            raise RuntimeError(f'dry_run=True runs on the Noop backend; leave backend '
                               f'unset instead of passing {type(backend).__name__}')
        return await backend.initialize()

    async def _start_async_components(self) -> None:
        self._run_task = self.loop.create_task(self.run(), name='asyncflow-run')
        self._submit_task = self.loop.create_task(self.submit(), name='asyncflow-submit')
        self.prof.prof('engine_start', uid='engine')
        self.prof.flush()        # in the file before the profile writer process appends
        self.log.info('engine started on %s (work_dir %s)', type(self.backend).__name__,
                      self.work_dir)

    def _setup_signal_handlers(self) -> None:
        global _fork_hook_registered
        if threading.current_thread() is not threading.main_thread():
            return        # only the main thread may own signal handlers
        if not _fork_hook_registered and hasattr(os, 'register_at_fork'):
            os.register_at_fork(after_in_child=_reset_signals_in_child)
            _fork_hook_registered = True
        for sig in SHUTDOWN_SIGNALS:
            try:
                self.loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            self._installed_signals.append(sig)

    def _remove_signal_handlers(self) -> None:
        for sig in self._installed_signals:
            try:
                self.loop.remove_signal_handler(sig)
            except (RuntimeError, ValueError):
                pass
        self._installed_signals = []

    def _on_signal(self, sig: int) -> None:
        if self.exit_signal is not None:
            return
        self.exit_signal = sig
        self.log.warning('received %s: shutting down', signal.Signals(sig).name)
        print(f'radical.asyncflow: received {signal.Signals(sig).name}, cancelling '
              f'pending tasks and shutting down', file=sys.stderr, flush=True)
        if self._shutdown_task is None:
            self._shutdown_task = self.loop.create_task(
                self._shutdown(skip_execution_backend=False, exit_status=128 + sig))

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
            spec = self._make_spec(func, comp_type, task_type, service)
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

    @staticmethod
    def _make_spec(func: Any, comp_type: ComponentType, task_type: Optional[TaskType],
                   service: bool) -> _ComponentSpec:
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

    # ------------------------------------------------------------ registration

    def _register(self, spec: _ComponentSpec, args: tuple, kwargs: dict) -> asyncio.Future:
        if self._shutdown_event.is_set():
            raise RuntimeError(f"cannot run '{spec.name}': the engine has been shut down; "
                               f"call tasks before engine.shutdown(), or create a new engine")
        description = spec.description
        if 'task_description' in kwargs:
            given = kwargs.pop('task_description')
            if given is not None and not isinstance(given, dict):
                raise TypeError(f"'{spec.name}': task_description must be a dict, "
                                f"not {_describe_type(given)}")
            if given:
                description = {**description, **given}
        policy = spec.policy
        if description:
            policy, description = policy.overridden(spec.name, description)
        dependencies: Any = ()
        files: Any = ()
        if args or kwargs:
            dependencies, files = {}, []
            if args:
                self._scan(args, dependencies, files)
            if kwargs:
                self._scan(kwargs.values(), dependencies, files)

        kind = spec.kind
        prefix, counter = self._counters[kind]
        uid = f'{prefix}{next(counter):06d}'
        future = _TaskFuture(loop=self.loop)
        desc = {
            'uid': uid,
            'name': spec.name,
            'function': spec.func if spec.task_type is not EXECUTABLE else None,
            'executable': None,
            'args': args,
            'kwargs': kwargs,
            'is_service': spec.is_service,
            'async': True,
            'metadata': {
                'input_files': [f.filename for f in files if type(f) is InputFile],
                'output_files': [f.filename for f in files if type(f) is OutputFile],
            } if files else _NO_FILES,
            'task_backend_specific_kwargs': dict(description) if description else {},
        }
        record = ComponentRecord(uid, spec, future, args, kwargs, desc,
                                 list(dependencies) if dependencies else ())
        future._af_record = record
        # The engine's callback runs in the engine's context: no per-future copy.
        future.add_done_callback(self._done_cb, context=self._context)
        self._records[uid] = record
        spec.calls += 1
        if policy is not DEFAULT_POLICY or self._journal is not None:
            record.attempts = _Attempts(
                policy, self._identity(record) if self._journal is not None else None)
        if dependencies:
            upstream = _upstream_blocks(record.dependencies)
            if upstream:
                record.upstream_blocks = upstream
                chain = _BLOCK_CHAIN.get()
                if chain and not upstream.isdisjoint(chain):
                    self._graph.add(record, ())
                    self._monitor.created(record)
                    future.set_exception(_cycle_error(record, chain))
                    return future

        blocker = self._graph.add(record, record.dependencies)
        # Counted (and observed from now on) in the state add() left it in:
        # READY at once, or WAITING.
        self._monitor.created(record)
        if blocker is not None:
            self._finish_after_dependency(record, blocker)
        elif record.state is NodeState.READY:
            ready = self._ready
            if not ready:           # else the scheduler is awake or about to be
                self._wakeup.set()
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

    # --------------------------------------------------------------- scheduler

    async def run(self) -> None:
        """Drain the ready queue: prepare ready components and submit them in batches.

        Wakes only when a component becomes ready; runs until cancelled.
        """
        ready = self._ready
        prepare = self._prepare
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            drained = 0
            while ready:
                batch = []
                count = min(len(ready), SUBMIT_BATCH)
                for _ in range(count):
                    record = ready.popleft()
                    if record.future.done() or not prepare(record):
                        continue
                    if record.spec.task_type is EXECUTABLE and \
                            not await self._build_command(record):
                        continue
                    batch.append(record)
                if batch:
                    await self._dispatch(batch)
                # A backend that finishes tasks at once (Noop) refills the queue
                # while it is drained: hand the loop over every SUBMIT_BATCH
                # components, not after every (possibly one-task) batch.
                drained += count
                if ready and drained >= SUBMIT_BATCH:
                    drained = 0
                    await asyncio.sleep(0)

    async def submit(self) -> None:
        """Dispatch batches of prepared components put on ``queue``.

        ``run()`` dispatches what it prepares itself; this serves batches
        queued from outside the scheduler.
        """
        while True:
            batch = await self.queue.get()
            await self._dispatch([r for r in batch if not r.future.done()])

    async def _dispatch(self, batch: List[ComponentRecord]) -> None:
        """Hand tasks to the backend and start blocks."""
        tasks = []
        for record in batch:
            transition(record, NodeState.SUBMITTED)
            if record.spec.kind is BLOCK:
                record.block_task = self.loop.create_task(self.execute_block(
                    record.future, record.spec.func, *record.args, **record.kwargs))
            else:
                tasks.append(record)
                if record.attempts is not None and record.attempts.policy.timeout \
                        and not self.backend.reports_running:
                    self._arm_timeout(record)      # no RUNNING report will come
        if tasks:
            self._monitor.batch_submitted(tasks)
            await self._submit_to_backend(tasks)

    async def _submit_to_backend(self, records: List[ComponentRecord]) -> None:
        try:
            result = self.backend.submit_tasks([r.description for r in records])
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            backend = type(self.backend).__name__
            for record in records:
                future = record.future      # None: it succeeded, and was let go of
                if future is not None and not future.done():
                    error = BackendError(f"{backend} could not submit task '{record.name}' "
                                         f"({record.uid}): {exc}")
                    error.__cause__ = exc
                    future.set_exception(error)

    def _prepare(self, record: ComponentRecord) -> bool:
        """Resolve a ready component's arguments and data; False if it failed.

        Synchronous: only an executable task's command needs awaiting, which
        :meth:`_build_command` does next.
        """
        try:
            args = record.args
            if args:
                args = _resolve(args)
            kwargs = record.kwargs
            if kwargs:
                kwargs = {k: _resolve_one(v) for k, v in kwargs.items()}
            elif kwargs is None:
                kwargs = {}
            desc = record.description
            if record.spec.kind is TASK:
                if self._journal is not None and self._replay(record):
                    return False
                if record.dependencies or desc['metadata']['input_files']:
                    self._link_data(record)
            record.args = args
            record.kwargs = kwargs
            desc['args'] = args
            desc['kwargs'] = kwargs
            return True
        except Exception as exc:
            if not record.future.done():
                record.future.set_exception(exc)
            return False

    async def _build_command(self, record: ComponentRecord) -> bool:
        """Await an executable task's function for its command; False if it failed."""
        spec = record.spec
        try:
            command = await spec.func(*record.args, **record.kwargs)
            if not isinstance(command, str):
                raise ValueError(
                    f"executable task '{spec.name}' must return its shell command "
                    f"as a str, but returned {_describe_type(command)}: {command!r:.80}")
        except Exception as exc:
            if not record.future.done():
                record.future.set_exception(exc)
            return False
        if record.future.done():        # cancelled while its command was built
            return False
        record.description['executable'] = command
        return True

    def _link_data(self, record: ComponentRecord) -> None:
        """Tell the backend about the data each dependency edge carries."""
        dst = record.description
        inputs = dst['metadata']['input_files']
        produced: Dict[str, ComponentRecord] = {}
        for dep in record.dependencies:
            if dep.spec.kind is not TASK:
                continue
            src = dep.description
            if self.implicit_data_mode:
                self.backend.link_implicit_data_deps(src, dst)
            for name in src['metadata']['output_files']:
                produced[os.path.basename(name)] = dep
        for name in inputs:
            base = os.path.basename(name)
            dep = produced.get(base)
            if dep is not None:
                self.backend.link_explicit_data_deps(src_task=dep.description, dst_task=dst,
                                                     file_name=base, file_path=None)
                continue
            infile = InputFile(name)
            if not infile.is_url and not os.path.exists(name):
                raise FileNotFoundError(
                    f"task '{record.name}': InputFile('{name}') is neither an OutputFile of "
                    f"one of its dependencies nor an existing path or URL")
            self.backend.link_explicit_data_deps(src_task=None, dst_task=dst,
                                                 file_name=infile.basename, file_path=name)

    # ------------------------------------------------------------------ blocks

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

    # --------------------------------------------------------- state handling

    def task_callbacks(self, task: Any, state: Any,
                       service_callback: Optional[Callable] = None) -> None:
        """Entry point for backend state reports; safe to call from any thread."""
        if threading.get_ident() == self._loop_thread:
            self._on_task_state(task, state, service_callback)
            return
        try:
            self.loop.call_soon_threadsafe(self._on_task_state, task, state, service_callback)
        except RuntimeError:            # the loop is closed: the run is over
            pass

    def _on_task_state(self, task: Any, state: Any,
                       service_callback: Optional[Callable]) -> None:
        if self._ignore_backend_reports:
            return      # interrupted: the futures are cancelled as the process exits
        states = self.task_states_map
        task_dct = task if isinstance(task, dict) else task.as_dict()
        record = self._records.get(task_dct['uid'])
        if record is None:
            self.log.warning('state %s for unknown task %s ignored', state, task_dct['uid'])
            return
        future = record.future
        if future is None:
            self.log.warning('state %s for task %s, which has succeeded already, ignored',
                             state, record.uid)
            return      # and the program has let go of its future
        if service_callback is not None:
            service_callback(record.future, task, state)
        attempts = record.attempts
        if attempts is not None and attempts.attempt > 1 and task is not record.description \
                and isinstance(task, dict):
            return      # a late report about an earlier attempt
        if state == states.DONE:
            record.backend_final = True
            # Settled right here, not by the done-callback a loop turn later:
            # the dependents are released in the same step (one hop less per
            # chain link).  Other outcomes, user cancellation included, still
            # arrive through the callback.
            direct = not future.done() and future.remove_done_callback(self._done_cb)
            self.handle_task_success(task_dct, future)
            if self._journal is not None and attempts is not None:
                self._journal_done(record, task_dct)
            if direct:
                if future.done():
                    self._on_future_done(future)
                else:       # an override of handle_task_success left it pending
                    future.add_done_callback(self._done_cb)
        elif state == states.FAILED:
            if attempts is not None and self._retry(record, task_dct.get('exception')):
                return
            record.backend_final = True
            self.handle_task_failure(task_dct, record.future)
        elif state == states.CANCELED:
            record.backend_final = True
            self.handle_task_cancellation(task_dct, record.future)
        elif state == states.RUNNING and record.state is NodeState.SUBMITTED:
            transition(record, NodeState.RUNNING)
            if attempts is not None and attempts.policy.timeout:
                self._arm_timeout(record)          # a timeout counts running time only

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

    def _on_future_done(self, future: asyncio.Future) -> None:
        """A component finished: release or abort its dependents."""
        record: ComponentRecord = future._af_record
        if record.attempts is not None and record.attempts.timer is not None:
            record.attempts.timer.cancel()
            record.attempts.timer = None
        if future.cancelled():
            STATS.canceled += 1
            submitted = record.state in (NodeState.SUBMITTED, NodeState.RUNNING)
            for dependent in self._graph.abort(record, NodeState.CANCELED):
                dependent.future.cancel()
            if submitted and not record.backend_final:
                self._cancel_in_backend(record)
        elif future.exception() is not None:
            STATS.failed += 1
            error = future.exception()
            root = error.root_cause if isinstance(error, DependencyFailure) else error
            for dependent in self._graph.abort(record, NodeState.FAILED):
                if dependent.future.done():     # another failed dependency got there first
                    continue
                dependent.future.set_exception(_dependency_failure(dependent, record, root))
        else:
            STATS.done += 1
            released = self._graph.succeed(record)
            if released:
                ready = self._ready
                if not ready:       # else the scheduler is awake or about to be
                    self._wakeup.set()
                ready.extend(released)
            # The result lives on in the program's future alone.
            desc = record.description
            desc['args'] = ()
            if desc.get('kwargs'):
                desc['kwargs'] = {}
            for key in _RESULT_KEYS:
                desc.pop(key, None)
            record.release_future()
        record.args = record.kwargs = None
        record.dependencies = None

    def _finish_after_dependency(self, record: ComponentRecord, dep: ComponentRecord) -> None:
        if dep.state is NodeState.CANCELED:
            record.future.cancel()
            return
        error = dep.future.exception()
        root = error.root_cause if isinstance(error, DependencyFailure) else error
        record.future.set_exception(_dependency_failure(record, dep, root))

    def _cancel_in_backend(self, record: ComponentRecord) -> None:
        if record.spec.kind is BLOCK:
            if record.block_task is not None:
                record.block_task.cancel()
            return
        try:
            result = self.backend.cancel_task(record.uid)
        except Exception as exc:
            self.log.warning('cancelling %s in the backend failed: %s', record.uid, exc)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._background.add(task)
            task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.warning('backend cancel failed: %s', task.exception())

    # ------------------------------------------------- retries and timeouts

    def _arm_timeout(self, record: ComponentRecord) -> None:
        attempts = record.attempts
        if attempts.timer is not None:
            attempts.timer.cancel()
        attempts.timer = self.loop.call_later(attempts.policy.timeout, self._on_timeout,
                                              record, attempts.attempt)

    def _on_timeout(self, record: ComponentRecord, attempt: int) -> None:
        attempts = record.attempts
        attempts.timer = None
        if record.future.done() or attempts.attempt != attempt:
            return
        self._cancel_in_backend(record)
        error = TimeoutError(f"task '{record.name}' ({record.uid}) did not finish within its "
                             f"timeout of {attempts.policy.timeout:g} s (attempt {attempt}); "
                             f"raise timeout= or check why it hangs")
        if not self._retry(record, error):
            record.future.set_exception(error)

    def _retry(self, record: ComponentRecord, error: Optional[BaseException]) -> bool:
        """Schedule another attempt if the policy allows one; True if it did."""
        attempts = record.attempts
        if attempts.attempt > attempts.policy.retries or self._shutdown_event.is_set():
            return False
        attempts.attempt += 1
        delay = attempts.policy.delay(attempts.attempt)
        self.log.warning('task %s (%s) failed (%s); attempt %d of %d in %.1f s', record.name,
                         record.uid, error, attempts.attempt, attempts.policy.retries + 1, delay)
        # A fresh dict per attempt: reports about the old one are recognised as stale.
        fresh = {k: v for k, v in record.description.items()
                 if k not in ('return_value', 'stdout', 'stderr', 'exit_code', 'exception')}
        record.description = fresh
        transition(record, NodeState.READY)
        self.loop.call_later(delay, self._resubmit, record)
        return True

    def _resubmit(self, record: ComponentRecord) -> None:
        if record.future.done() or self._shutdown_event.is_set():
            return
        task = self.loop.create_task(self._dispatch([record]))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    # ---------------------------------------------------------------- journal

    def _identity(self, record: ComponentRecord) -> str:
        spec = record.spec
        records = self._records

        def identity_of(value: Any) -> Optional[str]:
            if type(value) is _TaskFuture:
                dep = value._af_record
                if records.get(dep.uid) is dep and dep.attempts is not None:
                    return dep.attempts.identity
            return None

        qualname = f'{spec.func.__module__}.{spec.func.__qualname__}'
        return task_identity(qualname, spec.calls, record.args, record.kwargs, identity_of)

    def _replay(self, record: ComponentRecord) -> bool:
        """Resolve a task from the journal if it finished in an earlier run."""
        entry = self._journal.lookup(record.attempts.identity)
        if entry is None or not entry.outputs_exist(self.work_dir):
            return False
        try:
            result = entry.result()
        except Exception as exc:       # e.g. the result's class no longer exists
            self.log.warning('journal entry of %s unreadable (%s); running it again',
                             record.name, exc)
            return False
        record.description['replayed'] = True
        record.future.set_result(result)
        return True

    def _journal_done(self, record: ComponentRecord, task: Dict[str, Any]) -> None:
        if self._journal_read_only:
            return      # a dry run's results are not real: never record them
        if record.spec.task_type is EXECUTABLE:
            kind, payload = 'stdout', str(task.get('stdout') or '').encode()
        else:
            try:
                kind, payload = 'value', pickle.dumps(task.get('return_value'), protocol=4)
            except Exception as exc:
                self.log.warning('result of %s cannot be pickled (%s): not journaled, '
                                 'it will run again on resume', record.name, exc)
                return
        outputs = tuple(task['metadata']['output_files'])
        full = self._journal.record(JournalEntry(record.attempts.identity, record.name,
                                                 kind, payload, outputs))
        if full:
            self._flush_journal()
        elif self._journal_flush is None:
            # Once per loop iteration: every completion of this iteration in one commit.
            self._journal_flush = self.loop.call_soon(self._flush_journal)

    def _flush_journal(self) -> None:
        self._journal_flush = None
        if self._journal is not None:
            self._journal.flush()

    # ---------------------------------------------------------------- shutdown

    async def shutdown(self, skip_execution_backend: bool = False) -> None:
        """Stop the scheduler, cancel what is pending, shut the backend down.

        Safe to call more than once; later calls wait for the first.
        """
        if self._shutdown_task is None:
            self._shutdown_task = self.loop.create_task(self._shutdown(skip_execution_backend))
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self, skip_execution_backend: bool,
                        exit_status: Optional[int] = None) -> None:
        """Stop everything; with ``exit_status`` (a signal), end the process too.

        On a signal the futures are cancelled last, in the same step that
        raises SystemExit, so the driver does not wake up to a cancelled
        future first: ``asyncio.run()`` then ends with the exit status and
        without a traceback, and the driver's done-callbacks still run.
        """
        self.log.debug('shutting down')
        self._shutdown_event.set()
        internal = [t for t in (self._run_task, self._submit_task) if t is not None]
        for task in internal:
            task.cancel()
        if internal:
            done, pending = await asyncio.wait(internal, timeout=SHUTDOWN_WAIT)
            if pending:
                self.log.warning('engine coroutines did not stop within %ss', SHUTDOWN_WAIT)

        interrupted = exit_status is not None
        self._ignore_backend_reports = interrupted
        if not interrupted:
            self._cancel_pending(stop_in_backend=skip_execution_backend)
        if self._background:
            await asyncio.wait(list(self._background), timeout=SHUTDOWN_WAIT)
        self._remove_signal_handlers()

        if skip_execution_backend:
            self.log.info('leaving the execution backend running, as asked')
        else:
            result = self.backend.shutdown()
            if inspect.isawaitable(result):
                await result
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        STATS.summaries.append(self._monitor.stop(self.exit_signal))
        self.prof.prof('engine_stop', uid='engine')
        self.prof.flush()
        self.log.info('engine stopped')
        if interrupted:
            self.loop.call_soon(_exit_process, exit_status)
            self._cancel_pending(stop_in_backend=False)

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


def _dependency_failure(record: ComponentRecord, dep: ComponentRecord,
                        root: BaseException) -> DependencyFailure:
    """What ``record`` raises when its dependency ``dep`` failed with ``root`` upstream."""
    return DependencyFailure(
        f"task '{record.name}' was not run: its dependency '{dep.name}' ({dep.uid}) "
        f"failed: {root!r}", failed_dependencies=[dep.name], root_cause=root)


def _exit_process(status: int) -> None:
    # Raised from a plain loop callback, SystemExit leaves asyncio.run()
    # without a traceback; the status follows the shell convention for death
    # by signal (128 + signal number).
    raise SystemExit(status)


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f'{name} must be True or False, not {value!r}')
