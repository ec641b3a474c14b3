"""radical-asyncflow-run on a real one-node SLURM cluster (see slurm_cluster.py).

* a driver submitted with ``--submit slurm`` runs inside the allocation, on a
  RADICAL-Pilot pilot that fills it, and its tasks are launched with srun;
* a driver on the "login node" with ``--backend radical`` and the
  ``asyncflow.slurm`` resource gets its pilot as a SLURM job;
* the walltime warning (``--signal=B:USR1@S``) and ``scancel --signal=USR1|TERM
  --batch`` stop a run in order with status 128+signal; the same script,
  submitted again, resumes it from the journal;
* a PBS script goes through ``qsub`` (Debian's slurm-wlm-torque: PBS commands
  on top of SLURM) and stops itself before the walltime (``--stop-after``).

Every pilot run is bounded: the job's walltime, the pilot start-up timeout
(``RADICAL_ASYNCFLOW_PILOT_TIMEOUT``) and the test's own wait.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from slurm_cluster import in_ci

pytestmark = pytest.mark.slurm

CLI = [sys.executable, '-m', 'radical.asyncflow.cli']
#: Seconds a pilot may take to become active, and a whole RP job to finish.
PILOT_TIMEOUT = 150
RP_JOB_TIMEOUT = 400
#: Seconds a job without a pilot may take.
JOB_TIMEOUT = 120

#: Executable tasks that report where srun put them, and a function task.
TASKS_DRIVER = textwrap.dedent('''
    import asyncio, os
    from radical.asyncflow import WorkflowEngine

    async def main():
        engine = await WorkflowEngine.create()

        @engine.executable_task
        async def where(i):
            return f'echo "TASK {i} job=$SLURM_JOB_ID step=$SLURM_STEP_ID host=$(hostname)"'

        @engine.function_task
        async def total(*outputs):
            return len(outputs)

        outputs = [where(i) for i in range(4)]
        print('TOTAL', await total(*outputs))
        for out in await asyncio.gather(*outputs):
            print(out.strip())
        await engine.shutdown()

    asyncio.run(main())
''')

#: A chain of N steps of PAUSE seconds; each appends to ran.log when done.
CHAIN_DRIVER = textwrap.dedent('''
    import asyncio, os, sys
    from radical.asyncflow import WorkflowEngine

    N, PAUSE = int(sys.argv[1]), float(sys.argv[2])
    LOG = os.path.join(os.getcwd(), 'ran.log')

    async def main():
        engine = await WorkflowEngine.create()

        @engine.executable_task
        async def step(i, *after):
            return f'sleep {PAUSE}; echo "step {i} job=$SLURM_JOB_ID" >> {LOG}'

        last = None
        for i in range(N):
            last = step(i) if last is None else step(i, last)
        await last
        print('CHAIN DONE', flush=True)
        await engine.shutdown()

    asyncio.run(main())
''')


@pytest.fixture
def env(slurm_cluster, tmp_path):
    """A client of the test cluster; RP configs in tmp_path, not in ~/.radical."""
    return slurm_cluster.client_env(str(tmp_path / 'radical-config'), PILOT_TIMEOUT)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(args, env, cwd, timeout=60):
    return subprocess.run([*CLI, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def submit(args, env, cwd):
    """Run ``radical-asyncflow-run --submit ...``; the job id it prints."""
    proc = cli(args, env, cwd)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    assert re.fullmatch(r'\d+', job_id), proc.stdout
    return job_id


def output_of(path):
    return path.read_text() if path.exists() else '(no output file)'


def wait_for_lines(path, n, timeout, cluster, job_id):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        job = cluster.job(job_id)
        if job.done:
            break
        time.sleep(0.2)
    pytest.fail(f'{path.name} did not reach {n} lines; job {job_id}: '
                f'{cluster.job(job_id).state}')


def timed(record, name):
    """Context: adds ``name``'s wall time (s) to the module's record."""
    class Timer:
        def __enter__(self):
            self.start = time.monotonic()

        def __exit__(self, *exc):
            record[name] = round(time.monotonic() - self.start, 1)
    return Timer()


@pytest.fixture(scope='module')
def timings(slurm_cluster):
    """Wall times of the scenarios, printed at the end of the module (pytest -s)."""
    record = {'cluster bring-up': round(slurm_cluster.startup_seconds, 1)}
    yield record
    print('\nSLURM scenario wall times (s):', record)


def no_pilot_processes_left(workdir, timeout=30):
    """Wait until no process runs out of ``workdir`` (agent, bootstrap, tasks)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for proc in psutil.process_iter(['cmdline']):
            try:
                if any(str(workdir) in arg for arg in proc.info['cmdline'] or ()):
                    left.append(proc)
            except psutil.NoSuchProcess:
                continue
        if not left or time.monotonic() > deadline:
            return [p.pid for p in left]
        time.sleep(0.5)


