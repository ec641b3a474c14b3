"""RadicalExecutionBackend on a real RADICAL-Pilot pilot on local.localhost.

One pilot (4 cores, one RAPTOR master and one worker) serves the whole
module; each test gets its own engine on it.  The pilot's sandboxes and the
session directory live in a temporary directory.  The last test shuts the
pilot down and checks that none of its processes is left.

Set-up without a shared pilot (missing radical.pilot, bad arguments, a pilot
that fails to start, a driver in a non-activated venv, function tasks
without RAPTOR) is in test_radical_pilot_setup.py.
"""

import asyncio
import os
import shutil
import sys

import psutil
import pytest
import pytest_asyncio

from radical.asyncflow import InputFile, OutputFile, WorkflowEngine
from radical.asyncflow.errors import DependencyFailure, TaskExecutionError

rp = pytest.importorskip('radical.pilot')

from radical.asyncflow import RadicalExecutionBackend  # noqa: E402

#: Seconds any single await may take (pilot start-up has its own bound).
WAIT = 120
PILOT_CORES = 4
RAPTOR_CONFIG = {'masters': [{'ranks': 1,
                              'workers': [{'ranks': 1, 'worker_type': 'DefaultWorker'}]}]}

pytestmark = [pytest.mark.rp, pytest.mark.asyncio(loop_scope='module'),
              pytest.mark.timeout(600)]


def run(coro, timeout=WAIT):
    return asyncio.wait_for(coro, timeout)


def session_processes(sid):
    """PIDs of processes that belong to RP session ``sid``."""
    found = []
    for proc in psutil.process_iter(['pid', 'cmdline']):
        if proc.info['pid'] == os.getpid():
            continue
        try:
            if sid in ' '.join(proc.info['cmdline'] or ()) or \
                    proc.environ().get('RP_SESSION_ID') == sid:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc.info['pid'])
        except (psutil.Error, OSError):
            continue
    return found


