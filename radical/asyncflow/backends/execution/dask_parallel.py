"""Runs tasks on a dask.distributed cluster through its asynchronous Client.

``DaskExecutionBackend(resources)`` starts a ``LocalCluster`` from
``resources`` (``n_workers``, ``threads_per_worker``, ``processes``,
``memory_limit``...), or connects to a running scheduler given as
``{'scheduler_address': 'tcp://host:port'}`` (or ``scheduler_file``) and
leaves that cluster running on shutdown, or (``{'cluster': 'slurm', 'jobs':
2, 'cores': 4, 'memory': '8GB', ...}``, see :mod:`._dask_jobqueue`) starts
its workers as batch jobs through dask-jobqueue and cancels them on shutdown.

Each task becomes one Dask task.  Function tasks run in a worker thread
(coroutine functions on a fresh event loop there); executable tasks run
their command as a subprocess of the worker, whose stdout is the result.
Per-task Dask options come from the task description: ``resources``,
``retries``, ``priority``, ``workers``, ``allow_other_workers`` and
``pure`` (default False).  Workers need ``radical.asyncflow`` installed.

Dask does not tell a client when a worker starts a task, so ``running``
means "handed to the scheduler".  Cancelling a task cancels its Dask future
and interrupts it on the worker: a coroutine is cancelled, a command's
process group is killed; a plain function runs to its end (Python threads
cannot be stopped).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import signal
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ...constants import StateMapper
from ...errors import (AsyncFlowError, BackendError, MissingDependencyError, UsageStateError,
                       UsageTypeError)
from . import _dask_jobqueue as jobqueue
from ._command import COMMAND_OPTIONS, CommandSpec, command_failure, run_command_sync
from ._functions import call_function
from .base import Session
from .dict_protocol import DictFace
from .spec import CommandResult, Reporter, TaskSpec

#: Keys of a task's ``task_description`` passed on to ``Client.submit``.
SUBMIT_OPTIONS = ('resources', 'retries', 'priority', 'workers', 'allow_other_workers')
#: ``resources`` keys that name an existing cluster instead of starting one.
CONNECT_OPTIONS = ('scheduler_address', 'scheduler_file')
#: Seconds allowed for each step of cancelling and shutting down.
CONTROL_TIMEOUT = 10.0

log = logging.getLogger('radical.asyncflow.dask')


class _Tracked(NamedTuple):
    """A task in the cluster: its spec, whom to tell, and its Dask future."""

    spec: TaskSpec
    reporter: Reporter
    future: Any


class DaskExecutionBackend(DictFace):
    """Execution on a dask.distributed cluster, local or remote.

    Workers are expected to share the client's file system: data
    dependencies need no staging.
    """


    def __init__(self, resources: Optional[Dict[str, Any]] = None, *,
                 name: Optional[str] = None) -> None:
        try:
            import distributed
        except ImportError as exc:
            raise MissingDependencyError('DaskExecutionBackend', 'distributed', 'dask') from exc
        if resources is None:
            resources = {}
        if not isinstance(resources, dict):
            raise UsageTypeError(f'DaskExecutionBackend needs a dict of resources, '
                                 f'not {type(resources).__name__}')
        self._jobqueue = jobqueue.parse_jobqueue(resources)
        if self._jobqueue is not None:
            jobqueue.import_jobqueue()          # missing: an ImportError naming the extra
        self._name = name
        self._dd = distributed
        self.resources = dict(resources)
        self.session = Session()
        self.client: Any = None
        self.cluster: Any = None
        self._owns_cluster = not any(self.resources.get(k) for k in CONNECT_OPTIONS)
        self._states = StateMapper.of('dask', done_state='finished', failed_state='error',
                                      canceled_state='cancelled', running_state='running',
                                      pending='pending', lost='lost')
        self._token = uuid.uuid4().hex[:8]
        self._tasks: Dict[str, _Tracked] = {}                 # uid -> the task in the cluster
        self._uids_of: Dict[int, List[str]] = {}              # id(dask future) -> uids
        self._completed: Any = None                           # distributed.as_completed
        self._collector: Optional[asyncio.Task] = None
        self._more: Optional[asyncio.Event] = None
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------

    async def _async_init(self) -> None:
        dd = self._dd
        opts = dict(self.resources)
        address = opts.pop('scheduler_address', None)
        scheduler_file = opts.pop('scheduler_file', None)
        opts.pop('cluster', None)
        try:
            if self._jobqueue is not None:
                self.cluster = await jobqueue.start_cluster(self._jobqueue)
                self.client = dd.Client(self.cluster, asynchronous=True, set_as_default=False)
            elif self._owns_cluster:
                opts.setdefault('dashboard_address', ':0')     # any free port, not 8787
                self.cluster = dd.LocalCluster(asynchronous=True, **opts)
                await self.cluster
                self.client = dd.Client(self.cluster, asynchronous=True, set_as_default=False)
            else:
                self.client = dd.Client(address, scheduler_file=scheduler_file,
                                        asynchronous=True, set_as_default=False, **opts)
            await self.client
            if self._jobqueue is not None:
                await jobqueue.wait_for_workers(self.client, self.cluster, self._jobqueue)
        except BaseException as exc:
            # batch jobs are cancelled whatever stopped the start (also a signal)
            await asyncio.shield(self._close_client_and_cluster())
            if isinstance(exc, BackendError) or not isinstance(exc, Exception):
                raise
            if self._jobqueue is not None:
                where = (f'a {self._jobqueue.batch_system} cluster of {self._jobqueue.jobs} '
                         f'worker job(s)')
            elif self._owns_cluster:
                where = f'a LocalCluster with {opts}'
            else:
                where = f'the Dask scheduler at {address or scheduler_file}'
            raise BackendError(f'DaskExecutionBackend could not start or reach {where}: '
                               f'{type(exc).__name__}: {exc}') from exc
        self._completed = dd.as_completed(loop=self.client.loop)
        self._more = asyncio.Event()
        self._collector = asyncio.get_running_loop().create_task(
            self._collect(), name='asyncflow-dask-collector')

    async def shutdown(self) -> None:
        """Cancel what runs and close the client and the cluster it started."""
        if self._stopped:
            return
        self._stopped = True
        pending = list(self._tasks.values())
        self._tasks.clear()
        self._uids_of.clear()
        if pending and self.client is not None:
            await self._stop_remote([tracked.future for tracked in pending])
        for tracked in pending:
            tracked.reporter.cancelled(tracked.spec)
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.wait([self._collector], timeout=CONTROL_TIMEOUT)
        await self._close_client_and_cluster()

    async def _close_client_and_cluster(self) -> None:
        for closable in (self.client, self.cluster if self._owns_cluster else None):
            if closable is None:
                continue
            try:
                await asyncio.wait_for(closable.close(), timeout=CONTROL_TIMEOUT * 3)
            except Exception as exc:          # keep closing the rest
                log.warning('closing %s failed: %s', type(closable).__name__, exc)

    def state(self) -> str:
        if self._stopped:
            return 'STOPPED'
        return 'RUNNING' if self.client is not None else 'NEW'

    # -- tasks ---------------------------------------------------------------

    async def submit(self, tasks: Sequence[TaskSpec], reporter: Reporter) -> None:
        """Hand the tasks to the Dask cluster; report through ``reporter``."""
        if self._stopped or self.client is None:
            raise UsageStateError('DaskExecutionBackend is not running: '
                                  + ('it has been shut down' if self._stopped else
                                  "await it first (backend = await DaskExecutionBackend({...}))"))
        # One Client.map call per group of tasks with the same Dask options:
        # the scheduler then receives one graph per group, not one per task.
        groups: Dict[str, Tuple[Dict[str, Any], List[TaskSpec]]] = {}
        for task in tasks:
            opts = task.options
            submit = {k: opts[k] for k in SUBMIT_OPTIONS if opts.get(k) is not None}
            submit['pure'] = bool(opts.get('pure', False))
            groups.setdefault(repr(sorted(submit.items())), (submit, []))[1].append(task)
        for submit, members in groups.values():
            keys = None if submit['pure'] else [
                f'{task.name}-{task.uid}.{task.attempt}-{self._token}' for task in members]
            futures = self.client.map(_execute, [_payload(task) for task in members],
                                      key=keys, **submit)
            new = []
            for task, future in zip(members, futures):
                self._tasks[task.uid] = _Tracked(task, reporter, future)
                uids = self._uids_of.setdefault(id(future), [])
                if not uids:                # pure=True: equal calls may share one future
                    new.append(future)
                uids.append(task.uid)
                reporter.running(task)
            self._completed.update(new)
        self._more.set()

    async def _collect(self) -> None:
        """Report each finished Dask future; results are gathered in batches."""
        completed = self._completed
        while True:
            if completed.is_empty():        # nothing submitted: sleep until there is
                self._more.clear()
                await self._more.wait()
                continue
            try:
                first = await completed.__anext__()
            except StopAsyncIteration:
                continue
            batch = [first]
            while completed.has_ready():
                batch.append(next(completed))
            try:
                await self._report(batch)
            except asyncio.CancelledError:
                raise
            except Exception:               # never let one batch stop the collector
                log.exception('reporting %d Dask results failed', len(batch))
            del first, batch                # release the futures while waiting

    async def _report(self, batch: List[Any]) -> None:
        finished: List[_Tracked] = []
        for future in batch:
            # none left if the engine cancelled them meanwhile
            for uid in list(self._uids_of.get(id(future), ())):
                tracked = self._tasks.get(uid)
                if tracked is None or tracked.future is not future:
                    continue
                if future.status == 'finished':
                    finished.append(tracked)
                else:
                    await self._fail(tracked)
        if not finished:
            return
        try:
            values = await self.client.gather([t.future for t in finished])
        except Exception:                   # one of them failed after all: one by one
            for tracked in finished:
                try:
                    value = await tracked.future.result()
                except Exception:
                    await self._fail(tracked)
                else:
                    if self._forget(tracked):
                        tracked.reporter.done(tracked.spec, value)
            return
        for tracked, value in zip(finished, values):
            if self._forget(tracked):
                tracked.reporter.done(tracked.spec, value)

    async def _fail(self, tracked: _Tracked) -> None:
        error = await self._remote_error(tracked.spec, tracked.future)
        if self._forget(tracked):
            tracked.reporter.failed(tracked.spec, error)

    async def _remote_error(self, task: TaskSpec, future: Any) -> BaseException:
        """The exception the task raised on its worker, with the worker's traceback.

        A task Dask dropped on its own (scheduler connection lost...) gets a
        BackendError that says so.
        """
        cause: Optional[BaseException] = None
        if future.status == 'error':
            try:
                exc = await future.exception()
                tb = await future.traceback()
            except Exception as lookup_error:
                exc, tb = lookup_error, None
            if isinstance(exc, CommandFailed):
                return command_failure(task, exc.result)
            if isinstance(exc, BaseException):
                if tb is not None:
                    exc = exc.with_traceback(tb)
                _note_origin(exc, task)
                return exc
            cause = RuntimeError(repr(exc))
        else:
            try:
                await future.result()
            except Exception as exc:
                cause = exc
        error = BackendError(f"task '{task.name}' ({task.uid}) did not complete on the Dask "
                             f"cluster (Dask status {future.status!r}): "
                             f"{cause or 'no reason given'}")
        error.__cause__ = cause
        return error

    def _forget(self, tracked: _Tracked) -> bool:
        """Stop tracking ``tracked``; False if it was no longer tracked."""
        uid = tracked.spec.uid
        if self._tasks.get(uid) is not tracked:
            return False
        del self._tasks[uid]
        uids = self._uids_of.get(id(tracked.future))
        if uids is not None:
            uids.remove(uid)
            if not uids:
                del self._uids_of[id(tracked.future)]
        return True

    async def cancel_task(self, uid: str) -> bool:
        """Cancel the task in the cluster; True if it will not complete normally."""
        tracked = self._tasks.get(uid)
        if tracked is None:
            return False
        self._forget(tracked)
        if id(tracked.future) not in self._uids_of:     # unless pure=True tasks share its run
            await self._stop_remote([tracked.future])
        tracked.reporter.cancelled(tracked.spec)
        return True

    async def _stop_remote(self, futures: List[Any]) -> None:
        """Cancel ``futures`` and interrupt those already running on a worker."""
        try:
            await asyncio.wait_for(self.client.cancel(futures), CONTROL_TIMEOUT)
            await asyncio.wait_for(self.client.run(_interrupt, [f.key for f in futures],
                                                   on_error='ignore'), CONTROL_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning('cancelling %d Dask tasks: %s', len(futures), exc)

    # -- the rest of the contract -------------------------------------------

    def get_task_states_map(self) -> StateMapper:
        return self._states


def resource_keys() -> set:
    """The keys ``resources`` may hold: those of dask.distributed's LocalCluster (and
    the Worker/Nanny keywords it passes on), of Client, and the connect options."""
    import inspect
    import distributed
    keys = set(CONNECT_OPTIONS) | {'name'}
    for target in (distributed.LocalCluster, distributed.Worker, distributed.Nanny,
                   distributed.Client):
        keys.update(name for name, param in inspect.signature(target).parameters.items()
                    if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
                    and name != 'self')
    return keys


def _payload(task: TaskSpec) -> '_Payload':
    if task.function is not None:
        return _FunctionCall(task.function, task.args, dict(task.kwargs))
    return _CommandCall(task.command, {k: task.options[k] for k in COMMAND_OPTIONS
                                       if k in task.options}, task.stdio_dir)


def _note_origin(exc: BaseException, task: TaskSpec) -> None:
    """Say where a remote exception came from (Dask tracebacks lose file names)."""
    if not hasattr(exc, 'add_note'):            # Python < 3.11
        return
    note = f"from task '{task.name}' ({task.uid}) on the Dask cluster"
    code = getattr(task.function, '__code__', None)
    if code is not None:
        note += f'; the function is defined at {code.co_filename}:{code.co_firstlineno}'
    exc.add_note(note)


# ---------------------------------------------------------------------------
# Worker side: what runs inside a Dask worker.  Each running task registers
# how to interrupt it, under its Dask key, so that _interrupt can stop it.

_ENV_KEY = 'RADICAL_ASYNCFLOW_DASK_KEY'
_lock = threading.Lock()
_interrupts: Dict[str, Callable[[], None]] = {}
#: Keys cancelled before they started here, with the time of the cancellation.
_early: 'collections.OrderedDict[str, float]' = collections.OrderedDict()
_EARLY_LIMIT = 4096
#: Seconds a cancellation waits for its task to start (covers the submit/cancel race).
_EARLY_WINDOW = 5.0


class _TaskCancelled(AsyncFlowError):
    """The task was cancelled before it started on the worker."""


class CommandFailed(AsyncFlowError):
    """Raised in the worker when a command exits non-zero, so that Dask
    ``retries`` apply; the client turns it into a TaskExecutionError."""

    def __init__(self, result: CommandResult) -> None:
        super().__init__(f'command exited with code {result.exit_code}')
        self.result = result

    def __reduce__(self):
        return (CommandFailed, (self.result,))


class _Payload:
    """A task's work, opaque to Dask (it does not look inside arguments)."""

    __slots__ = ()

    def run(self, key: Optional[str]) -> Any:
        raise NotImplementedError


