"""The same workflows on every backend of tests/support/backend_params.py (thread, dask-local, dask-remote).

Task functions are defined inside the tests: a Dask worker receives them by
value, without importing this module, and they only use modules importable
everywhere (asyncio, os).
"""

import asyncio
import os

import psutil
import pytest

from radical.asyncflow import WorkflowEngine
from radical.asyncflow.errors import DependencyFailure, TaskExecutionError

from backend_params import backend_params, create_backend
from helpers import wait_until

#: Upper bound for any one workflow of this module.
WAIT = 60


@pytest.fixture(params=backend_params())
def make_backend(request):
    return create_backend(request.param, request)


@pytest.fixture
async def engine(make_backend):
    engine = await WorkflowEngine.create(backend=await make_backend())
    yield engine
    await engine.shutdown()


def run(coro):
    """Bound every workflow: a hang fails the test instead of blocking it."""
    return asyncio.wait_for(coro, WAIT)


def processes_running(marker):
    """PIDs of processes whose command line contains ``marker``."""
    found = []
    for proc in psutil.process_iter(['cmdline']):
        if marker in ' '.join(proc.info['cmdline'] or ()):
            found.append(proc.pid)
    return found


async def test_bag_of_function_tasks(engine):
    @engine.function_task
    async def square(x):
        await asyncio.sleep(0.001)
        return x * x

    results = await run(asyncio.gather(*[square(i) for i in range(100)]))
    assert results == [i * i for i in range(100)]


async def test_sync_work_inside_function_tasks(engine):
    @engine.function_task
    async def count_primes(limit):
        return sum(all(n % d for d in range(2, int(n ** 0.5) + 1)) for n in range(2, limit))

    assert await run(asyncio.gather(count_primes(100), count_primes(1000))) == [25, 168]


async def test_executable_stdout_and_environment(engine):
    @engine.executable_task
    async def greet(name, task_description={'environment': {'GREETING': 'hello'}}):
        return f'echo "$GREETING {name}"; echo "to stderr" >&2'

    assert await run(greet('dask')) == 'hello dask\n'
    assert await run(greet('again', task_description={'environment': {'GREETING': 'hi'}})) \
        == 'hi again\n'


async def test_dag_passes_dependency_results(engine):
    @engine.function_task
    async def source():
        return 3

    @engine.function_task
    async def scale(x, factor):
        return x * factor

    @engine.executable_task
    async def shout(x):
        return f'echo {x}'

    @engine.function_task
    async def combine(values, text, offset=0):
        return sum(values) + int(text) + offset

    root = source()
    left, right = scale(root, 2), scale(root, factor=5)
    text = shout(left)
    assert await run(combine([left, right], text, offset=root)) == 6 + 15 + 6 + 3


async def test_failure_reaches_dependents_as_dependency_failure(engine):
    @engine.function_task
    async def broken(x):
        raise ValueError(f'broken input {x}')

    @engine.function_task
    async def after(x):
        return x

    @engine.function_task
    async def independent():
        return 'ran'

    bad = broken(1)
    child = after(bad)
    grandchild = after(child)
    other = independent()

    with pytest.raises(ValueError, match='broken input 1'):
        await run(bad)
    for dependent in (child, grandchild):
        with pytest.raises(DependencyFailure) as info:
            await run(dependent)
        assert isinstance(info.value.root_cause, ValueError)
        assert info.value.__cause__ is info.value.root_cause
    assert (await asyncio.gather(child, return_exceptions=True))[0].failed_dependencies \
        == ['broken']
    assert await run(other) == 'ran'


async def test_nonzero_exit_carries_exit_code_and_stderr(engine):
    @engine.executable_task
    async def fails():
        return 'echo partial output; echo "disk quota exceeded" >&2; exit 7'

    @engine.function_task
    async def consumer(text):
        return text

    bad = fails()
    downstream = consumer(bad)
    with pytest.raises(TaskExecutionError) as info:
        await run(bad)
    assert isinstance(info.value, RuntimeError)
    assert info.value.exit_code == 7
    assert 'disk quota exceeded' in info.value.stderr
    assert 'disk quota exceeded' in str(info.value)
    with pytest.raises(DependencyFailure) as dep:
        await run(downstream)
    assert dep.value.root_cause is info.value


async def test_cancel_long_running_executable(engine, tmp_path):
    marker = f'{os.getpid()}.{id(tmp_path) % 1000}'
    command = f'sleep 45.{marker.replace(".", "")}'

    @engine.executable_task
    async def sleeper():
        return command

    @engine.function_task
    async def after(x):
        return x

    long = sleeper()
    dependent = after(long)
    assert await wait_until(lambda: processes_running(command)), 'the command never started'
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dependent
    assert dependent.cancelled()
    assert await wait_until(lambda: not processes_running(command)), \
        f'the cancelled command still runs: {processes_running(command)}'


async def test_cancel_long_running_function(engine, tmp_path):
    started, stopped = tmp_path / 'started', tmp_path / 'stopped'

    @engine.function_task
    async def waiter(started, stopped):
        open(started, 'w').close()
        try:
            await asyncio.sleep(45)
        finally:
            open(stopped, 'w').close()
        return 'not cancelled'

    @engine.function_task
    async def quick():
        return 'quick'

    long = waiter(str(started), str(stopped))
    assert await wait_until(started.exists), 'the function never started'
    long.cancel()
    assert await wait_until(stopped.exists), 'the cancelled coroutine was not interrupted'
    assert long.cancelled()
    assert await run(quick()) == 'quick'       # the backend goes on working


async def test_blocks_run_sub_workflows(engine):
    @engine.function_task
    async def double(x):
        return 2 * x

    @engine.executable_task
    async def echo(x):
        return f'echo {x}'

    @engine.block
    async def inner(x):
        return int(await echo(await double(x)))

    @engine.block
    async def outer(x):
        values = await asyncio.gather(inner(x), inner(x + 1))
        return sum(values)

    @engine.function_task
    async def add_one(x):
        return x + 1

    first = outer(1)
    assert await run(add_one(first)) == (2 + 4) + 1
    assert await run(asyncio.gather(*[outer(i) for i in range(3)])) == [2, 6, 10]
