"""Runs tasks on this machine with a ``concurrent.futures`` executor.

Function tasks run in the executor's workers: an ``async def`` body runs to
completion in the pool thread (on that thread's own event loop, reused) or
worker process that picks it up, so a body that blocks holds one worker, not
the engine's loop.  A process pool gets module-level functions by name and
closures, lambdas and nested functions by value (cloudpickle).  Executable
tasks run as asyncio subprocesses.  At most ``max_workers`` commands and pool
calls run at once; a task is reported RUNNING when it starts (a function on
a thread pool: by the thread that picks it up), not while it waits.

``coroutines_on_loop=True`` (thread pools) runs ``async def`` bodies on the
engine's event loop instead, unbounded by the pool: for bodies that only
``await`` (network calls, other engines), which then need no thread hop.  A
body that blocks stalls the whole engine in that mode.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence

from ._command import CommandSpec, command_failure, run_command
from ._in_pool import RunningBody, ThreadLoops, shippable
from ._process_pool import SupervisedProcessPool
from .base import BACKEND_STOP_WAIT, Session
from .dict_protocol import DictFace
from .spec import Reporter, TaskSpec
from ...errors import UsageStateError, UsageTypeError, UsageValueError



class ConcurrentExecutionBackend(DictFace):
    """Local execution on a ThreadPoolExecutor or ProcessPoolExecutor."""

    reports_running = True

    def __init__(self, executor: Executor, *, name: Optional[str] = None,
                 coroutines_on_loop: bool = False) -> None:
        if isinstance(executor, type):
            raise UsageTypeError(f'ConcurrentExecutionBackend needs an executor instance, not the '
                                 f'class {executor.__name__}: pass e.g. {executor.__name__}(4)')
        if not isinstance(executor, (ThreadPoolExecutor, ProcessPoolExecutor)):
            raise UsageTypeError(f'ConcurrentExecutionBackend needs a ThreadPoolExecutor or '
                                 f'ProcessPoolExecutor, not {type(executor).__name__}')
        if not isinstance(coroutines_on_loop, bool):
            raise UsageTypeError(f'coroutines_on_loop must be True or False, not '
                                 f'{coroutines_on_loop!r}')
        if coroutines_on_loop and isinstance(executor, ProcessPoolExecutor):
            raise UsageValueError('coroutines_on_loop=True runs coroutine bodies on the event '
                                  'loop and needs a ThreadPoolExecutor, not a '
                                  'ProcessPoolExecutor')
        self._name = name
        self._on_loop = coroutines_on_loop
        self._loops = ThreadLoops()
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
        self._queued = asyncio.Semaphore(2 * executor._max_workers)

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
            ref = shippable(func, task.name)
            async with self._slots:
                reporter.running(task)
                return await self._pool.call(f'{task.uid}.{task.attempt}', task.name, ref,
                                             args, kwargs)
        coroutine = inspect.iscoroutinefunction(func)
        if coroutine and self._on_loop:
            reporter.running(task)
            return await func(*args, **kwargs)
        # At most twice the pool's size is handed to it at once: a worker that
        # finishes finds the next task queued without waiting for the loop, and
        # the loop is not flooded; the thread that starts a task reports it RUNNING.
        loop = asyncio.get_running_loop()
        started = functools.partial(reporter.running, task)
        async with self._queued:
            if not coroutine:
                return await loop.run_in_executor(self._executor, _call_reporting, started,
                                                  func, args, kwargs)
            body = RunningBody()
            try:
                return await loop.run_in_executor(self._executor, self._loops.run, func, args,
                                                  kwargs, body, started)
            except asyncio.CancelledError:
                body.cancel()           # stops it at its next await; blocking code runs on
                raise

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
        self._loops.close()


def _call_reporting(started: Any, func: Any, args: Any, kwargs: Any) -> Any:
    """Pool-thread side of a plain function: report RUNNING, then call it."""
    started()
    return func(*args, **kwargs)



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
