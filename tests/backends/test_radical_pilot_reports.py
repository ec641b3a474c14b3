"""What RadicalExecutionBackend reads from RP tasks and reports, without a pilot:
where tasks ran (RP's slots, which RP 1.103 sends only when a task comes
back from the agent), RAPTOR MPIWorker outcomes (one per rank), a final state
that cannot be read, and how RAPTOR workers are described (the workers with
the payload runner imported, the node name in named environments).

The pilot runs are in test_radical_pilot.py and test_multinode.py.
"""

import os
import subprocess

import pytest

rp = pytest.importorskip('radical.pilot')

import dill  # noqa: E402

from radical.asyncflow import RadicalExecutionBackend  # noqa: E402
from radical.asyncflow.backends.execution.radical_pilot import payload  # noqa: E402
from radical.asyncflow.backends.execution.radical_pilot.describe import TaskKind  # noqa: E402
from radical.asyncflow.backends.execution.radical_pilot.raptor import (  # noqa: E402
    WARM_WORKERS, WORKER_FILE, parse_raptor_config, worker_descriptions)
from radical.asyncflow.backends.execution.radical_pilot.tasks import Submitted  # noqa: E402
from radical.asyncflow.backends.execution.dict_protocol import spec_from_dict  # noqa: E402
from radical.asyncflow.errors import BackendError  # noqa: E402


class FakeRPTask:
    """What the backend reads of an RP task."""

    def __init__(self, uid, sandbox, slots=None):
        self.uid = uid
        self.stdout = 'out\n'
        self.stderr = ''
        self.exit_code = 0
        self.sandbox = f'file://localhost{sandbox}/{uid}'
        self.description = {}
        self.return_value = None
        self.exception = None
        self.exception_detail = None
        self.slots = slots
        self.state = 'NEW'


class Reporter:
    """Keeps every report; ``placed`` only if asked to have it."""

    def __init__(self, with_placed=False):
        self.seen = []
        if with_placed:
            self.placed = lambda spec, where: self.seen.append(('placed', list(where)))

    def running(self, spec, *where):          # as old reporters: where is optional
        self.seen.append(('running', *where))

    def done(self, spec, result):
        self.seen.append(('done', result))

    def failed(self, spec, error):
        self.seen.append(('failed', error))

    def cancelled(self, spec):
        self.seen.append(('cancelled',))


@pytest.fixture
def backend(tmp_path):
    backend = RadicalExecutionBackend({'resource': 'local.localhost'}, work_dir=str(tmp_path))
    backend._state = 'RUNNING'                 # as if the pilot were up
    backend.pilot_sandbox = str(tmp_path)
    return backend


def submit(backend, reporter, kind=TaskKind.EXECUTABLE, uid='t.000001'):
    spec = spec_from_dict({'uid': uid, 'name': 'x', 'executable': 'true'})
    backend._tasks.add(Submitted(spec, reporter, kind, uid))
    return spec


@pytest.mark.parametrize('with_placed', [False, True])
def test_nodes_are_counted_when_the_slots_come_back(backend, tmp_path, with_placed):
    reporter = Reporter(with_placed)
    submit(backend, reporter)
    rp_task = FakeRPTask('t.000001', tmp_path)
    backend._on_rp_state(rp_task, rp.AGENT_EXECUTING)             # no slots yet (RP 1.103)
    assert reporter.seen == [('running',)]
    assert backend.tasks_per_node == {}
    rp_task.slots = [rp.Slot({'node_name': 'n2', 'node_index': 1, 'cores': [0]}),
                     rp.Slot({'node_name': 'n3', 'node_index': 2, 'cores': [0]}),
                     rp.Slot({'node_name': 'n2', 'node_index': 1, 'cores': [1]})]
    backend._on_rp_state(rp_task, rp.TMGR_STAGING_OUTPUT_PENDING)
    backend._on_rp_state(rp_task, rp.DONE)
    assert backend.tasks_per_node == {'n2': 1, 'n3': 1}            # each node once per task
    reports = [what for what, *_ in reporter.seen]
    assert reports == (['running', 'placed', 'done'] if with_placed else ['running', 'done'])
    if with_placed:
        assert reporter.seen[1] == ('placed', ['n2', 'n3'])


