"""A process pool that survives the death of a worker and knows who caused it.

When one worker of a ``ProcessPoolExecutor`` dies (``os._exit``, a segfault,
the OOM killer), the executor fails *every* task it holds and terminates the
other workers.  Here each task leaves a marker with its worker's pid when it
starts; on a broken pool only the task whose own worker died fails (with the
exit code or signal), and every other task runs again on a fresh pool: it
never finished, so nothing finished is repeated.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Dict, Optional, Tuple

from ._in_pool import call_in_worker
from ...errors import BackendError

#: How often a task whose pool broke under it (through no fault of its own)
#: is started again.
MAX_INNOCENT_RESTARTS = 3
#: Seconds to wait for a broken pool to reap its workers.
REAP_WAIT = 5.0


class WorkerDied(BackendError):
    """The worker process running the task died."""


class SupervisedProcessPool:
    """Runs functions in a ProcessPoolExecutor, replacing it when it breaks."""

    def __init__(self, executor: ProcessPoolExecutor) -> None:
        self.executor = executor
        self._max_workers = executor._max_workers
        self._markers = tempfile.mkdtemp(prefix='asyncflow-pool-')
        # every worker seen, per pool (broken ones too: their tasks ask later)
        self._workers: Dict[ProcessPoolExecutor, Dict[int, Any]] = {}
        # tasks handed to each pool and not yet returned
        self._inflight: Dict[ProcessPoolExecutor, set] = {}
        # retired pools: workers still running a cancelled call, killed once
        # the pool's other calls are done (killing one breaks the whole pool)
        self._to_kill: Dict[ProcessPoolExecutor, list] = {}

    async def call(self, uid: str, name: str, ref: Any, args: Tuple,
                   kwargs: Dict[str, Any]) -> Any:
        """Run ``ref(*args, **kwargs)`` in a worker; survive other tasks' crashes.

        ``ref`` is a FunctionRef or a PickledFunction (see ``_in_pool.shippable``).
        """
        loop = asyncio.get_running_loop()
        marker = os.path.join(self._markers, uid)
        executor = self.executor
        try:
            for _ in range(MAX_INNOCENT_RESTARTS + 1):
                executor = self.executor
                self._inflight.setdefault(executor, set()).add(uid)
                try:
                    pending = loop.run_in_executor(executor, call_in_worker, ref, args,
                                                   kwargs, marker)
                    self._workers.setdefault(executor, {}).update(
                        getattr(executor, '_processes', None) or {})
                    return await pending
                except BrokenProcessPool as exc:
                    # The pool's manager thread reaps the workers; once it has
                    # ended, every exit code is known.
                    manager = getattr(executor, '_executor_manager_thread', None)
                    if manager is not None:
                        await loop.run_in_executor(None, manager.join, REAP_WAIT)
                    pid = self._started_in(marker)
                    death = self._death_of(pid, executor)
                    self._replace(executor)
                    if death is not None:
                        raise WorkerDied(
                            f"task '{name}' ({uid}): its worker process (pid {pid}) died: {death}; "
                            f"the pool was replaced and the other tasks go on") from exc
                except asyncio.CancelledError:
                    self._retire_worker_of(marker, executor)
                    raise
                finally:
                    self._inflight[executor].discard(uid)
            raise WorkerDied(f"task '{name}' ({uid}): the process pool broke under it "
                             f"{MAX_INNOCENT_RESTARTS + 1} times; giving up")
        finally:
            _remove(marker)
            self._kill_retired(executor)

    def _started_in(self, marker: str) -> Optional[int]:
        try:
            with open(marker, encoding='ascii') as handle:
                return int(handle.read() or 0) or None
        except (OSError, ValueError):
            return None

    def _death_of(self, pid: Optional[int], executor: ProcessPoolExecutor) -> Optional[str]:
        """How worker ``pid`` died, or None if it was alive or stopped by the pool.

        A broken pool SIGTERMs its remaining workers, so a SIGTERM death is
        only the cause when no worker of that pool died any other way.
        """
        workers = self._workers.get(executor, {})
        proc = workers.get(pid) if pid else None
        code = proc.exitcode if proc is not None else None
        if code is None:
            return None
        if code == -signal.SIGTERM:
            others = (w.exitcode for w in workers.values() if w is not proc)
            if any(c is not None and c != -signal.SIGTERM for c in others):
                return None     # another worker's crash broke the pool
        if code < 0:
            return f'was killed by {signal.Signals(-code).name}'
        return f'exited with code {code}'

    def _retire_worker_of(self, marker: str, executor: ProcessPoolExecutor) -> None:
        """A cancelled call still holds its worker: free it without hurting others.

        New calls go to a fresh pool at once; the old pool finishes what it
        runs, then the stuck worker is killed.
        """
        pid = self._started_in(marker)
        if pid is None or pid not in self._workers.get(executor, {}):
            return          # it never started: nothing holds a worker
        self._to_kill.setdefault(executor, []).append(pid)
        if executor is self.executor:
            self.executor = ProcessPoolExecutor(max_workers=self._max_workers)
            executor.shutdown(wait=False)

    def _kill_retired(self, executor: ProcessPoolExecutor) -> None:
        if executor in self._to_kill and not self._inflight.get(executor):
            for pid in self._to_kill.pop(executor):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if broken is not self.executor:
            return          # another task already replaced it
        self.executor = ProcessPoolExecutor(max_workers=self._max_workers)
        broken.shutdown(wait=False, cancel_futures=True)

    def workers(self) -> list:
        """The live worker processes of every pool, retired ones included."""
        seen = dict(getattr(self.executor, '_processes', None) or {})
        for pool in self._workers.values():
            seen.update(pool)
        return [proc for proc in seen.values() if proc.is_alive()]

    def close(self) -> None:
        shutil.rmtree(self._markers, ignore_errors=True)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
