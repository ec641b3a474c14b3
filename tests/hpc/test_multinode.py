"""Multi-node runs on a real four-node SLURM cluster (see slurm_cluster.py).

Four ``slurmd`` on this host emulate nodes n1..n4 of two cores each; a job
step knows its node from ``SLURMD_NODENAME`` (``hostname`` is the same
everywhere).  One cluster serves the module; each scenario is one batch job:

* a: ``radical-asyncflow-run --submit slurm --nodes 3``: ONE pilot over the
  three nodes runs 48 single-core commands (each prints its node) and an
  MPI command of 4 ranks (mpi4py, Allreduce) across two nodes;
* b: a RAPTOR MPIWorker spanning two nodes runs a function task of 3 ranks
  (it gets the task's communicator);
* c: a RAPTOR master with workers on every node of a 3-node pilot runs 1,000
  function tasks that return their node;
* d: DaskExecutionBackend with its workers as SLURM jobs (dask-jobqueue);
* e: ``radical-asyncflow-run --submit pbs --nodes 2`` through ``qsub``
  (slurm-wlm-torque), its pilot running tasks on both nodes.

Per-node counts and wall times are printed at the end (``pytest -s``).
"""

import asyncio
import collections
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from slurm_cluster import in_ci

#: Seconds a pilot may take to become active, and a whole pilot job to finish.
PILOT_TIMEOUT = 300
RP_JOB_TIMEOUT = 720

#: pytest-timeout per test: above the job's own bound, which cancels the job
pytestmark = [pytest.mark.slurm, pytest.mark.rp, pytest.mark.timeout(RP_JOB_TIMEOUT + 180)]

CLI = [sys.executable, '-m', 'radical.asyncflow.cli']
#: Minutes of walltime of the pilot jobs.
WALLTIME = 20
TASKS = 48
RAPTOR_TASKS = 1000

#: 48 single-core commands that print their node and srun step, then an MPI
#: command of 4 ranks; the backend's own per-node count at the end.
SPREAD_DRIVER = textwrap.dedent('''
    import asyncio, json, sys
    from radical.asyncflow import WorkflowEngine

    N, MPI_PROGRAM = int(sys.argv[1]), sys.argv[2]

    async def main():
        engine = await WorkflowEngine.create()
        backend = engine.backend
        print('PILOT-NODES', json.dumps({n['name']: len(n['cores'])
                                         for n in backend.pilot.resource_details['node_list']}))

        @engine.executable_task
        async def where(i):
            return 'echo "$SLURMD_NODENAME $SLURM_STEP_ID"'

        @engine.executable_task
        async def allreduce(task_description={'ranks': 4}):
            return f'{sys.executable} {MPI_PROGRAM}'

        outs = await asyncio.gather(*[where(i) for i in range(N)])
        for i, out in enumerate(outs):
            print(f'TASK {i} {out.strip()}')
        print((await allreduce()).strip())
        print('BACKEND-TASKS-PER-NODE', json.dumps(backend.tasks_per_node))
        await engine.shutdown()

    asyncio.run(main())
''')

#: Each rank: its node, its rank, the sum of 1..size over all ranks.
MPI_PROGRAM = textwrap.dedent('''
    import os
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    total = comm.allreduce(comm.rank + 1, op=MPI.SUM)
    print(f'RANK {comm.rank} of {comm.size} on {os.environ["SLURMD_NODENAME"]} '
          f'({MPI.Get_processor_name()}) sum {total}', flush=True)
''')

#: Function tasks on RAPTOR workers that return the node they ran on.
RAPTOR_DRIVER = textwrap.dedent('''
    import asyncio, collections, json, sys, time
    from radical.asyncflow import WorkflowEngine

    N = int(sys.argv[1])

    async def main():
        engine = await WorkflowEngine.create()

        @engine.function_task
        async def where(i):
            import os
            return os.environ.get('SLURMD_NODENAME', '?')

        start = time.monotonic()
        nodes = await asyncio.gather(*[where(i) for i in range(N)])
        print('RAPTOR-SECONDS', round(time.monotonic() - start, 1))
        print('RAPTOR-TASKS-PER-NODE', json.dumps(collections.Counter(nodes)))
        await engine.shutdown()

    asyncio.run(main())
''')