def test_nodes_known_at_the_start_go_with_the_running_report(backend, tmp_path):
    reporter = Reporter(with_placed=True)
    submit(backend, reporter)
    rp_task = FakeRPTask('t.000001', tmp_path, slots=[{'node_name': 'n4'}])
    backend._on_rp_state(rp_task, rp.AGENT_EXECUTING)
    backend._on_rp_state(rp_task, rp.DONE)
    assert [what for what, *_ in reporter.seen] == ['running', 'done']
    assert reporter.seen[0] == ('running', ['n4'])
    assert backend.tasks_per_node == {'n4': 1}


def outcome(value=None, error=None):
    blob = dill.dumps(('ok', value) if error is None else ('err', error, 'remote tb'))
    import base64
    return base64.b64encode(blob).decode()


def test_an_mpiworker_task_returns_rank_0s_value(backend, tmp_path):
    reporter = Reporter()
    submit(backend, reporter, TaskKind.RAPTOR_FUNCTION)
    rp_task = FakeRPTask('t.000001', tmp_path)
    # RP's MPIWorker: one entry per rank, in the order the ranks finished
    rp_task.return_value = [f'2:{outcome("two")}', f'0:{outcome("zero")}', f'1:{outcome("one")}']
    rp_task.stdout, rp_task.stderr = ['', '', ''], ['', 'warning\n', '']
    backend._on_rp_state(rp_task, rp.AGENT_EXECUTING)
    backend._on_rp_state(rp_task, rp.DONE)
    assert reporter.seen[-1] == ('done', 'zero')


def test_an_mpiworker_task_fails_with_the_first_failed_ranks_error(backend, tmp_path):
    reporter = Reporter()
    submit(backend, reporter, TaskKind.RAPTOR_FUNCTION)
    rp_task = FakeRPTask('t.000001', tmp_path)
    rp_task.return_value = [f'0:{outcome(1)}', f'2:{outcome(error=KeyError("r2"))}',
                            f'1:{outcome(error=ValueError("r1"))}']
    backend._on_rp_state(rp_task, rp.DONE)
    what, error = reporter.seen[-1]
    assert what == 'failed' and isinstance(error, ValueError) and str(error) == 'r1'


def test_a_defaultworker_task_returns_its_value(backend, tmp_path):
    reporter = Reporter()
    submit(backend, reporter, TaskKind.RAPTOR_FUNCTION)
    rp_task = FakeRPTask('t.000001', tmp_path)
    rp_task.return_value = f'0:{outcome([1, 2])}'
    backend._on_rp_state(rp_task, rp.DONE)
    assert reporter.seen[-1] == ('done', [1, 2])


async def test_the_raptor_entry_passes_the_communicator_as_comm():
    class Comm:
        rank = 3

    async def takes(x, comm=None):
        return (x, comm.rank)

    async def ignores(x):
        return x

    for func, expected in ((takes, (5, 3)), (ignores, 5)):
        spec = spec_from_dict({'uid': 'f.1', 'name': 'f', 'function': func, 'args': (5,)})
        # what RP's workers unpack: RP's MPIWorker puts the communicator into comm=None
        entry, args, kwargs = rp.PythonTask.get_func_attr(payload.raptor_function(spec, ()))
        assert kwargs == {'comm': None}
        returned = await entry(*args, comm=Comm())
        assert returned.startswith('3:')
        assert dill.loads(payload.raptor_outcome(returned)) == ('ok', expected)