class _FunctionCall(_Payload):
    __slots__ = ('func', 'args', 'kwargs')

    def __init__(self, func: Callable, args: tuple, kwargs: dict) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs

    def __getstate__(self):
        return (self.func, self.args, self.kwargs)

    def __setstate__(self, state) -> None:
        self.func, self.args, self.kwargs = state

    def __dask_tokenize__(self):
        from dask.base import tokenize
        return tokenize(self.func, self.args, self.kwargs)

    def run(self, key: Optional[str]) -> Any:
        if key is None or not inspect.iscoroutinefunction(self.func):
            return call_function(self.func, self.args, self.kwargs)
        return asyncio.run(_interruptible(key, self.func(*self.args, **self.kwargs)))


class _CommandCall(_Payload):
    __slots__ = ('command', 'options', 'stdio_dir')

    def __init__(self, command: str, options: Dict[str, Any],
                 stdio_dir: Optional[str] = None) -> None:
        self.command = command
        self.options = options
        self.stdio_dir = stdio_dir

    def __getstate__(self):
        return (self.command, self.options, self.stdio_dir)

    def __setstate__(self, state) -> None:
        self.command, self.options, self.stdio_dir = state

    def __dask_tokenize__(self):
        from dask.base import tokenize
        return tokenize(self.command, self.options, self.stdio_dir)

    def run(self, key: Optional[str]) -> CommandResult:
        # the worker's own environment; its output into files on the shared file system
        spec = CommandSpec.build(self.command, self.options, self.stdio_dir)
        if key is None:
            result = run_command_sync(spec)
        else:
            spec.env = {**(spec.env or os.environ), _ENV_KEY: str(key)}
            with _registered(key, lambda: _kill_commands(str(key))):
                result = run_command_sync(spec)
        if result.exit_code != 0:
            raise CommandFailed(result)
        return result


