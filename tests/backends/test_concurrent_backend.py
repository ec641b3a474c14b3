"""ConcurrentExecutionBackend on thread and process pools, functions and commands."""

import asyncio
import os
import signal
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import psutil
import pytest

from helpers import alive, make_fifo, read_fifo
from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine
from radical.asyncflow.backends.execution.base import BaseExecutionBackend
from radical.asyncflow.errors import DependencyFailure, TaskExecutionError

WAIT = 10


# ----------------------------------------- module-level task functions (picklable)

async def pid_and_double(x):
    return os.getpid(), x * 2


async def raise_in_worker(msg):
    raise LookupError(msg)


async def die_in_worker():
    os._exit(3)


async def first_value():
    return 10


async def second_plus_one(pair):
    return pair[1] + 1


async def block_in_worker(fifo):
    with open(fifo, 'w') as f:
        f.write(str(os.getpid()))
    time.sleep(30)


# ------------------------------------------------------------------ helpers

class Reports:
    """A state callback that remembers every report and signals final ones."""

    def __init__(self, backend):
        self.states = backend.get_task_states_map()
        self.log = []
        self.final = {}
        self._events = {}
        backend.register_callback(self)

    def __call__(self, task, state, service_callback=None):
        self.log.append((task['uid'], state))
        if state in self.states.terminal_states:
            self.final[task['uid']] = state
            self.event(task['uid']).set()

    def event(self, uid):
        return self._events.setdefault(uid, asyncio.Event())

    async def wait(self, uid, timeout=WAIT):
        await asyncio.wait_for(self.event(uid).wait(), timeout)
        return self.final[uid]


def command_task(uid, command, **description):
    return {'uid': uid, 'name': uid.replace('.', '_'), 'function': None,
            'executable': command, 'args': (), 'kwargs': {}, 'is_service': False,
            'metadata': {'input_files': [], 'output_files': []},
            'task_backend_specific_kwargs': description}


def run_guarded(scenario):
    """Run ``scenario()`` on a fresh loop; kill what it left behind.

    A ``SystemExit`` raised by the engine's signal handling inside the loop
    would end the pytest session, so it becomes a test failure here.
    """
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    exit_code = None
    try:
        asyncio.run(scenario())
    except SystemExit as exc:
        exit_code = exc.code
    finally:
        for proc in me.children(recursive=True):
            if proc.pid not in before:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
    if exit_code is not None:
        pytest.fail(f'the engine raised SystemExit({exit_code}) during the test, as if the '
                    f'driver had received signal {exit_code - 128}: the signal went to a '
                    f'forked worker process', pytrace=False)


@pytest.fixture(params=['thread', 'process'])
async def engine(request):
    pool = ThreadPoolExecutor(2) if request.param == 'thread' else ProcessPoolExecutor(2)
    backend = await ConcurrentExecutionBackend(pool)
    eng = await WorkflowEngine.create(backend=backend)
    yield eng
    await eng.shutdown()


@pytest.fixture
async def process_engine():
    backend = await ConcurrentExecutionBackend(ProcessPoolExecutor(2))
    eng = await WorkflowEngine.create(backend=backend)
    yield eng
    await eng.shutdown()


# -------------------------------------------------------------- construction

@pytest.mark.parametrize('bad', [None, object(), 'thread', 4])
def test_non_executor_is_a_type_error(bad):
    with pytest.raises(TypeError, match='ThreadPoolExecutor'):
        ConcurrentExecutionBackend(bad)


def test_other_executor_kinds_are_a_type_error():
    class MyExecutor(Executor):
        pass

    with pytest.raises(TypeError):
        ConcurrentExecutionBackend(MyExecutor())


def test_is_a_base_backend():
    assert issubclass(ConcurrentExecutionBackend, BaseExecutionBackend)


# ----------------------------------------------------------------- functions

async def test_function_tasks_on_both_pools(engine):
    double = engine.function_task(pid_and_double)
    second = engine.function_task(second_plus_one)

    pid, value = await asyncio.wait_for(double(21), WAIT)
    assert value == 42
    if isinstance(engine.backend.executor, ProcessPoolExecutor):
        assert pid != os.getpid()
    assert await asyncio.wait_for(second(double(5)), WAIT) == 11


async def test_module_level_function_runs_in_a_worker_process(process_engine):
    double = process_engine.function_task(pid_and_double)
    first = process_engine.function_task(first_value)

    pid, value = await asyncio.wait_for(double(first()), WAIT)
    assert value == 20
    assert pid != os.getpid()
    assert pid in {p.pid for p in psutil.Process().children(recursive=True)}


