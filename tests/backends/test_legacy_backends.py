"""Backends of the dict protocol (radical.asyncflow 0.1-0.5, rhapsody-py) under our engine.

Such a backend need not subclass BaseExecutionBackend: having the methods is
enough, and one adapter drives it for every engine that uses it.  Here a
small foreign backend written only against the documented methods, and
rhapsody-py's own ConcurrentExecutionBackend and DaskExecutionBackend.
"""

import asyncio

import pytest

from radical.asyncflow import InputFile, OutputFile, WorkflowEngine
from radical.asyncflow.errors import DependencyFailure

from foreign_backend import ForeignBackend
from helpers import wait_until

WAIT = 60


def run(awaitable):
    return asyncio.wait_for(awaitable, WAIT)


async def dag_with_a_failure(engine):
    """Function and executable tasks, dependencies between them, and one failure."""

    @engine.function_task
    async def double(x):
        return 2 * x

    @engine.executable_task
    async def shout(x):
        return f'echo {x}'

    @engine.function_task
    async def add(*values):
        return sum(int(v) for v in values)

    @engine.executable_task
    async def broken():
        # an explicit shell: rhapsody-py backends run commands as argv, as in 0.6
        return "sh -c 'echo oops >&2; exit 3'"

    doubled = [double(i) for i in range(4)]
    shouted = [shout(d) for d in doubled]
    result = add(*doubled, *shouted)
    failing = broken()
    after = add(failing, doubled[0])
    assert await run(result) == 2 * sum(2 * i for i in range(4))
    with pytest.raises(DependencyFailure, match="^Cannot execute 'add' due to dependency "
                                                "failure") as info:
        await run(after)
    assert info.value.failed_dependencies == ['broken']
    assert 'oops' in str(info.value.root_cause)


async def test_a_backend_that_only_has_the_methods_is_accepted():
    backend = ForeignBackend()
    engine = await WorkflowEngine.create(backend=backend, progress=False)
    await dag_with_a_failure(engine)
    # one implicit link per task -> task edge of the tasks that ran
    assert len(backend.implicit) == 4 + 8
    await engine.shutdown()
    assert backend.stopped


def test_an_object_without_the_methods_is_refused_naming_them():
    class HalfBackend:
        def submit_tasks(self, tasks):
            pass

        def shutdown(self):
            pass

    async def create():
        await WorkflowEngine.create(backend=HalfBackend())

    with pytest.raises(TypeError) as info:
        asyncio.run(create())
    message = str(info.value)
    assert 'HalfBackend' in message
    for missing in ('register_callback()', 'get_task_states_map()', 'cancel_task()',
                    'link_implicit_data_deps()', 'link_explicit_data_deps()'):
        assert missing in message.split('it has no')[1].split('(it has')[0]
    assert '(it has submit_tasks(), shutdown())' in message


async def test_explicit_files_reach_the_link_calls(tmp_path):
    backend = ForeignBackend()
    engine = await WorkflowEngine.create(backend=backend, progress=False)

    @engine.executable_task
    async def make(out):
        return f'echo data > {out}'

    @engine.executable_task
    async def read(dep, inp):
        return f'cat {tmp_path / inp.filename}'

    made = make(OutputFile(str(tmp_path / 'x.dat')))
    reader = read(made, InputFile('x.dat'))
    assert await run(reader) == 'data\n'
    assert backend.explicit == [(made._af_record.uid, reader._af_record.uid, 'x.dat')]
    await engine.shutdown()


async def test_one_registration_serves_engines_at_once_and_in_turn():
    backend = ForeignBackend()
    engines = [await WorkflowEngine.create(backend=backend, progress=False) for _ in range(2)]
    results = await run(asyncio.gather(*[_square_sum(e, 10 * k) for k, e in enumerate(engines)]))
    assert results == [sum(i * i for i in range(5)), sum((10 + i) ** 2 for i in range(5))]
    for engine in engines:
        await engine.shutdown(skip_execution_backend=True)
    assert backend.registrations == 1

    later = await WorkflowEngine.create(backend=backend, progress=False)
    assert await run(_square_sum(later, 100)) == sum((100 + i) ** 2 for i in range(5))
    await later.shutdown()


async def _square_sum(engine, base):
    @engine.function_task
    async def sq(x):
        return x * x

    @engine.executable_task
    async def ex(x):
        return f'echo {x}'

    @engine.function_task
    async def add(*xs):
        return sum(int(x) for x in xs)

    squares = [sq(base + i) for i in range(5)]
    return await add(*squares)


async def test_a_late_report_to_a_shut_down_engine_is_dropped():
    backend = ForeignBackend()
    first = await WorkflowEngine.create(backend=backend, progress=False)

    @first.executable_task
    async def slow():
        return 'sleep 1; echo late'

    pending = slow()
    assert await wait_until(lambda: first.state_counts()['RUNNING'] == 1, WAIT)
    await first.shutdown(skip_execution_backend=True)
    assert pending.cancelled()

    second = await WorkflowEngine.create(backend=backend, progress=False)

    @second.executable_task
    async def quick(i):
        return f'sleep 1.5; echo {i}'

    futures = [quick(i) for i in range(3)]
    # the first engine's command ends while the second's run: its report goes nowhere
    assert await run(asyncio.gather(*futures)) == [f'{i}\n' for i in range(3)]
    for thread in backend.threads:
        thread.join(WAIT)
    assert second._outcomes.dropped == 0
    await second.shutdown()


# ------------------------------------------------------------- rhapsody-py

async def test_rhapsody_concurrent_backend_runs_a_dag():
    pytest.importorskip('rhapsody')
    from concurrent.futures import ThreadPoolExecutor
    from rhapsody.backends.execution.concurrent import ConcurrentExecutionBackend
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=4))
    engine = await WorkflowEngine.create(backend=backend, progress=False)
    assert engine.backends == {'concurrent': backend}
    await dag_with_a_failure(engine)
    await engine.shutdown()


@pytest.mark.dask
async def test_rhapsody_dask_backend_runs_a_dag():
    pytest.importorskip('rhapsody')
    pytest.importorskip('distributed')
    from rhapsody.backends.execution.dask_parallel import DaskExecutionBackend
    backend = await DaskExecutionBackend({'n_workers': 2, 'threads_per_worker': 2,
                                          'processes': False, 'dashboard_address': ':0'})
    engine = await WorkflowEngine.create(backend=backend, progress=False)
    assert engine.backends == {'dask': backend}
    await dag_with_a_failure(engine)
    await engine.shutdown()