def _execute(payload: _Payload) -> Any:
    """The function every Dask task of this backend runs."""
    try:
        from distributed import get_worker
        key = get_worker().get_current_task()
    except (ImportError, ValueError, KeyError):
        key = None
    return payload.run(key)


async def _interruptible(key: str, coro: Any) -> Any:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    try:
        with _registered(key, lambda: loop.call_soon_threadsafe(task.cancel)):
            return await coro
    finally:
        coro.close()


class _registered:
    """Registers how to interrupt the task with ``key`` while it runs."""

    def __init__(self, key: str, interrupt: Callable[[], None]) -> None:
        self.key = key
        self.interrupt = interrupt

    def __enter__(self) -> None:
        with _lock:
            cancelled_at = _early.pop(self.key, None)
            if cancelled_at is not None and time.monotonic() - cancelled_at < _EARLY_WINDOW:
                raise _TaskCancelled(f'{self.key} was cancelled before it started')
            _interrupts[self.key] = self.interrupt

    def __exit__(self, *exc_info: Any) -> None:
        with _lock:
            _interrupts.pop(self.key, None)


def _interrupt(keys: List[str]) -> int:
    """Run on every worker by ``Client.run``: interrupt the tasks with ``keys``."""
    found = []
    with _lock:
        for key in keys:
            interrupt = _interrupts.pop(key, None)
            if interrupt is None:
                _early[key] = time.monotonic()
                if len(_early) > _EARLY_LIMIT:
                    _early.popitem(last=False)
            else:
                found.append(interrupt)
    for interrupt in found:
        try:
            interrupt()
        except Exception as exc:
            log.warning('interrupting a cancelled task failed: %s', exc)
    return len(found)


def _kill_commands(key: str) -> None:
    """Kill the process groups of the commands started for ``key``."""
    import psutil
    own_group = os.getpgid(0)
    for child in psutil.Process().children(recursive=True):
        try:
            if child.environ().get(_ENV_KEY) != key:
                continue
            group = os.getpgid(child.pid)
            if group != own_group:
                os.killpg(group, signal.SIGKILL)
        except (psutil.Error, OSError):
            continue