async def rp_task_named(backend, name, states, timeout=60):
    """The RP task called ``name`` once it is in one of ``states``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for task in backend.tmgr.get_tasks():
            if task.name == name and task.state in states:
                return task
        await asyncio.sleep(0.2)
    raise AssertionError(f'no RP task {name!r} in {states} within {timeout}s')


@pytest_asyncio.fixture(scope='module', loop_scope='module')
async def backend(tmp_path_factory):
    base = tmp_path_factory.mktemp('rp')
    be = await run(RadicalExecutionBackend(
        {'resource': 'local.localhost', 'cores': PILOT_CORES, 'runtime': 30,
         'sandbox': str(base)}, RAPTOR_CONFIG, work_dir=str(base), startup_timeout=240),
        timeout=300)
    yield be
    await run(be.shutdown(), timeout=300)       # no-op after test_shutdown_leaves_nothing


@pytest_asyncio.fixture(loop_scope='module')
async def flow(backend):
    engine = await WorkflowEngine.create(backend=backend)
    yield engine
    await run(engine.shutdown(skip_execution_backend=True))


# ------------------------------------------------------------------ set-up

async def test_pilot_and_session_are_where_asked(backend, flow):
    base = os.path.dirname(backend.session.path)
    assert os.path.basename(backend.session.path) == backend.rp_session.uid
    assert flow.work_dir == backend.session.path
    assert backend.pilot_sandbox.startswith(os.path.join(base, 'radical.pilot.sandbox'))
    assert backend.pilot.state == rp.PMGR_ACTIVE
    assert backend.pilot.description['cores'] == PILOT_CORES
    assert backend.pilot.description['exit_on_error'] is False
    assert backend.state() == 'RUNNING'
    assert backend.cores >= PILOT_CORES         # RP gives whole nodes (8 fake cores here)
    assert backend.gpus == 0 or backend.gpus >= 0
    states = backend.get_task_states_map()
    assert (states.DONE, states.FAILED, states.CANCELED, states.RUNNING) == \
        (rp.DONE, rp.FAILED, rp.CANCELED, rp.AGENT_EXECUTING)


class RecordingReporter:
    """A reporter that remembers what it was told, in order, and wakes a waiter."""

    def __init__(self, loop):
        self.loop = loop
        self.seen = []
        self.final = asyncio.Event()

    def _note(self, what, spec, value=None):
        self.seen.append((what, spec.uid, value))
        if what in ('done', 'failed', 'cancelled'):
            self.loop.call_soon_threadsafe(self.final.set)

    def running(self, spec):
        self._note('running', spec)

    def done(self, spec, result):
        self._note('done', spec, result)

    def failed(self, spec, error):
        self._note('failed', spec, error)

    def cancelled(self, spec):
        self._note('cancelled', spec)


async def test_states_are_reported_through_the_reporter(backend):
    from radical.asyncflow.backends.execution.dict_protocol import spec_from_dict
    reporter = RecordingReporter(asyncio.get_running_loop())
    spec = spec_from_dict({'uid': 'direct.000001', 'name': 'hello', 'executable': 'echo hello'})
    await backend.submit([spec], reporter)
    await run(reporter.final.wait())
    assert [what for what, _, _ in reporter.seen] == ['running', 'done']
    assert reporter.seen[-1][2].stdout == 'hello\n'


# ------------------------------------------------------------ executables

async def test_bag_of_executables(flow):
    @flow.executable_task
    async def member(i):
        return f'echo member {i}'

    results = await run(asyncio.gather(*[member(i) for i in range(16)]))
    assert results == [f'member {i}\n' for i in range(16)]


async def test_commands_run_exactly_as_written(flow):
    @flow.executable_task
    async def shell_syntax():
        return ('for x in a b; do printf "%s-" "$x"; done; echo "$((6 * 7))" '
                '\'$HOME\' `echo tick` "q\\"uote"')

    @flow.executable_task
    async def environment(task_description={'environment': {'GREETING': 'hi there'},
                                            'pre_exec': ['export SUFFIX=!']}):
        return 'echo "$GREETING$SUFFIX"'

    @flow.executable_task
    async def long_output():
        return 'seq 1 5000'

    assert await run(shell_syntax()) == 'a-b-42 $HOME tick q"uote\n'
    assert await run(environment()) == 'hi there!\n'
    out = await run(long_output())      # RP keeps only 1 KiB of it itself
    assert out.split() == [str(i) for i in range(1, 5001)]


async def test_failure_carries_exit_code_stderr_and_sandbox(flow):
    @flow.executable_task
    async def broken():
        return 'echo partial; echo "it broke" >&2; exit 3'

    @flow.executable_task
    async def after(dep):
        return 'echo never'

    @flow.function_task
    async def later(dep):
        return 'never'

    first = broken()
    second = after(first)
    third = later(second)
    with pytest.raises(TaskExecutionError) as info:
        await run(first)
    error = info.value
    assert error.exit_code == 3
    assert 'it broke' in error.stderr and 'it broke' in str(error)
    assert 'task sandbox: ' in str(error)
    sandbox = str(error).rsplit('task sandbox: ', 1)[1].strip()
    assert os.path.isfile(os.path.join(sandbox, f'{os.path.basename(sandbox)}.err'))
    for dependent in (second, third):
        with pytest.raises(DependencyFailure) as dep_info:
            await run(dependent)
        assert dep_info.value.root_cause is error


# ------------------------------------------------------------------- data

async def test_dag_with_implicit_data(flow):
    @flow.executable_task
    async def produce():
        return 'echo alpha > a.txt; echo beta > b.txt'

    @flow.executable_task
    async def transform(dep):
        return 'cat a.txt b.txt | tr a-z A-Z > upper.txt; cat upper.txt'

    @flow.function_task
    async def read_in_function(dep):       # runs on the RAPTOR worker
        with open('a.txt') as f:
            return f.read()

    @flow.executable_task
    async def final(dep):
        return 'cat upper.txt; test ! -e a.txt && echo "a.txt is not here"'

    source = produce()
    middle = transform(source)
    assert await run(middle) == 'ALPHA\nBETA\n'
    assert await run(read_in_function(source)) == 'alpha\n'
    assert await run(final(middle)) == 'ALPHA\nBETA\na.txt is not here\n'


async def test_explicit_files_between_sandboxes(backend, tmp_path):
    engine = await WorkflowEngine.create(backend=backend, implicit_data=False)
    local = tmp_path / 'from_client.txt'
    local.write_text('client data\n')
    try:
        @engine.executable_task
        async def producer(out):
            return 'echo wanted > result.txt; echo unwanted > other.txt; pwd'

        @engine.executable_task
        async def consumer(inp, dep, client_file):
            return 'cat result.txt from_client.txt; ls; pwd'

        made = producer(OutputFile('result.txt'))
        used = consumer(InputFile('result.txt'), made, InputFile(str(local)))
        producer_dir = (await run(made)).strip()
        lines = (await run(used)).split()
        assert lines[:3] == ['wanted', 'client', 'data']
        assert 'result.txt' in lines and 'from_client.txt' in lines
        assert 'other.txt' not in lines                 # exactly the named file
        assert lines[-1] != producer_dir                # a different sandbox
        staged = os.path.join(lines[-1], 'result.txt')     # RP links are hard links
        assert os.path.samefile(staged, os.path.join(producer_dir, 'result.txt'))
    finally:
        await run(engine.shutdown(skip_execution_backend=True))


# -------------------------------------------------------------- functions

class CustomError(Exception):
    """Raised on the worker; must come back as itself."""


async def test_function_tasks_on_raptor(backend, flow):
    @flow.function_task
    async def square(x):
        await asyncio.sleep(0.01)
        return x * x

    @flow.function_task
    async def combine(values, scale=1):
        return {'total': sum(values) * scale, 'values': tuple(values), 'pid': os.getpid()}

    @flow.function_task
    async def bad(kind):
        if kind == 'value':
            raise ValueError('bad value 42')
        raise CustomError('custom', 7)

    squares = [square(i) for i in range(6)]
    result = await run(combine(squares, scale=2))
    assert result['total'] == 2 * sum(i * i for i in range(6))
    assert result['values'] == tuple(i * i for i in range(6))
    assert result['pid'] != os.getpid()
    with pytest.raises(ValueError, match='bad value 42'):
        await run(bad('value'))
    with pytest.raises(CustomError) as info:
        await run(bad('custom'))
    assert info.value.args == ('custom', 7)
    modes = {t.description['mode'] for t in backend.tmgr.get_tasks() if t.name == 'square'}
    assert modes == {rp.TASK_FUNCTION}


async def test_function_service_tasks_are_rejected(flow):
    @flow.function_task(service=True)
    async def service():
        return 1

    with pytest.raises(ValueError, match='does not support function service tasks'):
        await run(service())


# ------------------------------------------------------------ MPI, services

MPI_PROGRAM = '''
import sys
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank() + 1)
# one write per rank: mpiexec forwards the ranks' output chunk by chunk
sys.stdout.write(f"rank {comm.Get_rank()} of {comm.Get_size()} total {total}\\n")
'''


@pytest.mark.skipif(shutil.which('mpiexec') is None, reason='no mpiexec: run tests/setup_system.sh')
async def test_mpi_task_on_two_ranks(flow, tmp_path):
    pytest.importorskip('mpi4py')
    program = tmp_path / 'ranks.py'
    program.write_text(MPI_PROGRAM)

    @flow.executable_task
    async def mpi(task_description={'ranks': 2}):
        return f'{sys.executable} {program}'

    lines = sorted((await run(mpi())).splitlines())
    assert lines == ['rank 0 of 2 total 3', 'rank 1 of 2 total 3']


async def test_service_task_resolves_when_up(backend, flow):
    @flow.executable_task(service=True)
    async def server(task_description={'info_pattern': r'stdout:listening on (\d+)'}):
        return 'echo "listening on 4242"; exec sleep 600'

    @flow.executable_task
    async def client(port):
        return f'echo "talking to {port.strip()}"'

    port = server()
    assert await run(port) == '4242'
    assert await run(client(port)) == 'talking to 4242\n'
    sid = backend.rp_session.uid
    assert [p for p in psutil.process_iter(['cmdline'])
            if (p.info['cmdline'] or [])[:2] == ['sleep', '600']
            and p.environ().get('RP_SESSION_ID') == sid], 'the service is not running'


# ----------------------------------------------------------- cancellation

async def test_cancel_a_queued_and_a_running_task(backend, flow):
    # RAPTOR's master and worker hold a core each for the pilot's lifetime,
    # so a task that needs every core of the pilot waits in the agent forever
    @flow.executable_task
    async def queued(task_description={'cores_per_rank': backend.cores}):
        return 'echo should not run'

    @flow.executable_task
    async def running():
        return 'exec sleep 300'

    waiting = queued()
    rp_queued = await rp_task_named(backend, 'queued', [rp.AGENT_SCHEDULING])
    await asyncio.sleep(1)
    assert rp_queued.state == rp.AGENT_SCHEDULING
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run(waiting)
    await rp_task_named(backend, 'queued', [rp.CANCELED])
    assert rp_queued.exit_code is None                  # it never ran

    busy = running()
    await rp_task_named(backend, 'running', [rp.AGENT_EXECUTING])
    sid = backend.rp_session.uid

    def sleepers():
        return [p for p in psutil.process_iter(['cmdline'])
                if (p.info['cmdline'] or [])[:2] == ['sleep', '300']
                and p.environ().get('RP_SESSION_ID') == sid]

    for _ in range(50):
        if sleepers():
            break
        await asyncio.sleep(0.1)
    assert sleepers()
    busy.cancel()
    await rp_task_named(backend, 'running', [rp.CANCELED])
    for _ in range(100):
        if not sleepers():
            break
        await asyncio.sleep(0.1)
    assert not sleepers()


# ---------------------------------------------------------------- shutdown

# ------------------------------------------------------- one pilot, engines

async def _cancel_two_sleepers(engine):
    @engine.executable_task
    async def sleeper():
        return 'sleep 30'

    futures = [sleeper(), sleeper()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while engine.state_counts()['RUNNING'] < 2:
        assert loop.time() < deadline, 'the sleepers did not start'
        await asyncio.sleep(0.2)
    for future in futures:
        future.cancel()
    return futures


async def test_engines_one_after_another_on_one_pilot(backend):
    for round_ in range(3):
        first = await WorkflowEngine.create(backend=backend, progress=False)
        cancelled = await _cancel_two_sleepers(first)
        await run(first.shutdown(skip_execution_backend=True))
        assert all(f.cancelled() for f in cancelled)

        second = await WorkflowEngine.create(backend=backend, progress=False)

        @second.executable_task
        async def late(n):
            return f'sleep 1 && echo {n}'

        @second.function_task
        async def square(n):
            return n * n

        numbers = [100 * round_ + i for i in range(2)]
        assert await run(asyncio.gather(*[late(n) for n in numbers])) == \
            [f'{n}\n' for n in numbers]
        assert await run(asyncio.gather(*[square(n) for n in numbers])) == \
            [n * n for n in numbers]
        await run(second.shutdown(skip_execution_backend=True))
        # the cancelled sleepers' reports reached the first engine only, which dropped them
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while first._outcomes.dropped < len(cancelled):
            assert loop.time() < deadline, 'the cancellations were never reported'
            await asyncio.sleep(0.2)
        assert second._outcomes.dropped == 0


async def test_two_engines_at_once_on_one_pilot(backend):
    engines = [await WorkflowEngine.create(backend=backend, progress=False) for _ in range(2)]
    totals = []
    for k, engine in enumerate(engines):
        @engine.function_task
        async def square(n):
            return n * n

        @engine.executable_task
        async def shout(n):
            return f'echo {n}'

        @engine.function_task
        async def add(*values):
            return sum(int(v) for v in values)

        base = 10 * k
        totals.append(add(*[square(base + i) for i in range(3)],
                          *[shout(base + i) for i in range(3)]))
    assert await run(asyncio.gather(*totals)) == \
        [sum((10 * k + i) ** 2 + 10 * k + i for i in range(3)) for k in range(2)]
    for engine in engines:
        await run(engine.shutdown(skip_execution_backend=True))


async def test_capture_stdio_on_the_pilot(backend, tmp_path):
    engine = await WorkflowEngine.create(backend=backend, progress=False,
                                         work_dir=str(tmp_path), uid='captured')

    @engine.executable_task(capture_stdio=True)
    async def talk():
        return 'seq 1 50000; echo to-stderr >&2'

    future = talk()
    path = await run(future)
    assert path == str(tmp_path / 'captured' / future._af_record.uid / 'stdout')
    assert open(path).read() == ''.join(f'{i}\n' for i in range(1, 50001))
    assert open(os.path.join(os.path.dirname(path), 'stderr')).read() == 'to-stderr\n'
    await run(engine.shutdown(skip_execution_backend=True))


async def test_a_pilot_and_threads_in_one_engine(backend, tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    from radical.asyncflow import ConcurrentExecutionBackend
    monkeypatch.chdir(tmp_path)
    threads = await ConcurrentExecutionBackend(ThreadPoolExecutor(2), name='threads')
    engine = await WorkflowEngine.create(backend=[backend, threads], progress=False)
    assert list(engine.backends) == ['radical', 'threads']

    @engine.executable_task
    async def on_pilot(out):
        return f'echo from-pilot > {out}; echo done'

    @engine.executable_task(backend='threads')
    async def local_write(out):
        return f'echo from-threads > {out}'

    @engine.executable_task(backend='threads')
    async def local_read(dep, inp):
        return f'cat {inp}'

    @engine.executable_task
    async def pilot_read(dep, inp):
        return f'cat {inp}'

    @engine.executable_task
    async def pilot_fails():
        return 'exit 7'

    @engine.function_task(backend='threads')
    async def after(x):
        return x

    made_there = on_pilot(OutputFile('there.txt'))
    made_here = local_write(OutputFile('here.txt'))
    assert await run(local_read(made_there, InputFile('there.txt'))) == 'from-pilot\n'
    assert await run(pilot_read(made_here, InputFile('here.txt'))) == 'from-threads\n'
    assert await run(after(made_there)) == 'done\n'
    with pytest.raises(DependencyFailure) as info:
        await run(after(pilot_fails()))
    assert info.value.failed_dependencies == ['pilot_fails']
    await run(engine.shutdown(skip_execution_backend=True))
    await threads.shutdown()


async def test_shutdown_leaves_nothing(backend):
    sid = backend.rp_session.uid
    assert session_processes(sid), 'expected the pilot agent to be running'
    await run(backend.shutdown(), timeout=300)
    assert backend.state() == 'STOPPED'
    assert session_processes(sid) == []         # the service's sleep 600 included
