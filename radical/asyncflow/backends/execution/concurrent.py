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
from typing import Any, Dict, List, Optional, Sequence

from ._command import CommandSpec, command_failure, run_command
from ._functions import FunctionRef
from ._process_pool import SupervisedProcessPool
from .base import BACKEND_STOP_WAIT, Session
from .dict_protocol import DictFace
from .spec import Reporter, TaskSpec
from ...errors import UsageStateError, UsageTypeError



class ConcurrentExecutionBackend(DictFace):
    """Local execution on a ThreadPoolExecutor or ProcessPoolExecutor."""

    reports_running = True

    def __init__(self, executor: Executor, *, name: Optional[str] = None) -> None:
        if isinstance(executor, type):
            raise UsageTypeError(f'ConcurrentExecutionBackend needs an executor instance, not the '
                                 f'class {executor.__name__}: pass e.g. {executor.__name__}(4)')
        if not isinstance(executor, (ThreadPoolExecutor, ProcessPoolExecutor)):
            raise UsageTypeError(f'ConcurrentExecutionBackend needs a ThreadPoolExecutor or '
                                 f'ProcessPoolExecutor, not {type(executor).__name__}')
        self._name = name
        self.session = Session()
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

    async def submit(self, tasks: Sequence[TaskSpec], reporter: Reporter) -> None:
        """Start each task as an asyncio task of this loop; report through ``reporter``."""
        if self._stopped:
            raise UsageStateError('ConcurrentExecutionBackend has been shut down')
        loop = asyncio.get_running_loop()
        for task in tasks:
            runner = loop.create_task(self._execute(task, reporter), name=task.uid)
            self._running[task.uid] = runner
            runner.add_done_callback(functools.partial(self._forget, task.uid))

    def _forget(self, uid: str, runner: asyncio.Task) -> None:
        if self._running.get(uid) is runner:
            del self._running[uid]

    async def _execute(self, task: TaskSpec, reporter: Reporter) -> None:
        try:
            if task.function is not None:
                result = await self._call(task, reporter)
            else:
                async with self._slots:
                    reporter.running(task)
                    result = await run_command(CommandSpec.build(task.command, task.options,
                                                                  task.stdio_dir))
                if result.exit_code != 0:
                    reporter.failed(task, command_failure(task, result))
                    return
        except asyncio.CancelledError:
            reporter.cancelled(task)
            return
        except Exception as exc:
            reporter.failed(task, exc)
            return
        reporter.done(task, result)

    async def _call(self, task: TaskSpec, reporter: Reporter) -> Any:
        func = task.function
        args = task.args
        kwargs = dict(task.kwargs)
        if self._pool is not None:
            ref = FunctionRef.of(func, task.name)
            async with self._slots:
                reporter.running(task)
                return await self._pool.call(f'{task.uid}.{task.attempt}', task.name, ref,
                                             args, kwargs)
        if inspect.iscoroutinefunction(func):
            reporter.running(task)
            return await func(*args, **kwargs)
        async with self._slots:
            reporter.running(task)
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(func, *args, **kwargs))

    async def cancel_task(self, uid: str) -> bool:
        """Cancel a running task (its command is killed); True if it was running."""
        runner = self._running.get(uid)
        if runner is None or runner.done():
            return False
        runner.cancel()
        return True

    async def shutdown(self) -> None:
        """Cancel what runs, stop the executor and its processes (bounded wait)."""
        if self._stopped:
            return
        self._stopped = True
        runners = list(self._running.values())
        for runner in runners:
            runner.cancel()
        if runners:
            await asyncio.wait(runners, timeout=BACKEND_STOP_WAIT)
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
            await asyncio.wait_for(waiter, timeout=BACKEND_STOP_WAIT)
        except asyncio.TimeoutError:
            pass



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
