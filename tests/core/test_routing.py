"""One engine, several backends: names, routing, data and outcomes across them,
shutdown of all of them; and the newer upstream features that go with it
(future.state, capture_stdio, workflow ids, uid/work_dir)."""

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from radical.asyncflow import (ConcurrentExecutionBackend, InputFile, NoopExecutionBackend,
                               OutputFile, WorkflowEngine)
from radical.asyncflow.errors import DependencyFailure, TaskExecutionError

from helpers import wait_until

WAIT = 60


class Where(NoopExecutionBackend):
    """A dry-run backend that remembers which tasks it got (natively)."""

    def __init__(self, name):
        super().__init__(name=name)
        self.got = []

    async def submit(self, tasks, reporter):
        self.got.extend(spec.name for spec in tasks)
        await super().submit(tasks, reporter)


def threads(name, workers=4):
    # coroutines_on_loop: bodies here wait on asyncio objects of the test's loop
    return ConcurrentExecutionBackend(ThreadPoolExecutor(workers), name=name,
                                      coroutines_on_loop=True)


def run(awaitable):
    return asyncio.wait_for(awaitable, WAIT)


@pytest.fixture
async def two():
    a, b = Where('a'), Where('b')
    engine = await WorkflowEngine.create(backend=[a, b], progress=False)
    yield engine, a, b
    await engine.shutdown()


# ------------------------------------------------------------------ names

async def test_the_first_backend_is_the_default_and_all_are_named(two):
    engine, a, b = two
    assert engine.backend is a
    assert engine.backends == {'a': a, 'b': b}
    assert list(engine.backends) == ['a', 'b']


async def test_names_come_from_the_class_or_a_foreign_name_attribute():
    from foreign_backend import ForeignBackend
    foreign = ForeignBackend()
    foreign.name = 'elsewhere'
    engine = await WorkflowEngine.create(backend=[NoopExecutionBackend(), foreign,
                                                  threads(None)], progress=False)
    assert list(engine.backends) == ['noop', 'elsewhere', 'concurrent']
    await engine.shutdown()


async def test_two_backends_of_one_name_are_refused():
    with pytest.raises(ValueError, match="two backends are named 'noop'.*name="):
        await WorkflowEngine.create(backend=[NoopExecutionBackend(), NoopExecutionBackend()])
    with pytest.raises(ValueError, match='at least one backend'):
        await WorkflowEngine.create(backend=[])


# ---------------------------------------------------------------- routing

async def test_tasks_go_where_the_decorator_or_the_call_says(two):
    engine, a, b = two

    @engine.function_task
    async def plain():
        return 1

    @engine.function_task(backend='b')
    async def routed():
        return 2

    @engine.executable_task(backend='b')
    async def command():
        return 'true'

    await run(asyncio.gather(plain(), routed(), command(),
                             plain(task_description={'backend': 'b'}),
                             routed(task_description={'backend': 'a'})))
    assert sorted(a.got) == ['plain', 'routed']
    assert sorted(b.got) == ['command', 'plain', 'routed']


async def test_a_blocks_tasks_inherit_its_backend_unless_they_name_one(two):
    engine, a, b = two

    @engine.function_task
    async def inner():
        return 'x'

    @engine.function_task(backend='a')
    async def pinned():
        return 'y'

    @engine.block
    async def nested():
        return await inner()

    @engine.block(backend='b')
    async def outer():
        return [await inner(), await pinned(), await nested()]

    assert await run(outer()) == [None, None, None]          # a dry run: nothing ran
    assert sorted(b.got) == ['inner', 'inner'] and a.got == ['pinned']


async def test_an_unknown_backend_name_is_a_value_error_naming_the_known_ones(two):
    engine, _, _ = two
    with pytest.raises(ValueError, match=r"no backend named 'gpu' in this engine "
                                         r"\(it has 'a', 'b'\)"):
        @engine.function_task(backend='gpu')
        async def decorated():
            return None

    @engine.function_task
    async def ok():
        return None

    with pytest.raises(ValueError, match=r"'ok': task_description: no backend named 'cpu'"):
        ok(task_description={'backend': 'cpu'})
    assert len(engine.components) == 0          # nothing was registered


# --------------------------------------------------------- across backends

@pytest.fixture
async def mixed(tmp_path):
    engine = await WorkflowEngine.create(backend=[threads('one'), threads('two')],
                                         progress=False)
    yield engine
    await engine.shutdown()


async def test_results_and_stdout_flow_across_backends(mixed):
    @mixed.function_task(backend='one')
    async def make(x):
        return x * 10

    @mixed.executable_task(backend='two')
    async def shout(value):
        return f'echo {value}'

    @mixed.function_task(backend='one')
    async def parse(text):
        return int(text)

    assert await run(parse(shout(make(4)))) == 40