#: A function task of 3 ranks on a RAPTOR MPIWorker: its communicator as ``comm``.
MPI_FUNCTION_DRIVER = textwrap.dedent('''
    import asyncio, json
    from radical.asyncflow import WorkflowEngine

    async def main():
        engine = await WorkflowEngine.create()

        @engine.function_task
        async def allreduce(comm=None, task_description={'ranks': 3}):
            import os
            from mpi4py import MPI
            return {'size': comm.size, 'rank': comm.rank,
                    'sum': comm.allreduce(comm.rank + 1, op=MPI.SUM),
                    'nodes': comm.allgather(os.environ.get('SLURMD_NODENAME', '?'))}

        @engine.function_task
        async def single():
            import os
            return os.environ.get('SLURMD_NODENAME', '?')

        print('MPI-FUNCTION', json.dumps(await allreduce()))
        print('SINGLE', json.dumps(await single()))
        try:
            await allreduce(task_description={'ranks': 4})      # more than the worker has
        except ValueError as exc:
            print('TOO-MANY-RANKS', json.dumps(str(exc)))
        await engine.shutdown()

    asyncio.run(main())
''')

#: Commands on the pilot of a PBS job: their nodes.
PBS_DRIVER = textwrap.dedent('''
    import asyncio
    from radical.asyncflow import WorkflowEngine

    async def main():
        engine = await WorkflowEngine.create()

        @engine.executable_task
        async def where(i):
            return 'echo "$SLURMD_NODENAME"'

        for i, out in enumerate(await asyncio.gather(*[where(i) for i in range(8)])):
            print(f'TASK {i} {out.strip()}')
        await engine.shutdown()

    asyncio.run(main())
''')


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope='module')
def cluster(slurm_cluster_4):
    return slurm_cluster_4


@pytest.fixture(scope='module')
def report(cluster):
    """Figures of the scenarios (per-node counts, wall times), printed at the end."""
    record = {'cluster bring-up s': round(cluster.startup_seconds, 1)}
    start = time.monotonic()
    yield record
    record['module wall time s'] = round(time.monotonic() - start, 1)
    print('\nmulti-node figures:', json.dumps(record, indent=1))


@pytest.fixture(scope='module')
def env(cluster, tmp_path_factory):
    """A client of the cluster; RP configs in a temporary directory."""
    return cluster.client_env(str(tmp_path_factory.mktemp('radical-config')), PILOT_TIMEOUT)


def write(directory, name, text):
    path = directory / name
    path.write_text(text)
    return path


