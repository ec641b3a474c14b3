"""DaskExecutionBackend on real clusters: a LocalCluster it starts, and separate
``dask scheduler`` / ``dask worker`` processes it connects to.

The workflow semantics every backend shares are in test_backend_workflows.py;
this module covers what is particular to Dask: cluster ownership, per-task
Dask options, state reports, remote tracebacks, and workers that die.
"""

import asyncio
import os
import signal
import subprocess
import sys
import traceback

import psutil
import pytest

from radical.asyncflow import WorkflowEngine
from radical.asyncflow.constants import TasksMainStates
from radical.asyncflow.errors import (BackendError, DependencyFailure,
                                      MissingDependencyError, TaskExecutionError)

from backend_params import needs_dask
from helpers import alive, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT = 60

dask_test = [pytest.mark.dask, needs_dask]


def run(coro):
    return asyncio.wait_for(coro, WAIT)


def commands_running(text):
    return [p.pid for p in psutil.process_iter(['cmdline'])
            if text in ' '.join(p.info['cmdline'] or ())]


async def remote_backend(cluster):
    from radical.asyncflow import DaskExecutionBackend
    return await DaskExecutionBackend({'scheduler_address': cluster.address})


# ------------------------------------------------------------ without dask

def test_import_without_dask_then_missing_dependency_error():
    code = (
        "import sys\n"
        "sys.modules['dask'] = sys.modules['distributed'] = None   # as if not installed\n"
        "import radical.asyncflow as af\n"
        "from radical.asyncflow.errors import MissingDependencyError\n"
        "try:\n"
        "    af.DaskExecutionBackend({'n_workers': 1})\n"
        "except MissingDependencyError as exc:\n"
        "    assert isinstance(exc, ImportError)\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('no error')\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=WAIT, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert 'radical.asyncflow[dask]' in out.stdout
    assert 'DaskExecutionBackend' in out.stdout


@pytest.mark.parametrize('bad', [['n_workers', 2], 'tcp://127.0.0.1:8786', 3])
def test_resources_must_be_a_dict(bad):
    pytest.importorskip('distributed')
    from radical.asyncflow import DaskExecutionBackend
    with pytest.raises(TypeError, match='dict'):
        DaskExecutionBackend(bad)


def test_missing_dependency_error_is_an_import_error():
    assert issubclass(MissingDependencyError, ImportError)


# ------------------------------------------------------ cluster lifetimes

@pytest.mark.dask
@needs_dask
async def test_local_cluster_from_resources_is_stopped_on_shutdown():
    from radical.asyncflow import DaskExecutionBackend
    backend = await DaskExecutionBackend({'n_workers': 2, 'threads_per_worker': 1,
                                          'processes': True})
    assert backend.state() == 'RUNNING'
    workers = await backend.client.run(os.getpid)
    worker_pids = set(workers.values())
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    assert set((await backend.client.nthreads()).values()) == {1}

    engine = await WorkflowEngine.create(backend=backend)

    @engine.function_task
    async def where():
        return os.getpid()

    assert set(await run(asyncio.gather(*[where() for _ in range(8)]))) <= worker_pids
    await engine.shutdown()
    assert backend.state() == 'STOPPED'
    assert await wait_until(lambda: not any(alive(pid) for pid in worker_pids)), \
        'LocalCluster worker processes outlived the backend'


@pytest.mark.dask
@needs_dask
async def test_connected_cluster_keeps_running(dask_process_cluster):
    from distributed import Client
    from radical.asyncflow import DaskExecutionBackend
    cluster = dask_process_cluster
    async with DaskExecutionBackend({'scheduler_address': cluster.address}) as backend:
        engine = await WorkflowEngine.create(backend=backend)

        @engine.function_task
        async def where():
            return os.getpid()

        pids = set(await run(asyncio.gather(*[where() for _ in range(8)])))
        assert pids <= set(cluster.worker_pids())
        await engine.shutdown()
    assert backend.state() == 'STOPPED'
    assert all(alive(pid) for pid in cluster.all_pids())
    async with Client(cluster.address, asynchronous=True) as client:
        assert len(await client.nthreads()) == 2


@pytest.mark.dask
@needs_dask
async def test_connect_through_scheduler_file(dask_process_cluster):
    from radical.asyncflow import DaskExecutionBackend
    backend = await DaskExecutionBackend({'scheduler_file': dask_process_cluster.scheduler_file})
    engine = await WorkflowEngine.create(backend=backend)

    @engine.executable_task
    async def hello():
        return 'echo hello'

    assert await run(hello()) == 'hello\n'
    await engine.shutdown()


@pytest.mark.dask
@needs_dask
async def test_unreachable_scheduler_is_a_backend_error():
    from radical.asyncflow import DaskExecutionBackend
    with pytest.raises(BackendError, match='tcp://127.0.0.1:9'):
        await DaskExecutionBackend({'scheduler_address': 'tcp://127.0.0.1:9', 'timeout': 1})


@pytest.mark.dask
@needs_dask
async def test_submit_after_shutdown_is_refused(dask_process_cluster):
    backend = await remote_backend(dask_process_cluster)
    await backend.shutdown()
    await backend.shutdown()                    # twice is fine
    with pytest.raises(RuntimeError, match='shut down'):
        await backend.submit_tasks([{'uid': 'task.000001', 'name': 'x',
                                     'function': None, 'executable': 'true'}])


# ------------------------------------------------------------ tasks

def _task(uid, function=None, executable=None, args=(), **options):
    return {'uid': uid, 'name': getattr(function, '__name__', 'cmd'), 'function': function,
            'executable': executable, 'args': args, 'kwargs': {}, 'is_service': False,
            'metadata': {'input_files': [], 'output_files': []},
            'task_backend_specific_kwargs': options}


@pytest.mark.dask
@needs_dask
async def test_state_reports_and_plain_callables(dask_process_cluster):
    backend = await remote_backend(dask_process_cluster)
    states = backend.get_task_states_map()    # backends no longer register process-wide
    assert states.DONE == 'finished'
    assert states.to_main_state('error') is TasksMainStates.FAILED
    assert states.to_main_state('cancelled') is TasksMainStates.CANCELED
    assert states.to_main_state('running') is TasksMainStates.RUNNING

    reports = []
    finished = asyncio.Event()

    def callback(task, state, service_callback=None):
        reports.append((task['uid'], state))
        if state in states.terminal_states and len([r for r in reports
                                                    if r[1] in states.terminal_states]) == 3:
            finished.set()

    async def coroutine_function(x):
        return x + 1

    def plain_function(x):
        return x * 10

    backend.register_callback(callback)
    tasks = [_task('task.000001', coroutine_function, args=(1,)),
             _task('task.000002', plain_function, args=(2,)),
             _task('task.000003', executable='echo out; echo err >&2; exit 4')]
    await backend.submit_tasks(tasks)
    await run(finished.wait())
    await backend.shutdown()

    by_task = {uid: [s for u, s in reports if u == uid] for uid in ('task.000001',
                                                                      'task.000002',
                                                                      'task.000003')}
    assert by_task['task.000001'] == ['running', 'finished']
    assert by_task['task.000002'] == ['running', 'finished']
    assert by_task['task.000003'] == ['running', 'error']
    assert tasks[0]['return_value'] == 2
    assert tasks[1]['return_value'] == 20
    assert (tasks[2]['stdout'], tasks[2]['exit_code']) == ('out\n', 4)
    assert isinstance(tasks[2]['exception'], TaskExecutionError)
    assert tasks[2]['exception'].stderr == 'err'


@pytest.mark.dask
@needs_dask
async def test_failure_carries_remote_exception_and_traceback(dask_process_cluster):
    engine = await WorkflowEngine.create(backend=await remote_backend(dask_process_cluster))

    class SimulationDiverged(Exception):
        pass

    @engine.function_task
    async def unstable_step(dt):
        def integrate():
            raise SimulationDiverged(f'dt={dt} too large')
        integrate()

    with pytest.raises(SimulationDiverged, match='dt=0.5 too large') as info:
        await run(unstable_step(0.5))
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert 'unstable_step' in frames and 'integrate' in frames    # the worker's frames
    if sys.version_info >= (3, 11):
        notes = '\n'.join(info.value.__notes__)
        assert "task 'unstable_step'" in notes and __file__ in notes
    await engine.shutdown()


@pytest.mark.dask
@needs_dask
async def test_task_description_dask_options(dask_process_cluster, tmp_path):
    backend = await remote_backend(dask_process_cluster)
    engine = await WorkflowEngine.create(backend=backend)
    names = await backend.client.run(lambda dask_worker: dask_worker.name)
    address_of = {name: address for address, name in names.items()}

    @engine.function_task
    async def worker_name():
        from distributed import get_worker
        return get_worker().name

    # worker resources: only worker1 has SLOT1; 'workers' pins to an address
    on_slot1 = [worker_name(task_description={'resources': {'SLOT1': 1}}) for _ in range(4)]
    pinned = [worker_name(task_description={'workers': [address_of['worker0']],
                                            'priority': 10}) for _ in range(4)]
    assert set(await run(asyncio.gather(*on_slot1))) == {'worker1'}
    assert set(await run(asyncio.gather(*pinned))) == {'worker0'}

    # retries: the first attempt fails, the retry succeeds
    @engine.function_task
    async def flaky(path):
        attempts = int(open(path).read()) + 1 if os.path.exists(path) else 1
        with open(path, 'w') as f:
            f.write(str(attempts))
        if attempts == 1:
            raise OSError('transient failure')
        return attempts

    assert await run(flaky(str(tmp_path / 'a'), task_description={'retries': 1})) == 2
    with pytest.raises(OSError, match='transient'):
        await run(flaky(str(tmp_path / 'b')))

    @engine.executable_task
    async def flaky_command(path):
        return f'if [ -e {path} ]; then echo second; else touch {path}; exit 9; fi'

    assert await run(flaky_command(str(tmp_path / 'c'), task_description={'retries': 1})) \
        == 'second\n'
    with pytest.raises(TaskExecutionError) as info:
        await run(flaky_command(str(tmp_path / 'd')))
    assert info.value.exit_code == 9

    # pure=False (the default) runs every call; pure=True lets Dask share one result
    @engine.function_task
    async def token(x):
        import uuid
        return uuid.uuid4().hex

    assert len(set(await run(asyncio.gather(token(1), token(1))))) == 2
    shared = await run(asyncio.gather(token(1, task_description={'pure': True}),
                                      token(1, task_description={'pure': True})))
    assert shared[0] == shared[1]

    @engine.function_task
    async def slow_token(x, task_description={'pure': True}):
        import uuid
        await asyncio.sleep(0.5)
        return uuid.uuid4().hex

    first, second = slow_token(3), slow_token(3)        # one shared Dask task
    await asyncio.sleep(0.2)
    first.cancel()
    assert len(await run(second)) == 32                 # not cancelled with the other
    await engine.shutdown()


@pytest.mark.dask
@needs_dask
async def test_shutdown_stops_running_commands_but_not_the_cluster(dask_process_cluster):
    engine = await WorkflowEngine.create(backend=await remote_backend(dask_process_cluster))
    command = f'sleep 47.{os.getpid()}'

    @engine.executable_task
    async def sleeper():
        return command

    future = sleeper()
    assert await wait_until(lambda: commands_running(command)), 'the command never started'
    await run(engine.shutdown())
    assert future.cancelled()
    assert await wait_until(lambda: not commands_running(command)), \
        'a command of a shut-down backend is still running'
    assert all(alive(pid) for pid in dask_process_cluster.all_pids())


# ------------------------------------------------------------ dying workers

@pytest.mark.dask
@needs_dask
@pytest.mark.parametrize('where', ['dask-local', 'dask-remote'])
async def test_worker_killed_mid_workflow(where, request):
    from radical.asyncflow import DaskExecutionBackend
    if where == 'dask-local':
        backend = await DaskExecutionBackend({'n_workers': 2, 'threads_per_worker': 2,
                                              'processes': True})
    else:
        backend = await remote_backend(request.getfixturevalue('dask_process_cluster'))
    engine = await WorkflowEngine.create(backend=backend)

    @engine.function_task
    async def step(i):
        await asyncio.sleep(0.3)
        return i

    @engine.executable_task
    async def command(i):
        return f'sleep 0.3; echo {i}'

    @engine.function_task
    async def total(*values):
        return sum(int(v) for v in values)

    first = [step(i) if i % 2 else command(i) for i in range(24)]
    second = [total(*first[i:i + 4]) for i in range(0, 24, 4)]
    futures = first + second

    workers = await backend.client.run(os.getpid)
    victim = sorted(workers.values())[0]
    await asyncio.sleep(0.5)                      # some tasks are running on the victim
    os.kill(victim, signal.SIGKILL)

    outcomes = await run(asyncio.gather(*futures, return_exceptions=True))
    assert not alive(victim)
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            # a failure must name its cause: the worker that died, or a dependency
            assert isinstance(outcome, Exception), repr(outcome)
            text = f'{outcome!r} {outcome.__cause__!r}'
            assert 'worker' in text.lower() or isinstance(outcome, DependencyFailure), text
        elif i < 24:
            assert int(outcome) == i
    assert all(f.done() for f in futures)
    done = sum(not isinstance(o, BaseException) for o in outcomes)
    assert done >= len(futures) // 2, outcomes           # rescheduled, not all lost
    await backend.client.wait_for_workers(2, timeout=WAIT)   # the nanny restarted it
    await engine.shutdown()


@pytest.mark.dask
@needs_dask
async def test_task_that_kills_its_workers_fails_with_a_clear_cause(dask_process_cluster):
    from distributed import KilledWorker
    backend = await remote_backend(dask_process_cluster)
    engine = await WorkflowEngine.create(backend=backend)

    @engine.function_task
    async def segfault():
        os.kill(os.getpid(), signal.SIGKILL)

    @engine.function_task
    async def after(x):
        return x

    poison = segfault()
    child = after(poison)
    with pytest.raises(KilledWorker) as info:
        await run(poison)
    assert 'segfault' in str(info.value) and 'died' in str(info.value)
    with pytest.raises(DependencyFailure) as dep:
        await run(child)
    assert dep.value.root_cause is info.value
    await backend.client.wait_for_workers(2, timeout=WAIT)
    await engine.shutdown()


# ------------------------------------------------------------ the example

@pytest.mark.dask
@needs_dask
def test_dask_ensemble_example_runs(tmp_path):
    example = os.path.join(ROOT, 'examples', 'dask_ensemble.py')
    with open(example) as f:
        assert f.readline().strip() == '# requires: dask'
    out = subprocess.run([sys.executable, example], capture_output=True, text=True,
                         timeout=WAIT, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