def test_a_final_state_that_cannot_be_read_fails_the_task(backend, tmp_path):
    class Unreadable(FakeRPTask):
        @property
        def exit_code(self):
            raise RuntimeError('no exit code')

        @exit_code.setter
        def exit_code(self, value):
            pass

    reporter = Reporter()
    submit(backend, reporter)
    backend._on_rp_state(Unreadable('t.000001', tmp_path), rp.DONE)
    what, error = reporter.seen[-1]
    assert what == 'failed' and isinstance(error, BackendError)
    assert 'its RP state DONE could not be read: RuntimeError: no exit code' in str(error)


def test_raptor_workers_import_the_payload_runner_once(tmp_path):
    import radical.utils as ru
    spec = parse_raptor_config({'masters': [{'workers': [
        {'ranks': 1}, {'ranks': 2, 'worker_type': 'MPIWorker'},
        {'ranks': 1, 'raptor_file': '/my/worker.py', 'worker_type': 'MyWorker'}]}]})[0]
    tds = worker_descriptions(rp, spec, 'raptor.0000', lambda opts, what: opts)
    assert [(td.raptor_file, td.raptor_class) for td in tds] == [
        (WORKER_FILE, WARM_WORKERS['DefaultWorker']), (WORKER_FILE, WARM_WORKERS['MPIWorker']),
        ('/my/worker.py', 'MyWorker')]
    # what radical-pilot-raptor-worker does with them
    assert issubclass(ru.load_class(WORKER_FILE, 'AsyncflowDefaultWorker', rp.raptor.Worker),
                      rp.raptor.DefaultWorker)
    assert issubclass(ru.load_class(WORKER_FILE, 'AsyncflowMPIWorker', rp.raptor.Worker),
                      rp.raptor.MPIWorker)


def test_tasks_in_a_named_env_keep_their_node_name():
    spec = parse_raptor_config({'masters': [{'workers': [{'ranks': 1}]}]})[0]
    (td,) = worker_descriptions(rp, spec, 'raptor.0000', lambda opts, what: opts)
    assert td.named_env == 'rp'
    script = '\n'.join([*td.pre_exec, 'echo "$SLURMD_NODENAME"'])
    env = {'PATH': os.environ['PATH'], 'SLURMD_NODENAME': 'n1'}    # the agent's, from the env
    step = subprocess.run(['/bin/sh', '-c', script], capture_output=True, text=True,
                          env={**env, 'SLURM_TOPOLOGY_ADDR': 'switch0.switch3.n7'})
    assert step.stdout.strip() == 'n7'
    outside = subprocess.run(['/bin/sh', '-c', script], capture_output=True, text=True, env=env)
    assert outside.stdout.strip() == 'n1'                             # not in a SLURM step


@pytest.mark.parametrize('workers, ranks, message', [
    ([{'ranks': 2}], 2, r"worker 0 of RAPTOR master 0 is a DefaultWorker \(it runs a function "
                        r"on one process\)"),
    ([{'ranks': 4, 'worker_type': 'MPIWorker'}, {'ranks': 2, 'worker_type': 'MPIWorker'}], 3,
     r"worker 1 of RAPTOR master 0 is an MPIWorker of 2 ranks"),
])
def test_mpi_function_tasks_need_mpiworkers_of_enough_ranks(workers, ranks, message):
    from radical.asyncflow.backends.execution.radical_pilot.raptor import check_mpi_function
    masters = parse_raptor_config({'masters': [{'workers': workers}]})
    with pytest.raises(ValueError, match=f"^function task 'f' asks for {ranks} ranks, but "
                                         f"{message}: every worker in raptor_config must be an "
                                         f"MPIWorker of at least {ranks} ranks") as info:
        check_mpi_function(masters, 'f', ranks)
    assert '\n' not in str(info.value)
    check_mpi_function(masters, 'f', 1)                     # one rank: any worker
    check_mpi_function(parse_raptor_config({'masters': [{'workers': [
        {'ranks': ranks, 'worker_type': 'MPIWorker'}, {'ranks': 1, 'raptor_file': '/w.py',
                                                       'worker_type': 'Mine'}]}]}), 'f', ranks)
