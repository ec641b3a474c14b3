"""The backends the shared workflow tests run on, and the Dask clusters they need.

``BACKENDS`` lists one :class:`BackendFactory` per backend: a name (the
test id), an async ``create(**fixtures)`` returning an initialised backend,
pytest marks, and the names of the fixtures ``create`` needs.  Parametrise
a fixture with :func:`backend_params` and build the backend with
:func:`create_backend`::

    from backend_params import backend_params, create_backend, dask_process_cluster  # noqa: F401

    @pytest.fixture(params=backend_params())
    def make_backend(request):
        return create_backend(request.param, request)

    async def test_x(make_backend):
        engine = await WorkflowEngine.create(backend=await make_backend())

``dask_process_cluster`` is a module-scoped fixture: a ``dask scheduler``
and two ``dask worker`` processes on 127.0.0.1, stopped by PID afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import psutil
import pytest

try:
    import distributed  # noqa: F401
    HAVE_DASK = True
except ImportError:
    HAVE_DASK = False

from radical.asyncflow import ConcurrentExecutionBackend

try:
    from .helpers import alive
except ImportError:
    from helpers import alive

#: Worker processes and threads of the test clusters (2 cores on CI).
DASK_WORKERS = 2
DASK_THREADS = 2
#: Seconds a cluster process may take to start or stop.
STARTUP_TIMEOUT = 30
#: Environment of the test scheduler: a task whose worker dies twice fails.
SCHEDULER_ENV = {'DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES': '1'}

needs_dask = pytest.mark.skipif(not HAVE_DASK, reason='dask.distributed is not installed')


@dataclass(frozen=True)
class BackendFactory:
    """How to create one backend for a test."""

    name: str
    create: Callable[..., Awaitable[Any]]
    marks: Tuple[Any, ...] = ()
    fixtures: Tuple[str, ...] = ()


async def _thread_backend() -> Any:
    return await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=8))


async def _dask_local_backend() -> Any:
    from radical.asyncflow import DaskExecutionBackend
    return await DaskExecutionBackend({'n_workers': DASK_WORKERS,
                                       'threads_per_worker': DASK_THREADS,
                                       'processes': True})


async def _dask_remote_backend(dask_process_cluster: 'DaskProcessCluster') -> Any:
    from radical.asyncflow import DaskExecutionBackend
    return await DaskExecutionBackend({'scheduler_address': dask_process_cluster.address})


BACKENDS: List[BackendFactory] = [
    BackendFactory('thread', _thread_backend),
    BackendFactory('dask-local', _dask_local_backend, marks=(pytest.mark.dask, needs_dask)),
    BackendFactory('dask-remote', _dask_remote_backend, marks=(pytest.mark.dask, needs_dask),
                   fixtures=('dask_process_cluster',)),
]


def backend_params(names: Optional[List[str]] = None) -> List[Any]:
    """``pytest.param`` per factory (all, or those named), with its marks and id."""
    return [pytest.param(f, id=f.name, marks=f.marks)
            for f in BACKENDS if names is None or f.name in names]


def create_backend(factory: BackendFactory, request: Any) -> Callable[[], Awaitable[Any]]:
    """A no-argument coroutine function creating ``factory``'s backend.

    The fixtures the factory needs are resolved now, through ``request``.
    """
    kwargs = {name: request.getfixturevalue(name) for name in factory.fixtures}

    async def create() -> Any:
        return await factory.create(**kwargs)

    return create


# ---------------------------------------------------------------------------
# A Dask cluster made of separate processes, as on a real machine.

class DaskProcessCluster:
    """``dask scheduler`` plus ``dask worker`` processes on 127.0.0.1.

    Workers run under a nanny (the ``dask worker`` process), which restarts
    a worker process that dies; :meth:`worker_pids` are the worker
    processes themselves, :attr:`procs` the processes started here.
    """

    def __init__(self, workdir: str, n_workers: int = DASK_WORKERS,
                 threads: int = DASK_THREADS) -> None:
        self.workdir = workdir
        self.n_workers = n_workers
        self.threads = threads
        self.scheduler_file = os.path.join(workdir, 'scheduler.json')
        self.procs: List[subprocess.Popen] = []
        self.address: Optional[str] = None
        self._logs: List[Any] = []

    def _spawn(self, name: str, args: List[str], env: Optional[Dict[str, str]] = None) -> None:
        logfile = open(os.path.join(self.workdir, f'{name}.log'), 'wb')
        self._logs.append(logfile)
        self.procs.append(subprocess.Popen(
            [sys.executable, '-m', *args], cwd=self.workdir, stdout=logfile,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True))

    def start(self) -> 'DaskProcessCluster':
        self._spawn('scheduler', ['distributed.cli.dask_scheduler', '--host', '127.0.0.1',
                                  '--port', '0', '--no-dashboard',
                                  '--scheduler-file', self.scheduler_file], SCHEDULER_ENV)
        self._wait_for(lambda: os.path.exists(self.scheduler_file), 'the scheduler file')
        for i in range(self.n_workers):
            self._spawn(f'worker{i}', [
                'distributed.cli.dask_worker', '--scheduler-file', self.scheduler_file,
                '--host', '127.0.0.1', '--nthreads', str(self.threads),
                '--name', f'worker{i}', '--resources', f'SLOT{i}=1', '--no-dashboard',
                '--memory-limit', '0', '--local-directory', self.workdir])
        self._wait_for(lambda: len(self.worker_pids()) == self.n_workers, 'the workers')
        from distributed import Client
        with Client(scheduler_file=self.scheduler_file, timeout=STARTUP_TIMEOUT) as client:
            client.wait_for_workers(self.n_workers, timeout=STARTUP_TIMEOUT)
            self.address = client.scheduler.address
        return self

    def _wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not condition():
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f'{proc.args} exited with {proc.returncode} while '
                                       f'waiting for {what}; see the logs in {self.workdir}')
            if time.monotonic() > deadline:
                raise TimeoutError(f'waited {STARTUP_TIMEOUT}s for {what}')
            time.sleep(0.1)

    def worker_pids(self) -> List[int]:
        """PIDs of the worker processes (children of the nannies)."""
        pids = []
        for proc in self.procs[1:]:
            try:
                children = psutil.Process(proc.pid).children()
            except psutil.NoSuchProcess:
                continue
            for child in children:          # the worker, and multiprocessing's resource tracker
                try:
                    if (child.status() != psutil.STATUS_ZOMBIE
                            and 'resource_tracker' not in ' '.join(child.cmdline())):
                        pids.append(child.pid)
                except psutil.NoSuchProcess:
                    continue
        return pids

    def all_pids(self) -> List[int]:
        """Every process of the cluster: started here, and their descendants."""
        pids = []
        for proc in self.procs:
            pids.append(proc.pid)
            try:
                pids.extend(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return pids

    def stop(self) -> List[int]:
        """Stop every process by PID (workers first); return the PIDs stopped."""
        pids = self.all_pids()
        for group in (self.procs[1:], self.procs[:1]):  # the workers, then the scheduler
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STARTUP_TIMEOUT
            for proc in group:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        for pid in pids:                                 # orphans of killed nannies
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        psutil.wait_procs([p for p in map(_process, pids) if p is not None], timeout=10)
        for logfile in self._logs:
            logfile.close()
        return pids


def _process(pid: int) -> Optional[psutil.Process]:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


@pytest.fixture(scope='module')
def dask_process_cluster():
    """A scheduler and two worker processes for this test module; all gone afterwards."""
    if not HAVE_DASK:
        pytest.skip('dask.distributed is not installed')
    with tempfile.TemporaryDirectory(prefix='asyncflow-dask-') as workdir:
        cluster = DaskProcessCluster(workdir)
        try:
            cluster.start()
            yield cluster
        finally:
            pids = cluster.stop()
            still_running = [pid for pid in pids if alive(pid)]
            assert not still_running, f'cluster processes left running: {still_running}'