async def test_exception_in_a_worker_process_reaches_the_future(process_engine):
    boom = process_engine.function_task(raise_in_worker)

    @process_engine.function_task
    async def after(x):
        return x

    fut = boom('lost key 7')
    dependent = after(fut)
    with pytest.raises(LookupError, match='lost key 7'):
        await asyncio.wait_for(fut, WAIT)
    with pytest.raises(DependencyFailure):
        await asyncio.wait_for(dependent, WAIT)


async def test_closure_that_cannot_be_pickled_is_a_clear_type_error(process_engine):
    # Closures travel to a process pool by value (cloudpickle); one over an
    # object that cannot be pickled is refused with the task's name.
    lock = threading.Lock()

    @process_engine.function_task
    async def scale_by_closure(x):
        with lock:
            return x * 3

    with pytest.raises(TypeError, match='scale_by_closure') as info:
        await asyncio.wait_for(scale_by_closure(2), WAIT)
    assert 'worker process' in str(info.value)


def test_dead_worker_fails_the_task_and_the_pool_recovers():
    async def scenario():
        eng = await WorkflowEngine.create(
            backend=await ConcurrentExecutionBackend(ProcessPoolExecutor(2)))
        try:
            die = eng.function_task(die_in_worker)
            double = eng.function_task(pid_and_double)
            with pytest.raises(RuntimeError, match='die_in_worker'):
                await asyncio.wait_for(die(), 30)
            _, value = await asyncio.wait_for(double(4), 30)
            assert value == 8
            assert not eng._shutdown_event.is_set()
        finally:
            await eng.shutdown()

    run_guarded(scenario)


def test_signal_to_a_worker_is_not_the_drivers_signal(tmp_path):
    """A worker forked from the driver must not share its signal handling."""
    async def scenario():
        eng = await WorkflowEngine.create(
            backend=await ConcurrentExecutionBackend(ProcessPoolExecutor(2)))
        try:
            blocker = eng.function_task(block_in_worker)
            fifo = make_fifo(tmp_path)
            fut = blocker(str(fifo))
            worker = int(await read_fifo(fifo))
            os.kill(worker, signal.SIGTERM)
            with pytest.raises(RuntimeError, match='block_in_worker'):   # it died under the task
                await asyncio.wait_for(fut, WAIT)
            assert not eng._shutdown_event.is_set()
            _, value = await asyncio.wait_for(eng.function_task(pid_and_double)(2), WAIT)
            assert value == 4
        finally:
            await eng.shutdown()

    run_guarded(scenario)


# --------------------------------------------------------------- executables

async def test_executable_stdout_is_the_result(engine):
    @engine.executable_task
    async def greet(name):
        return f"printf 'hi %s\\n' {name}; echo done"

    @engine.function_task
    async def name():
        return 'there'

    if isinstance(engine.backend.executor, ProcessPoolExecutor):
        assert await asyncio.wait_for(greet('proc'), WAIT) == 'hi proc\ndone\n'
    else:
        assert await asyncio.wait_for(greet(name()), WAIT) == 'hi there\ndone\n'


async def test_non_zero_exit_is_a_task_execution_error(engine):
    @engine.executable_task
    async def failing():
        return 'echo partial output; echo "disk quota exceeded" >&2; exit 7'

    with pytest.raises(TaskExecutionError) as info:
        await asyncio.wait_for(failing(), WAIT)
    error = info.value
    assert isinstance(error, RuntimeError)
    assert error.exit_code == 7
    assert 'disk quota exceeded' in error.stderr
    assert 'disk quota exceeded' in str(error)
    assert '7' in str(error)
    assert 'failing' in str(error)


async def test_huge_stderr_is_truncated_to_its_tail(engine):
    @engine.executable_task
    async def noisy():
        return "head -c 200000 /dev/zero | tr '\\0' x >&2; echo THE-END >&2; exit 1"

    with pytest.raises(TaskExecutionError) as info:
        await asyncio.wait_for(noisy(), WAIT)
    error = info.value
    assert error.stderr.rstrip().endswith('THE-END')
    assert len(error.stderr) < 50000
    assert 'truncated' in error.stderr


async def test_environment_key(engine):
    @engine.executable_task
    async def show():
        return 'printenv MY_AF_VAR; printenv PATH >/dev/null && echo path-kept'

    out = await asyncio.wait_for(
        show(task_description={'environment': {'MY_AF_VAR': 'xyz 123'}}), WAIT)
    assert out == 'xyz 123\npath-kept\n'


