"""Function tasks on the local backend run in the pool's workers (issue 22).

An ``async def`` body that blocks (``time.sleep`` standing for numpy work)
holds one pool thread, never the engine's event loop; the pool bounds how
many run at once; ``coroutines_on_loop=True`` is the explicit way back to
running bodies on the loop; a process pool runs closures and lambdas.
"""

import asyncio
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

WAIT = 20


async def _engine(pool, **options):
    backend = await ConcurrentExecutionBackend(pool, **options)
    return await WorkflowEngine.create(backend=backend, progress=False)


async def _ticker(stop, lags, tick=0.01):
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(tick)
        lags.append(time.perf_counter() - start - tick)


async def test_blocking_bodies_run_side_by_side_and_the_loop_stays_responsive():
    engine = await _engine(ThreadPoolExecutor(4, thread_name_prefix='work'))
    try:
        @engine.function_task
        async def crunch(i):
            time.sleep(1)                   # blocking work, not an await
            return threading.current_thread().name

        stop, lags = asyncio.Event(), []
        ticker = asyncio.create_task(_ticker(stop, lags))
        start = time.perf_counter()
        names = await asyncio.wait_for(asyncio.gather(*[crunch(i) for i in range(4)]), WAIT)
        elapsed = time.perf_counter() - start
        stop.set()
        await ticker
    finally:
        await engine.shutdown()
    assert all(name.startswith('work') for name in names), names
    # One at a time on the loop would take 4 s and stall the ticker for ~4 s.
    assert elapsed < 3.0, elapsed
    assert max(lags) < 0.5, max(lags)


async def test_the_pool_bounds_how_many_bodies_run_at_once():
    engine = await _engine(ThreadPoolExecutor(2))
    lock, now, peak = threading.Lock(), [0], [0]
    try:
        @engine.function_task
        async def held(i):
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            time.sleep(0.1)
            with lock:
                now[0] -= 1
            return i

        assert await asyncio.wait_for(asyncio.gather(*[held(i) for i in range(8)]), WAIT) \
            == list(range(8))
    finally:
        await engine.shutdown()
    assert peak[0] == 2


async def test_a_body_may_await_on_its_thread_and_leftover_tasks_are_cancelled():
    engine = await _engine(ThreadPoolExecutor(2))
    leftover_cancelled = threading.Event()
    try:
        @engine.function_task
        async def awaits(x):
            async def forgotten():
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    leftover_cancelled.set()
                    raise
            asyncio.get_running_loop().create_task(forgotten())
            await asyncio.sleep(0.01)
            return x + 1

        assert await asyncio.wait_for(awaits(1), WAIT) == 2
        assert await asyncio.wait_for(awaits(2), WAIT) == 3     # the thread's loop again
    finally:
        await engine.shutdown()
    assert leftover_cancelled.is_set()


async def test_cancelling_a_running_body_stops_it_at_its_next_await():
    engine = await _engine(ThreadPoolExecutor(1))
    started, stopped = threading.Event(), threading.Event()
    try:
        @engine.function_task
        async def sleeper():
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                stopped.set()
                raise

        @engine.function_task
        async def next_one():
            return 'ran'

        fut = sleeper()
        assert await asyncio.get_running_loop().run_in_executor(None, started.wait, WAIT)
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        assert await asyncio.get_running_loop().run_in_executor(None, stopped.wait, WAIT)
        # the only thread is free again
        assert await asyncio.wait_for(next_one(), WAIT) == 'ran'
    finally:
        await engine.shutdown()


async def test_coroutines_on_loop_is_the_explicit_choice_of_the_old_mode():
    engine = await _engine(ThreadPoolExecutor(2), coroutines_on_loop=True)
    gate = asyncio.Event()              # an object of the engine's loop: usable on it only
    try:
        @engine.function_task
        async def waits_for_gate():
            await gate.wait()
            return threading.current_thread() is threading.main_thread()

        fut = waits_for_gate()
        await asyncio.sleep(0.05)
        gate.set()
        assert await asyncio.wait_for(fut, WAIT) is True
    finally:
        await engine.shutdown()


def test_coroutines_on_loop_is_refused_for_a_process_pool_and_checked():
    with ProcessPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match='ThreadPoolExecutor'):
            ConcurrentExecutionBackend(pool, coroutines_on_loop=True)
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(TypeError, match='coroutines_on_loop'):
            ConcurrentExecutionBackend(pool, coroutines_on_loop='yes')


async def test_closures_lambdas_and_nested_functions_run_in_a_process_pool():
    engine = await _engine(ProcessPoolExecutor(2))
    factor = 7
    square = lambda v: v * v
    try:
        @engine.function_task
        async def scaled(x):            # nested, a closure over factor and square
            return square(x) * factor

        assert await asyncio.wait_for(scaled(3), WAIT) == 63
    finally:
        await engine.shutdown()