# ----------------------------------------------------------------- cluster

def test_the_cluster_runs_srun_steps(slurm_cluster, env, tmp_path):
    out = slurm_cluster.run(['srun', '-N1', '-n1', 'sh', '-c', 'echo $SLURM_JOB_ID/$SLURM_STEP_ID'],
                            env=env, timeout=60)
    assert re.fullmatch(r'\d+/0', out.strip()), out


# ----------------------------------------------- 1. a driver in the allocation

@pytest.mark.rp
def test_submitted_driver_runs_on_a_pilot_in_its_allocation_with_srun(
        slurm_cluster, env, tmp_path, timings):
    driver = write(tmp_path, 'tasks.py', TASKS_DRIVER)
    with timed(timings, '1: --submit slurm, pilot in the allocation'):
        job_id = submit(['--submit', 'slurm', '--walltime', '10', driver], env, tmp_path)
        job = slurm_cluster.wait_job(job_id, RP_JOB_TIMEOUT)
    out = output_of(tmp_path / f'tasks.{job_id}.out')
    assert job.exit_code == '0:0', f'{job.state} {job.exit_code}\n{out}'
    assert f'in SLURM job {job_id}: 1 node(s) {slurm_cluster.node}, ' \
           f'{slurm_cluster.cpus} cores' in out
    assert 'one pilot on asyncflow.slurm' in out
    assert 'TOTAL 4' in out
    tasks = re.findall(r'TASK (\d) job=(\d*) step=(\d*) host=(\S+)', out)
    assert sorted(t[0] for t in tasks) == ['0', '1', '2', '3'], out
    assert {t[1] for t in tasks} == {job_id}, out             # inside the driver's job
    steps = [t[2] for t in tasks]
    assert all(steps) and len(set(steps)) == 4, out           # each its own srun step
    assert {t[3] for t in tasks} == {slurm_cluster.node}


# ---------------------------------------------- 2. a pilot job from the login node

@pytest.mark.rp
def test_login_node_driver_gets_its_pilot_as_a_slurm_job(
        slurm_cluster, env, tmp_path, timings):
    driver = write(tmp_path, 'tasks.py', TASKS_DRIVER)
    resources = f'{{"resource": "asyncflow.slurm", "cores": {slurm_cluster.cpus}, "runtime": 10}}'
    with timed(timings, '2: login node, pilot submitted through SLURM'):
        proc = subprocess.Popen([*CLI, '--backend', 'radical', '--resources', resources,
                                 str(driver)], env=env, cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=RP_JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f'the driver did not finish in {RP_JOB_TIMEOUT} s:\n{out[-4000:]}')
    assert proc.returncode == 0, out[-4000:]
    tasks = re.findall(r'TASK (\d) job=(\d*) step=(\d*) host=(\S+)', out)
    assert len(tasks) == 4, out[-4000:]
    pilot_jobs = {t[1] for t in tasks}
    assert len(pilot_jobs) == 1 and pilot_jobs != {''}, out  # all in the pilot's job
    assert all(t[2] for t in tasks), out                     # srun steps of it
    (pilot_job,) = pilot_jobs
    # the pilot job ends with the driver
    deadline = time.monotonic() + 60
    while not slurm_cluster.job(pilot_job).done:
        assert time.monotonic() < deadline, f'pilot job {pilot_job} outlived the driver'
        time.sleep(1)
    assert no_pilot_processes_left(tmp_path) == []


# ------------------------------------------ 3. walltime warning, scancel, resume

def chain_job(tmp_path, env, *extra, steps=8, pause=1.0):
    driver = write(tmp_path, 'chain.py', CHAIN_DRIVER)
    return submit(['--submit', 'slurm', *extra, '--backend', 'concurrent', driver,
                   steps, pause], env, tmp_path)


def ran(tmp_path):
    log = tmp_path / 'ran.log'
    return re.findall(r'step (\d+) job=(\d+)', log.read_text()) if log.exists() else []


@pytest.mark.parametrize('sig', ['USR1', 'TERM'])
def test_scancel_signal_stops_in_order_and_the_same_script_resumes(
        slurm_cluster, env, tmp_path, timings, sig):
    with timed(timings, f'3: scancel --signal={sig} --batch, then resume'):
        job_id = chain_job(tmp_path, env, '--walltime', '10')
        wait_for_lines(tmp_path / 'ran.log', 3, JOB_TIMEOUT, slurm_cluster, job_id)
        slurm_cluster.run(['scancel', f'--signal={sig}', '--batch', job_id], env=env)
        job = slurm_cluster.wait_job(job_id, JOB_TIMEOUT)
        out = output_of(tmp_path / f'chain.{job_id}.out')
        status = 128 + getattr(signal, f'SIG{sig}')
        assert job.exit_code == f'{status}:0', f'{job.state} {job.exit_code}\n{out}'
        assert f'received SIG{sig}' in out and f'exit status {status}' in out
        assert 'Traceback' not in out
        first = ran(tmp_path)
        assert 3 <= len(first) < 8

        again = slurm_cluster.run(['sbatch', '--parsable', str(tmp_path / 'chain.sbatch')],
                                  env=env, cwd=tmp_path).strip()
        job = slurm_cluster.wait_job(again, JOB_TIMEOUT)
    out = output_of(tmp_path / f'chain.{again}.out')
    assert job.exit_code == '0:0', out
    assert 'CHAIN DONE' in out
    steps = ran(tmp_path)
    assert sorted(int(s) for s, _ in steps) == list(range(8)), steps   # each step once
    assert {j for _, j in steps[len(first):]} == {again}


