"""Runs tasks on this machine with a ``concurrent.futures`` executor.

Coroutine functions run on the event loop with a ThreadPoolExecutor and in
the worker processes with a ProcessPoolExecutor; plain callables run in the
executor; executable tasks run as asyncio subprocesses.  At most
``max_workers`` commands and pool calls run at once; a task is reported
RUNNING when it gets one of those slots, not while it waits for one.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Dict, List, Optional

from ...constants import StateMapper
from ._command import CommandSpec, command_failure, run_command
from ._functions import FunctionRef
from ._process_pool import SupervisedProcessPool
from .base import BaseExecutionBackend, Session, SharedFileSystemMixin, TaskDict

StateMapper.register_backend_states_with_defaults('concurrent')

#: Seconds shutdown() waits for functions still running in the executor.
SHUTDOWN_WAIT = 10.0


class ConcurrentExecutionBackend(SharedFileSystemMixin, BaseExecutionBackend):
    """Local execution on a ThreadPoolExecutor or ProcessPoolExecutor."""

    reports_running = True

    def __init__(self, executor: Executor) -> None:
        if isinstance(executor, type):
            raise TypeError(f'ConcurrentExecutionBackend needs an executor instance, not the '
                            f'class {executor.__name__}: pass e.g. {executor.__name__}(4)')
        if not isinstance(executor, (ThreadPoolExecutor, ProcessPoolExecutor)):
            raise TypeError(f'ConcurrentExecutionBackend needs a ThreadPoolExecutor or '
                            f'ProcessPoolExecutor, not {type(executor).__name__}')
        self.session = Session()
        self._states = StateMapper('concurrent')
        self._running: Dict[str, asyncio.Task] = {}
        self._stopped = False
        self._pool: Optional[SupervisedProcessPool] = None
        self._executor = executor
        if isinstance(executor, ProcessPoolExecutor):
            self._pool = SupervisedProcessPool(executor)
        # The pool's size bounds running commands too: each one holds a
        # process and three pipes, and thousands at once exhaust descriptors.
        self._slots = asyncio.Semaphore(executor._max_workers)

    @property
    def executor(self) -> Executor:
        """The executor in use (a replacement, after a process pool broke)."""
        return self._pool.executor if self._pool is not None else self._executor

    @property
    def _uses_processes(self) -> bool:
        return self._pool is not None

    async def submit_tasks(self, tasks: List[TaskDict]) -> None:
        if self._stopped:
            raise RuntimeError('ConcurrentExecutionBackend has been shut down')
        loop = asyncio.get_running_loop()
        for task in tasks:
            runner = loop.create_task(self._execute(task), name=task['uid'])
            self._running[task['uid']] = runner
            runner.add_done_callback(functools.partial(self._forget, task['uid']))

    def _forget(self, uid: str, runner: asyncio.Task) -> None:
        if self._running.get(uid) is runner:
            del self._running[uid]

    async def _execute(self, task: TaskDict) -> None:
        states = self._states
        try:
            if task.get('function') is not None:
                task['return_value'] = await self._call(task)
            else:
                async with self._slots:
                    self.task_state_cb(task, states.RUNNING)
                    result = await run_command(CommandSpec.from_task(task))
                task['stdout'] = result.stdout
                task['stderr'] = result.stderr
                task['exit_code'] = result.exit_code
                if result.exit_code != 0:
                    task['exception'] = command_failure(task, result)
                    self.task_state_cb(task, states.FAILED)
                    return
        except asyncio.CancelledError:
            self.task_state_cb(task, states.CANCELED)
            return
        except Exception as exc:
            task['exception'] = exc
            self.task_state_cb(task, states.FAILED)
            return
        self.task_state_cb(task, states.DONE)

    async def _call(self, task: TaskDict) -> Any:
        func = task['function']
        args = tuple(task.get('args') or ())
        kwargs = dict(task.get('kwargs') or {})
        running = self._states.RUNNING
        if self._pool is not None:
            name = task.get('name', task['uid'])
            ref = FunctionRef.of(func, name)
            async with self._slots:
                self.task_state_cb(task, running)
                return await self._pool.call(task['uid'], name, ref, args, kwargs)
        if inspect.iscoroutinefunction(func):
            self.task_state_cb(task, running)
            return await func(*args, **kwargs)
        async with self._slots:
            self.task_state_cb(task, running)
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(func, *args, **kwargs))

    async def cancel_task(self, uid: str) -> bool:
        runner = self._running.get(uid)
        if runner is None or runner.done():
            return False
        runner.cancel()
        return True

    async def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        runners = list(self._running.values())
        for runner in runners:
            runner.cancel()
        if runners:
            await asyncio.wait(runners, timeout=10)
        executor = self.executor
        # Snapshot the workers first: executor.shutdown() forgets them.
        workers = self._pool.workers() if self._pool is not None else []
        executor.shutdown(wait=False, cancel_futures=True)
        if workers:
            await asyncio.get_running_loop().run_in_executor(None, _stop_processes, workers)
        if self._pool is not None:
            self._pool.close()
        # Threads cannot be killed: wait for running calls, but not forever.
        waiter = asyncio.get_running_loop().run_in_executor(
            None, functools.partial(executor.shutdown, wait=True))
        try:
            await asyncio.wait_for(waiter, timeout=SHUTDOWN_WAIT)
        except asyncio.TimeoutError:
            pass

    def state(self) -> str:
        return 'STOPPED' if self._stopped else 'RUNNING'

    def get_task_states_map(self) -> StateMapper:
        return self._states



def _stop_processes(workers: List[Any], grace: float = 3.0) -> None:
    """Terminate pool workers still busy with a task, then kill the stubborn."""
    for proc in workers:
        if proc.is_alive():
            proc.terminate()
    for proc in workers:
        proc.join(grace)
        if proc.is_alive():
            proc.kill()
            proc.join(grace)
