"""One backend shared by several engines: reports reach only their own engine.

On the thread, process and Dask backends (the real RADICAL-Pilot pilot runs
the same scenarios in test_radical_pilot.py):

* three rounds of two engines one after another on one backend, the first
  cancelling its running tasks and shutting down with
  ``skip_execution_backend=True``, the second running commands and functions
  whose results must be exact;
* two engines at once on one backend, each with function and executable
  tasks and dependencies between them;
* a report that arrives after its engine shut down is dropped, never
  delivered to the engine that runs next.

Task functions are module-level (a process pool runs them by reference);
Dask workers import this module through ``PYTHONPATH``.
"""

import asyncio
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

from backend_params import needs_dask
from helpers import wait_until

WAIT = 90
ROUNDS = 3


async def square(x):
    return x * x


async def total(*values):
    return sum(int(v) for v in values)


async def sleep_long():
    return 'sleep 30'


async def late_echo(n):
    return f'sleep 1 && echo {n}'


async def echo(n):
    return f'echo {n}'


async def _threads():
    return await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=8))


async def _processes():
    return await ConcurrentExecutionBackend(ProcessPoolExecutor(max_workers=4))


async def _dask():
    from radical.asyncflow import DaskExecutionBackend
    return await DaskExecutionBackend({'n_workers': 2, 'threads_per_worker': 4,
                                       'processes': True})


@pytest.fixture(params=[pytest.param(_threads, id='thread'),
                        pytest.param(_processes, id='process'),
                        pytest.param(_dask, id='dask', marks=(pytest.mark.dask, needs_dask))])
async def backend(request, monkeypatch):
    # Dask worker processes import this module by name
    here = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        p for p in (here, os.environ.get('PYTHONPATH')) if p))
    be = await asyncio.wait_for(request.param(), WAIT)
    yield be
    await asyncio.wait_for(be.shutdown(), WAIT)


def run(awaitable):
    return asyncio.wait_for(awaitable, WAIT)


async def cancel_running(engine):
    """Start two long commands on ``engine``, cancel them once running; their futures."""
    sleeper = engine.executable_task(sleep_long)
    futures = [sleeper(), sleeper()]
    assert await wait_until(lambda: engine.state_counts()['RUNNING'] == 2, WAIT)
    for future in futures:
        future.cancel()
    return futures


async def test_engines_one_after_another_get_exactly_their_results(backend):
    for round_ in range(ROUNDS):
        first = await WorkflowEngine.create(backend=backend, progress=False)
        cancelled = await cancel_running(first)
        await run(first.shutdown(skip_execution_backend=True))
        assert all(f.cancelled() for f in cancelled)

        second = await WorkflowEngine.create(backend=backend, progress=False)
        late = second.executable_task(late_echo)
        sq = second.function_task(square)
        numbers = [100 * round_ + i for i in range(3)]
        outputs = await run(asyncio.gather(*[late(n) for n in numbers]))
        values = await run(asyncio.gather(*[sq(n) for n in numbers]))
        assert outputs == [f'{n}\n' for n in numbers]
        assert values == [n * n for n in numbers]
        # the first engine's uids are not the second's: nothing of one can reach the other
        assert not set(first.components) & set(second.components)
        await run(second.shutdown(skip_execution_backend=True))
    assert backend.state() == 'RUNNING'


async def test_two_engines_at_once_on_one_backend(backend):
    engines = [await WorkflowEngine.create(backend=backend, progress=False) for _ in range(2)]
    workflows = []
    for k, engine in enumerate(engines):
        sq = engine.function_task(square)
        ex = engine.executable_task(echo)
        add = engine.function_task(total)
        squares = [sq(10 * k + i) for i in range(5)]
        echoes = [ex(10 * k + i) for i in range(5)]
        workflows.append(add(*squares, *echoes))
    results = await run(asyncio.gather(*workflows))
    expected = [sum((10 * k + i) ** 2 + 10 * k + i for i in range(5)) for k in range(2)]
    assert results == expected
    for engine in engines:
        await run(engine.shutdown(skip_execution_backend=True))


async def test_a_report_after_its_engine_shut_down_is_dropped(backend):
    first = await WorkflowEngine.create(backend=backend, progress=False)
    cancelled = await cancel_running(first)
    await run(first.shutdown(skip_execution_backend=True))

    second = await WorkflowEngine.create(backend=backend, progress=False)
    ex = second.executable_task(echo)
    assert await run(asyncio.gather(*[ex(i) for i in range(4)])) == \
        [f'{i}\n' for i in range(4)]
    # the backend reported the cancelled commands to the first engine, which dropped it
    assert await wait_until(lambda: first._outcomes.dropped >= len(cancelled), WAIT)
    assert second._outcomes.dropped == 0
    await run(second.shutdown(skip_execution_backend=True))