def test_walltime_warning_signal_stops_before_the_walltime(
        slurm_cluster, env, tmp_path, timings):
    # --signal=B:USR1@60 on a two-minute job: SLURM signals 60 s before the
    # end, give or take its 30 s event resolution, so 30-90 s after the start:
    # some of the 300 one-second steps have run by then, and not all.
    with timed(timings, '3: --signal=B:USR1@60 before a 2 min walltime'):
        job_id = chain_job(tmp_path, env, '--walltime', '2', '--signal-before', '60',
                           steps=300, pause=1.0)
        job = slurm_cluster.wait_job(job_id, 2 * JOB_TIMEOUT)
    out = output_of(tmp_path / f'chain.{job_id}.out')
    assert job.exit_code == '138:0', f'{job.state} {job.exit_code}\n{out}'
    assert job.state == 'FAILED'                  # not TIMEOUT: it stopped by itself
    assert 'received SIGUSR1' in out
    assert 0 < len(ran(tmp_path)) < 300


@pytest.mark.rp
def test_sigterm_stops_a_pilot_run_in_order(slurm_cluster, env, tmp_path, timings):
    driver = write(tmp_path, 'chain.py', CHAIN_DRIVER)
    with timed(timings, '3: scancel --signal=TERM --batch, pilot in the allocation'):
        job_id = submit(['--submit', 'slurm', '--walltime', '10', driver, 200, 1], env,
                        tmp_path)
        wait_for_lines(tmp_path / 'ran.log', 2, RP_JOB_TIMEOUT, slurm_cluster, job_id)
        slurm_cluster.run(['scancel', '--signal=TERM', '--batch', job_id], env=env)
        job = slurm_cluster.wait_job(job_id, JOB_TIMEOUT)
    out = output_of(tmp_path / f'chain.{job_id}.out')
    assert job.exit_code == '143:0', f'{job.state} {job.exit_code}\n{out}'
    assert 'received SIGTERM' in out and 'Traceback' not in out
    assert no_pilot_processes_left(tmp_path) == []


# ------------------------------------------------------------------- PBS

@pytest.fixture
def qsub():
    if shutil.which('qsub') is None:
        if in_ci():
            pytest.fail('CI must run the PBS test: qsub (slurm-wlm-torque) is missing')
        pytest.skip('qsub (slurm-wlm-torque) is not installed: run bash tests/setup_system.sh')


def test_pbs_script_through_qsub_stops_before_its_walltime_and_resumes(
        slurm_cluster, env, tmp_path, timings, qsub):
    driver = write(tmp_path, 'chain.py', CHAIN_DRIVER)
    with timed(timings, 'PBS: qsub, --stop-after, resume'):
        # walltime 1 min, warning 50 s before: the runner stops itself after 10 s
        proc = cli(['--submit', 'pbs', '--walltime', '1', '--signal-before', '50',
                    '--backend', 'concurrent', driver, 30, 1], env, tmp_path)
        assert proc.returncode == 0, proc.stderr
        job_id = proc.stdout.strip()
        job = slurm_cluster.wait_job(job_id, JOB_TIMEOUT)
        out = output_of(tmp_path / 'chain.out')
        assert job.exit_code == '138:0', f'{job.state} {job.exit_code}\n{out}'
        assert 'received SIGUSR1' in out
        first = ran(tmp_path)
        assert 0 < len(first) < 30

        for attempt in range(5):      # submit the same script until the chain is done
            again = subprocess.run(['qsub', str(tmp_path / 'chain.pbs')], env=env,
                                   cwd=tmp_path, capture_output=True, text=True,
                                   timeout=60).stdout.strip()
            job = slurm_cluster.wait_job(again, JOB_TIMEOUT)
            if job.exit_code != '138:0':
                break
    # qsub of the emulation does not read '#PBS -o': its default output name
    out = output_of(tmp_path / f'chain.pbs.o{again}')
    assert job.exit_code == '0:0', out
    assert 'CHAIN DONE' in out
    steps = ran(tmp_path)
    assert sorted(int(s) for s, _ in steps) == list(range(30)), steps