async def test_failure_and_cancellation_cross_backends(mixed):
    @mixed.function_task(backend='one')
    async def broken():
        raise ValueError('on one')

    @mixed.executable_task(backend='one')
    async def slow():
        return 'sleep 30'

    @mixed.function_task(backend='two')
    async def after(*values):
        return values

    failed = after(broken())
    with pytest.raises(DependencyFailure) as info:
        await run(failed)
    assert info.value.failed_dependencies == ['broken']
    assert isinstance(info.value.root_cause, ValueError)

    running = slow()
    waiting = after(running)
    assert await wait_until(lambda: running.state == 'RUNNING', WAIT)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run(waiting)
    assert waiting.cancelled() and waiting.state == 'CANCELLED'


async def test_files_cross_backends_that_share_a_file_system(mixed, tmp_path):
    @mixed.executable_task(backend='one')
    async def write(out):
        return f'echo hello > {out}'

    @mixed.executable_task(backend='two')
    async def read(dep, inp):
        return f'cat {inp}'

    made = write(OutputFile('shared.txt'))
    assert await run(read(made, InputFile('shared.txt'))) == 'hello\n'


async def test_shutdown_stops_every_backend_even_if_one_fails():
    class Stubborn(NoopExecutionBackend):
        async def shutdown(self):
            raise RuntimeError('cannot stop')

    first, second, third = Stubborn(name='first'), threads('second'), Where('third')
    engine = await WorkflowEngine.create(backend=[first, second, third], progress=False)
    await engine.shutdown()
    assert second.state() == 'STOPPED' and third.state() == 'STOPPED'

    kept = [threads('k1'), threads('k2')]
    engine = await WorkflowEngine.create(backend=kept, progress=False)
    await engine.shutdown(skip_execution_backend=True)
    assert [b.state() for b in kept] == ['RUNNING', 'RUNNING']
    for backend in kept:
        await backend.shutdown()


# ------------------------------------------------------------ future.state

async def test_future_state_without_awaiting():
    engine = await WorkflowEngine.create(backend=threads('t'), progress=False)
    gate = asyncio.Event()

    @engine.function_task
    async def held():
        await gate.wait()
        return 1

    @engine.function_task
    async def after(x):
        return x

    @engine.function_task
    async def boom():
        raise KeyError('x')

    @engine.block
    async def block():
        return await after(held_future)

    held_future = held()
    dependent = after(held_future)
    blk = block()
    assert dependent.state == 'PENDING'
    assert await wait_until(lambda: held_future.state == 'RUNNING', WAIT)
    assert await wait_until(lambda: blk.state == 'RUNNING', WAIT)
    assert dependent.state == 'PENDING'
    gate.set()
    assert await run(dependent) == 1 and dependent.state == 'DONE'
    assert await run(blk) == 1 and blk.state == 'DONE'
    failing = boom()
    with pytest.raises(KeyError):
        await run(failing)
    assert failing.state == 'FAILED'
    assert str(failing.state) == 'FAILED' and failing.state == failing.state.FAILED
    await engine.shutdown()


# ------------------------------------------------------------ capture_stdio

CAPTURED_BYTES = 20_000_000


@pytest.mark.parametrize('kind', ['thread', 'process', 'dask', 'noop'])
async def test_capture_stdio_writes_files_and_returns_the_path(kind, tmp_path):
    if kind == 'dask':
        pytest.importorskip('distributed')
        from radical.asyncflow import DaskExecutionBackend
        backend = await DaskExecutionBackend({'n_workers': 1, 'processes': False})
    elif kind == 'process':
        from concurrent.futures import ProcessPoolExecutor
        backend = await ConcurrentExecutionBackend(ProcessPoolExecutor(2))
    elif kind == 'noop':
        backend = NoopExecutionBackend()
    else:
        backend = await threads(None)
    engine = await WorkflowEngine.create(backend=backend, dry_run=kind == 'noop',
                                         work_dir=str(tmp_path / 'work'), uid='run1',
                                         progress=False)

    @engine.executable_task(capture_stdio=True)
    async def big():
        return f'head -c {CAPTURED_BYTES} /dev/zero; echo to-stderr >&2'

    @engine.executable_task(capture_stdio=True)
    async def failing():
        return 'echo partial; echo why >&2; exit 5'

    future = big()
    path = await run(future)
    assert path == str(tmp_path / 'work' / 'run1' / future._af_record.uid / 'stdout')
    stderr = os.path.join(os.path.dirname(path), 'stderr')
    if kind == 'noop':
        assert os.path.getsize(path) == 0        # a dry run leaves empty files
    else:
        assert os.path.getsize(path) == CAPTURED_BYTES
        assert open(stderr).read() == 'to-stderr\n'
        with pytest.raises(TaskExecutionError) as info:
            await run(failing())
        assert info.value.exit_code == 5 and info.value.stderr == 'why'
    await engine.shutdown()