async def test_pre_exec_key(engine, tmp_path):
    where = tmp_path / 'pre'
    where.mkdir()

    @engine.executable_task
    async def show(task_description={'pre_exec': ['export GREETING=hello', f'cd {where}']}):
        return 'echo "$GREETING $(pwd)"'

    assert await asyncio.wait_for(show(), WAIT) == f'hello {where}\n'


async def test_failing_pre_exec_fails_the_task(engine, tmp_path):
    @engine.executable_task
    async def show():
        return f'touch {tmp_path}/ran.txt'

    with pytest.raises(TaskExecutionError):
        await asyncio.wait_for(show(task_description={'pre_exec': ['false']}), WAIT)
    assert not (tmp_path / 'ran.txt').exists()


async def test_sandbox_key(engine, tmp_path):
    sandbox = tmp_path / 'sb' / 'inner'

    @engine.executable_task
    async def where():
        return 'pwd; touch made.txt'

    out = await asyncio.wait_for(where(task_description={'sandbox': str(sandbox)}), WAIT)
    assert out == f'{sandbox}\n'
    assert (sandbox / 'made.txt').exists()


# --------------------------------------------------------- cancel / shutdown

async def test_cancel_kills_a_running_command(tmp_path):
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(1))
    reports = Reports(backend)
    fifo = make_fifo(tmp_path)
    try:
        await backend.submit_tasks([command_task('task.000001',
                                                 f'echo $$ > {fifo}; exec sleep 30')])
        pid = int(await read_fifo(fifo))
        assert alive(pid)
        assert await backend.cancel_task('task.000001') is True
        assert await reports.wait('task.000001') == reports.states.CANCELED
        assert not alive(pid)
        assert ('task.000001', reports.states.RUNNING) in reports.log
        assert await backend.cancel_task('task.000001') is False
        assert await backend.cancel_task('task.unknown') is False
    finally:
        await backend.shutdown()


async def test_backend_reports_done_with_stdout(tmp_path):
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(1))
    reports = Reports(backend)
    task = command_task('task.000002', 'echo direct')
    try:
        await backend.submit_tasks([task])
        assert await reports.wait('task.000002') == reports.states.DONE
        assert task['stdout'] == 'direct\n'
        assert task['exit_code'] == 0
    finally:
        await backend.shutdown()


async def test_submit_after_shutdown_is_refused():
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(1))
    await backend.shutdown()
    assert backend.state() == 'STOPPED'
    with pytest.raises(RuntimeError):
        await backend.submit_tasks([command_task('task.000003', 'true')])


def test_shutdown_leaves_no_child_processes(tmp_path):
    async def scenario():
        me = psutil.Process()
        before = {p.pid for p in me.children(recursive=True)}
        backend = await ConcurrentExecutionBackend(ProcessPoolExecutor(2))
        eng = await WorkflowEngine.create(backend=backend)
        double = eng.function_task(pid_and_double)
        blocker = eng.function_task(block_in_worker)
        cmd_fifo = make_fifo(tmp_path, 'cmd.fifo')
        worker_fifo = make_fifo(tmp_path, 'worker.fifo')

        @eng.executable_task
        async def sleeper():
            return f'echo $$ > {cmd_fifo}; exec sleep 30'

        worker_pid, _ = await asyncio.wait_for(double(1), WAIT)
        sleeping = sleeper()
        blocked = blocker(str(worker_fifo))
        cmd_pid = int(await read_fifo(cmd_fifo))
        busy_worker = int(await read_fifo(worker_fifo))
        started = {p.pid for p in me.children(recursive=True)} - before
        assert {worker_pid, cmd_pid, busy_worker} <= started

        await asyncio.wait_for(eng.shutdown(), 30)
        assert sleeping.cancelled() and blocked.cancelled()
        left = [p for p in me.children(recursive=True) if p.pid not in before]
        assert left == [], f'left behind: {[(p.pid, p.name(), p.status()) for p in left]}'
        assert not alive(cmd_pid) and not alive(worker_pid) and not alive(busy_worker)

    run_guarded(scenario)


async def test_thread_pool_shutdown_leaves_no_child_processes(tmp_path):
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(2))
    eng = await WorkflowEngine.create(backend=backend)
    fifo = make_fifo(tmp_path)

    @eng.executable_task
    async def sleeper():
        return f'echo $$ > {fifo}; exec sleep 30'

    fut = sleeper()
    pid = int(await read_fifo(fifo))
    await asyncio.wait_for(eng.shutdown(), 30)
    assert fut.cancelled()
    assert [p for p in me.children(recursive=True) if p.pid not in before] == []
    assert not alive(pid)