def submitted_job(cluster, env, workdir, args, timeout=RP_JOB_TIMEOUT):
    """``radical-asyncflow-run ARGS`` (a --submit), waited for: (job, its output)."""
    proc = subprocess.run([*CLI, *map(str, args)], env=env, cwd=workdir, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    assert re.fullmatch(r'\d+', job_id), proc.stdout
    try:
        job = cluster.wait_job(job_id, timeout)
    finally:            # a job that outlives its test would hold nodes the next ones need
        if not cluster.job(job_id).done:
            cluster.run(['scancel', job_id], check=False)
    outputs = sorted(workdir.glob(f'*{job_id}.out')) or sorted(workdir.glob('*.out'))
    out = outputs[0].read_text() if outputs else '(no output file)'
    return job, out


def require(module, extra):
    """Import ``module``; a test without it fails in CI and is skipped elsewhere."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed: pip install -e '.[{extra}]'"
        if in_ci():
            pytest.fail(f'CI must run this test: {message}')
        pytest.skip(message)


def counts(nodes):
    return dict(sorted(collections.Counter(nodes).items()))


def json_line(out, key):
    match = re.search(rf'^{key} (.*)$', out, flags=re.M)
    assert match, f'no {key} line in the output:\n{out[-4000:]}'
    return json.loads(match.group(1))


# ------------------------------------------------------------------ cluster

def test_four_idle_nodes_and_srun_spans_them(cluster, env):
    assert cluster.node_states() == {f'n{i}': 'idle' for i in range(1, 5)}
    out = cluster.run(['srun', '-N4', '-n4', 'sh', '-c', 'echo $SLURMD_NODENAME'], env=env,
                      timeout=60)
    assert sorted(out.split()) == ['n1', 'n2', 'n3', 'n4']


def test_mpi_across_two_nodes_with_plain_srun(cluster, env, tmp_path):
    # the cluster's own MPI set-up (MpiDefault=pmix, OMPI_MCA_btl=self,tcp), no pilot
    program = write(tmp_path, 'allreduce.py', MPI_PROGRAM)
    out = cluster.run(['srun', '-N2', '-n4', sys.executable, str(program)], env=env,
                      timeout=120)
    ranks = re.findall(r'RANK (\d) of 4 on (n\d) \(\S+\) sum (\d+)', out)
    assert sorted(r[0] for r in ranks) == ['0', '1', '2', '3'], out
    assert len({r[1] for r in ranks}) == 2, out
    assert {r[2] for r in ranks} == {'10'}, out


# ------------------------------------------------- a. one pilot over three nodes

@pytest.fixture(scope='module')
def spread_run(cluster, env, tmp_path_factory, report):
    """Job A, run once: (job, output, work dir)."""
    workdir = tmp_path_factory.mktemp('spread')
    driver = write(workdir, 'spread.py', SPREAD_DRIVER)
    program = write(workdir, 'allreduce.py', MPI_PROGRAM)
    started = time.monotonic()
    job, out = submitted_job(cluster, {**env, 'RADICAL_ASYNCFLOW_PROFILE': 'True'}, workdir,
                             ['--submit', 'slurm', '--nodes', 3, '--walltime', WALLTIME,
                              driver, TASKS, program])
    report['a: --submit slurm --nodes 3, 48 tasks + MPI (s)'] = round(
        time.monotonic() - started, 1)
    assert job.exit_code == '0:0', f'{job.state} {job.exit_code}\n{out[-4000:]}'
    return job, out, workdir


def task_nodes(out):
    tasks = re.findall(r'^TASK (\d+) (n\d) (\d+)$', out, flags=re.M)
    assert sorted(int(t[0]) for t in tasks) == list(range(TASKS)), out[-4000:]
    return tasks


def test_one_pilot_over_three_nodes_runs_tasks_on_each(spread_run, report):
    job, out, workdir = spread_run
    assert f'in SLURM job {job.job_id}: 3 node(s) n1,n2,n3, 6 cores' in out
    assert out.count('one pilot on asyncflow.slurm') == 1
    assert len(list(workdir.glob('rp.session.*'))) == 1            # one RP session
    # RADICAL-Pilot's SLURM resource manager: three nodes of two cores
    assert json_line(out, 'PILOT-NODES') == {'n1': 2, 'n2': 2, 'n3': 2}
    tasks = task_nodes(out)
    per_node = counts(t[1] for t in tasks)
    report['a: tasks per node (their stdout)'] = per_node
    assert set(per_node) == {'n1', 'n2', 'n3'}, per_node
    assert len({t[2] for t in tasks}) == TASKS                     # each its own srun step


def test_the_backend_places_each_task_on_its_node(spread_run, report):
    _, out, _ = spread_run
    expected = collections.Counter(t[1] for t in task_nodes(out))
    expected.update(set(re.findall(r'RANK \d of 4 on (n\d)', out)))  # the MPI task, once per node
    placed = json_line(out, 'BACKEND-TASKS-PER-NODE')
    report['a: tasks per node (backend, from RP slots)'] = placed
    assert placed == dict(sorted(expected.items()))


def test_mpi_command_ranks_on_two_nodes_allreduce(spread_run, report):
    _, out, _ = spread_run
    ranks = re.findall(r'RANK (\d) of (\d) on (n\d) \(\S+\) sum (\d+)', out)
    report['a/b: MPI command rank -> node'] = {r[0]: r[2] for r in sorted(ranks)}
    assert sorted(r[0] for r in ranks) == ['0', '1', '2', '3'], out[-4000:]
    assert {r[1] for r in ranks} == {'4'}
    assert len({r[2] for r in ranks}) >= 2                         # across nodes
    assert {r[3] for r in ranks} == {'10'}                         # 1+2+3+4 everywhere


def run_summary(out):
    match = re.search(r'run summary: (\S+asyncflow_summary\.json)', out)
    assert match, out[-4000:]
    with open(match.group(1)) as handle:
        return match.group(1), json.load(handle)


def test_run_summary_counts_the_tasks(spread_run):
    _, out, _ = spread_run
    _, summary = run_summary(out)
    assert summary['tasks'] == TASKS + 1
    assert summary['task_states']['DONE'] == TASKS + 1


def test_run_summary_and_plot_show_tasks_per_node(spread_run):
    _, out, _ = spread_run
    path, summary = run_summary(out)
    placed = json_line(out, 'BACKEND-TASKS-PER-NODE')
    plot = subprocess.run([sys.executable, '-m', 'radical.asyncflow.observability.plot',
                           os.path.dirname(path)], capture_output=True, text=True, timeout=300)
    assert plot.returncode == 0, plot.stderr
    assert os.path.exists(os.path.join(os.path.dirname(path), 'asyncflow_timeline.png'))
    assert summary['tasks_per_node'] == placed
    assert os.path.exists(os.path.join(os.path.dirname(path), 'asyncflow_nodes.png'))


# ------------------------------------------------ b. MPI function on MPIWorker

def test_mpi_function_task_on_a_raptor_mpiworker_across_two_nodes(cluster, env, tmp_path,
                                                                 report):
    driver = write(tmp_path, 'mpi_function.py', MPI_FUNCTION_DRIVER)
    raptor = {'raptor_config': {'masters': [{'ranks': 1, 'workers': [
        {'ranks': 3, 'worker_type': 'MPIWorker'}]}]}}
    started = time.monotonic()
    job, out = submitted_job(cluster, env, tmp_path,
                             ['--submit', 'slurm', '--nodes', 2, '--walltime', WALLTIME,
                              '--resources', json.dumps(raptor), driver])
    report['b: MPIWorker function task (s)'] = round(time.monotonic() - started, 1)
    # exit status 1: the task that asks for too many ranks failed, as it should
    assert job.exit_code == '1:0', f'{job.state} {job.exit_code}\n{out[-4000:]}'
    assert 'backend RadicalExecutionBackend: 2 done, 1 failed, 0 cancelled' in out, out[-4000:]
    result = json_line(out, 'MPI-FUNCTION')
    report['b: MPI function ranks -> node'] = dict(enumerate(result['nodes']))
    assert result['size'] == 3 and result['rank'] == 0      # rank 0's return value
    assert result['sum'] == 6                                # 1+2+3 over the task's ranks
    assert set(result['nodes']) == {'n1', 'n2'}              # the worker spans both nodes
    assert json_line(out, 'SINGLE') in ('n1', 'n2')          # a 1-rank task there too
    assert json_line(out, 'TOO-MANY-RANKS') == (
        "function task 'allreduce' asks for 4 ranks, but worker 0 of RAPTOR master 0 is an "
        "MPIWorker of 3 ranks: every worker in raptor_config must be an MPIWorker of at least "
        "4 ranks (RADICAL-Pilot hands a task to any worker)")


# ------------------------------------------ c. RAPTOR workers on every node

def test_raptor_workers_on_three_nodes_run_a_thousand_function_tasks(cluster, env, tmp_path,
                                                                    report):
    driver = write(tmp_path, 'raptor.py', RAPTOR_DRIVER)
    # the master takes a core of n1; five one-core workers fill n1, n2 and n3
    raptor = {'raptor_config': {'masters': [{'ranks': 1, 'workers': [{'ranks': 1}] * 5}]}}
    started = time.monotonic()
    job, out = submitted_job(cluster, env, tmp_path,
                             ['--submit', 'slurm', '--nodes', 3, '--walltime', WALLTIME,
                              '--resources', json.dumps(raptor), driver, RAPTOR_TASKS])
    report['c: RAPTOR 1000 function tasks, job (s)'] = round(time.monotonic() - started, 1)
    assert job.exit_code == '0:0', f'{job.state} {job.exit_code}\n{out[-4000:]}'
    per_node = json_line(out, 'RAPTOR-TASKS-PER-NODE')
    report['c: RAPTOR tasks per node'] = per_node
    report['c: RAPTOR tasks (s)'] = json_line(out, 'RAPTOR-SECONDS')
    assert set(per_node) == {'n1', 'n2', 'n3'}, per_node
    assert sum(per_node.values()) == RAPTOR_TASKS


# ----------------------------------------------------- d. Dask on SLURM

def dask_worker_jobs(cluster, env):
    out = cluster.run(['squeue', '-h', '-o', '%i %j'], env=env)
    return [line.split()[0] for line in out.splitlines() if 'dask-worker' in line]


async def test_dask_workers_as_slurm_jobs_on_two_nodes(cluster, env, tmp_path, monkeypatch,
                                                      report):
    require('dask_jobqueue', 'jobqueue')
    from radical.asyncflow import DaskExecutionBackend, WorkflowEngine
    for key in ('SLURM_CONF', 'PATH', 'OMPI_MCA_btl'):       # sbatch/scancel of this cluster
        monkeypatch.setenv(key, env[key])
    started = time.monotonic()
    backend = await DaskExecutionBackend({
        'cluster': 'slurm', 'jobs': 2, 'cores': 2, 'memory': '1GB', 'walltime': '00:10:00',
        'log_directory': str(tmp_path / 'logs'), 'local_directory': str(tmp_path / 'scratch'),
        'startup_timeout': PILOT_TIMEOUT})
    engine = None
    try:
        report['d: 2 Dask worker jobs up (s)'] = round(time.monotonic() - started, 1)
        client = backend.client
        worker_nodes = await client.run(lambda: os.environ.get('SLURMD_NODENAME'))
        pids = await client.run(os.getpid)
        job_ids = dask_worker_jobs(cluster, env)
        report['d: Dask worker -> node'] = worker_nodes
        assert len(job_ids) == 2, job_ids
        assert len(set(worker_nodes.values())) == 2, worker_nodes   # two distinct nodes
        assert set(worker_nodes.values()) <= {'n1', 'n2', 'n3', 'n4'}

        engine = await WorkflowEngine.create(backend=backend, work_dir=str(tmp_path))

        @engine.executable_task
        async def where(worker):
            return 'echo "$SLURMD_NODENAME"'

        @engine.function_task
        async def collect(*outputs):
            return sorted(out.strip() for out in outputs)

        @engine.executable_task
        async def summarize(nodes):
            return f'echo "{len(nodes)} tasks on {",".join(sorted(set(nodes)))}"'

        # one command pinned to each worker, then a function and a command after them
        outputs = [where(addr, task_description={'workers': [addr]}) for addr in worker_nodes]
        nodes = collect(*outputs)
        line = (await summarize(nodes)).strip()
        assert await nodes == sorted(worker_nodes.values())
        assert line == f'2 tasks on {",".join(sorted(set(worker_nodes.values())))}'
        workers = []
        for pid in pids.values():
            proc = psutil.Process(pid)
            workers += [proc, *([psutil.Process(proc.ppid())] if proc.ppid() > 1 else [])]
    finally:
        if engine is not None:
            await engine.shutdown()
        else:
            await backend.shutdown()
    report['d: Dask on SLURM, all (s)'] = round(time.monotonic() - started, 1)
    # the worker jobs are cancelled and their processes (workers, nannies) gone
    deadline = time.monotonic() + 60
    while dask_worker_jobs(cluster, env) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert dask_worker_jobs(cluster, env) == []
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == [], [p.pid for p in alive]
    for job_id in job_ids:
        assert cluster.job(job_id).done


async def test_dask_worker_jobs_that_do_not_start_are_a_clear_error_and_cancelled(
        cluster, env, tmp_path, monkeypatch):
    require('dask_jobqueue', 'jobqueue')
    from radical.asyncflow import DaskExecutionBackend
    from radical.asyncflow.errors import BackendError
    for key in ('SLURM_CONF', 'PATH'):
        monkeypatch.setenv(key, env[key])
    # five two-core jobs on four two-core nodes: one waits in the queue
    with pytest.raises(BackendError, match=r'^DaskExecutionBackend: 4 of 5 Dask workers of 5 '
                                           r'SLURM job\(s\) (\d+, ){4}\d+ connected within '
                                           r'20 s \(startup_timeout\)'):
        await DaskExecutionBackend({
            'cluster': 'slurm', 'jobs': 5, 'cores': 2, 'memory': '1GB',
            'log_directory': str(tmp_path / 'logs'),
            'local_directory': str(tmp_path / 'scratch'), 'startup_timeout': 20})
    deadline = time.monotonic() + 60
    while dask_worker_jobs(cluster, env) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert dask_worker_jobs(cluster, env) == []


# ----------------------------------------------------- e. PBS through qsub

@pytest.fixture
def qsub():
    if shutil.which('qsub') is None:
        if in_ci():
            pytest.fail('CI must run the PBS test: qsub (slurm-wlm-torque) is missing')
        pytest.skip('qsub (slurm-wlm-torque) is not installed: run bash tests/setup_system.sh')


def test_pbs_script_for_two_nodes_through_qsub_runs_tasks_on_both(cluster, env, tmp_path,
                                                                 report, qsub):
    driver = write(tmp_path, 'pbs_nodes.py', PBS_DRIVER)
    started = time.monotonic()
    proc = subprocess.run([*CLI, '--submit', 'pbs', '--nodes', '2', '--walltime',
                           str(WALLTIME), str(driver)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    try:
        job = cluster.wait_job(job_id, RP_JOB_TIMEOUT)
    finally:
        if not cluster.job(job_id).done:
            cluster.run(['scancel', job_id], check=False)
    report['e: --submit pbs --nodes 2 (s)'] = round(time.monotonic() - started, 1)
    out_file = tmp_path / 'pbs_nodes.out'
    out = out_file.read_text() if out_file.exists() else '(no output file)'
    assert job.exit_code == '0:0', f'{job.state} {job.exit_code}\n{out[-4000:]}'
    job_nodes = cluster.run(['scontrol', 'show', 'hostnames', job.fields['NodeList']],
                            env=env).split()
    assert len(job_nodes) == 2                                     # '#PBS -l select=2'
    tasks = re.findall(r'^TASK (\d) (n\d)$', out, flags=re.M)
    assert len(tasks) == 8, out[-4000:]
    per_node = counts(t[1] for t in tasks)
    report['e: PBS job tasks per node'] = per_node
    assert set(per_node) == set(job_nodes), (per_node, job_nodes)


# --------------------------------------- f. two pilots: one lost, one replaced

#: A login-node driver with two one-node pilots, each a SLURM job: tasks spread
#: over both; once four long tasks run, the test cancels the first pilot's job.
TWO_PILOTS_DRIVER = textwrap.dedent('''
    import asyncio, json, sys
    from radical.asyncflow import RadicalExecutionBackend, WorkflowEngine

    PILOT = {'resource': 'asyncflow.slurm', 'cores': 2, 'runtime': 15}

    async def main():
        backend = await RadicalExecutionBackend([PILOT, PILOT])
        engine = await WorkflowEngine.create(backend=backend, journal='campaign.db')
        print('PILOTS', json.dumps([p.uid for p in backend.pilots]), flush=True)

        @engine.executable_task
        async def where(i):
            return 'echo "$SLURMD_NODENAME $RP_PILOT_ID"'

        @engine.executable_task(retries=1, retry_backoff=0)
        async def resilient(i):
            return 'sleep 45; echo "$SLURMD_NODENAME $RP_PILOT_ID"'

        @engine.executable_task
        async def fragile(i):
            return 'sleep 45; echo "$SLURMD_NODENAME $RP_PILOT_ID"'

        spread = await asyncio.gather(*[where(i) for i in range(8)])
        print('SPREAD', json.dumps([s.split() for s in spread]), flush=True)
        # round robin: two resilient tasks on each pilot, the fragile one on the first
        long = [resilient(i) for i in range(4)] + [fragile(0, task_description={'pilot': 0})]
        while engine.state_counts()['RUNNING'] < 4:
            await asyncio.sleep(0.5)
        print('RUNNING', flush=True)
        outcome = await asyncio.gather(*long, return_exceptions=True)
        print('RESILIENT', json.dumps([str(o).split() for o in outcome[:4]]), flush=True)
        print('FRAGILE', json.dumps(str(outcome[4]).splitlines()[:2]), flush=True)
        print('LOST', json.dumps(backend.lost_pilots), flush=True)
        await engine.shutdown()

    asyncio.run(main())
''')


def pilot_jobs(cluster):
    """{SLURM job id: its node} of the running jobs."""
    lines = cluster.run(['squeue', '-h', '-t', 'R', '-o', '%i %N']).split('\n')
    return dict(line.split() for line in lines if line.strip())


def test_two_pilots_one_lost_mid_run(cluster, env, tmp_path, report):
    driver = write(tmp_path, 'two_pilots.py', TWO_PILOTS_DRIVER)
    started = time.monotonic()
    proc = subprocess.Popen([*CLI, str(driver)], env=env, cwd=tmp_path,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    lines, spread = [], []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith('SPREAD'):
                spread = json.loads(line.split(' ', 1)[1])
            if line.startswith('RUNNING'):
                # the first pilot's node is where its tasks ran
                first = json.loads(next(l for l in lines if l.startswith('PILOTS'))
                                   .split(' ', 1)[1])[0]
                node = next(n for n, p in spread if p == first)
                job = next(j for j, n in pilot_jobs(cluster).items() if n == node)
                cluster.run(['scancel', job])
        proc.wait(RP_JOB_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    out = ''.join(lines)
    pilots = json_line(out, 'PILOTS')
    assert {p for _, p in spread} == set(pilots), out[-4000:]       # spread over both
    assert json_line(out, 'LOST') == [pilots[0]], out[-4000:]
    # every resilient task finished on the surviving pilot: two ran there from the
    # start, the two of the lost pilot ran there again
    resilient = json_line(out, 'RESILIENT')
    assert [p for _, p in resilient] == [pilots[1]] * 4, out[-4000:]
    fragile = ' '.join(json_line(out, 'FRAGILE'))
    assert f'pilot {pilots[0]} on asyncflow.slurm ended' in fragile, out[-4000:]
    report['f: lost pilot'] = {'spread': counts(p for _, p in spread),
                               'resilient ran on': counts(p for _, p in resilient),
                               'fragile': fragile[:160],
                               'wall s': round(time.monotonic() - started, 1)}


#: Two pilots of two minutes each with replace_pilots=True, and two chains of
#: steps that need about four minutes: the campaign outlives both pilots.
REPLACED_PILOTS_DRIVER = textwrap.dedent('''
    import asyncio, json
    from radical.asyncflow import RadicalExecutionBackend, WorkflowEngine

    PILOT = {'resource': 'asyncflow.slurm', 'cores': 2, 'runtime': 2}

    async def main():
        backend = await RadicalExecutionBackend([PILOT, PILOT], replace_pilots=True)
        engine = await WorkflowEngine.create(backend=backend)
        first = [p.uid for p in backend.pilots]

        @engine.executable_task(retries=3, retry_backoff=0)
        async def step(chain, i, *after):
            return 'sleep 15; echo "$SLURMD_NODENAME $RP_PILOT_ID"'

        chains = []
        for chain in range(2):
            last = None
            for i in range(14):
                last = step(chain, i) if last is None else step(chain, i, last)
                chains.append(last)
        ran = [out.split() for out in await asyncio.gather(*chains)]
        print('FIRST', json.dumps(first), flush=True)
        print('RAN', json.dumps(ran), flush=True)
        print('LOST', json.dumps(backend.lost_pilots), flush=True)
        print('ALL', json.dumps([p.uid for p in backend.pilots]), flush=True)
        await engine.shutdown()

    asyncio.run(main())
''')


def test_pilots_at_their_runtime_are_replaced(cluster, env, tmp_path, report):
    driver = write(tmp_path, 'replaced.py', REPLACED_PILOTS_DRIVER)
    started = time.monotonic()
    proc = subprocess.run([*CLI, str(driver)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=RP_JOB_TIMEOUT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    first, ran = json_line(out, 'FIRST'), json_line(out, 'RAN')
    lost, every = json_line(out, 'LOST'), json_line(out, 'ALL')
    assert set(first) <= set(lost), out[-4000:]              # both reached their runtime
    replacements = [p for p in every if p not in first]
    assert replacements, out[-4000:]
    assert len(ran) == 28 and all(len(r) == 2 for r in ran), out[-4000:]
    assert {p for _, p in ran} & set(replacements), out[-4000:]   # went on on the new ones
    report['f: replaced pilots'] = {'pilots': every, 'lost': lost,
                                    'steps per pilot': counts(p for _, p in ran),
                                    'wall s': round(time.monotonic() - started, 1)}