def test_capture_stdio_is_for_executable_tasks_only():
    async def scenario():
        engine = await WorkflowEngine.create(dry_run=True, progress=False)
        try:
            with pytest.raises(TypeError, match="capture_stdio=True is for @executable_task"):
                @engine.function_task(capture_stdio=True)
                async def f():
                    return 1
            with pytest.raises(TypeError, match='capture_stdio must be True or False'):
                @engine.executable_task(capture_stdio='yes')
                async def g():
                    return 'true'
        finally:
            await engine.shutdown()

    asyncio.run(scenario())


async def test_capture_stdio_on_a_rhapsody_backend(tmp_path):
    pytest.importorskip('rhapsody')
    from rhapsody.backends.execution.concurrent import ConcurrentExecutionBackend as Rhapsody
    backend = await Rhapsody(ThreadPoolExecutor(2))
    backend._work_dir = str(tmp_path)        # where rhapsody-py writes captured output
    engine = await WorkflowEngine.create(backend=backend, work_dir=str(tmp_path / 'w'),
                                         progress=False)

    @engine.executable_task(capture_stdio=True)
    async def say():
        return 'echo captured'

    path = await run(say())
    assert path.startswith(str(tmp_path / 'w')) and open(path).read() == 'captured\n'
    await engine.shutdown()


# ------------------------------------------------------------ workflow ids

async def test_workflow_ids_scopes_and_blocks(tmp_path):
    engine = await WorkflowEngine.create(backend=threads('t'), progress=False,
                                         work_dir=str(tmp_path))
    seen = []

    @engine.function_task
    async def task(x, **kwargs):
        seen.append(sorted(kwargs))
        return x

    @engine.block
    async def block():
        return await task(2)

    loose = task(0)
    async with engine.workflow_scope('alpha') as alpha:
        in_scope = task(1)
        blk = block()
        other = task(3, workflow_id='beta', extra=1)
    async with engine.workflow_scope() as generated:
        named = task(4)
    await run(asyncio.gather(loose, in_scope, blk, other, named))
    assert alpha == 'alpha' and generated.startswith('workflow.')
    workflow = {f: f._af_record.workflow_id for f in (loose, in_scope, blk, other, named)}
    assert workflow[loose] is None and workflow[in_scope] == 'alpha'
    assert workflow[blk] == 'alpha' and workflow[other] == 'beta'
    assert workflow[named] == generated
    inner = [r for r in engine._records.values() if r.spec.name == 'task'
             and r.workflow_id == 'alpha' and r.uid != in_scope._af_record.uid]
    assert len(inner) == 1                      # the block's task inherited 'alpha'
    assert ['extra'] in seen and all('workflow_id' not in kw for kw in seen)
    with pytest.raises(TypeError, match="'task': workflow_id must be a non-empty str"):
        task(5, workflow_id=3)
    await engine.shutdown()
    summary = json.load(open(engine.summary['summary_file']))
    assert summary['workflows']['alpha'] == {'components': 3, 'DONE': 3}
    assert summary['workflows']['beta'] == {'components': 1, 'DONE': 1}


async def test_workflows_in_the_profile_and_the_plot(tmp_path, monkeypatch):
    pytest.importorskip('matplotlib')
    from radical.asyncflow.observability import plot
    monkeypatch.setenv('RADICAL_ASYNCFLOW_PROFILE', 'True')
    engine = await WorkflowEngine.create(backend=threads('t'), progress=False,
                                         work_dir=str(tmp_path))

    @engine.executable_task
    async def step():
        return 'sleep 0.05'

    futures = []
    for wid in ('left', 'right'):
        async with engine.workflow_scope(wid):
            futures += [step() for _ in range(3)]
    futures.append(step())
    await run(asyncio.gather(*futures))
    await engine.shutdown()
    run_ = plot.read_runs(plot.find_profile(str(tmp_path)))[-1]
    assert sorted(set(run_.workflows.values())) == ['left', 'right']
    tasks = plot.intervals(run_)
    rows, lanes = plot.assign_lanes(tasks)
    assert [name for name, _, _ in lanes] == ['left', 'right', '-']
    assert rows == sum(used for _, _, used in lanes)
    written = plot.plot_session(str(tmp_path), str(tmp_path / 'png'))
    assert os.path.getsize(written['timeline']) > 0


# ------------------------------------------------------------ uid, work_dir

async def test_uid_and_work_dir(tmp_path):
    engine = await WorkflowEngine.create(dry_run=True, uid='my-run',
                                         work_dir=str(tmp_path / 'new'), progress=False)
    assert engine.uid == 'my-run' and engine.work_dir == str(tmp_path / 'new')
    assert engine.run_dir == str(tmp_path / 'new' / 'my-run')
    await engine.shutdown()
    assert engine.summary['work_dir'] == str(tmp_path / 'new')
    default = await WorkflowEngine.create(dry_run=True, progress=False)
    assert default.uid.startswith('asyncflow.') and default.uid != engine.uid
    await default.shutdown()
    with pytest.raises(TypeError, match='uid must be a non-empty str'):
        await WorkflowEngine.create(dry_run=True, uid='a/b')
