"""radical-asyncflow-run: settings and their precedence, exit statuses, bad input,
batch scripts (--submit with --dry-run or stand-in sbatch/qsub; the real SLURM
cluster is in test_slurm.py)."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CLI = [sys.executable, '-m', 'radical.asyncflow.cli']
VARS = ('RADICAL_ASYNCFLOW_BACKEND', 'RADICAL_ASYNCFLOW_RESOURCES', 'RADICAL_ASYNCFLOW_JOURNAL',
        'RADICAL_ASYNCFLOW_CONFIG')

#: Prints what the runner configured (the settings of the run it hands the
#: driver), then runs one task on it (a dry run when the configured backend
#: is radical, which would start a pilot).
SHOW_DRIVER = textwrap.dedent('''
    import asyncio, json, os, sys
    from radical.asyncflow import WorkflowEngine
    from radical.asyncflow.core.context import RunContext

    settings = RunContext.current().settings
    choice = settings.backends[0]
    print('CONFIG ' + json.dumps({'backend': choice.kind, 'resources': choice.resources,
                                  'journal': settings.journal,
                                  'PBS_NODEFILE': os.environ.get('PBS_NODEFILE'),
                                  'cwd': os.getcwd(), 'argv': sys.argv[1:]}))

    async def main():
        dry = choice.kind == 'radical'
        engine = await WorkflowEngine.create(dry_run=dry)

        @engine.function_task
        async def one():
            return 1

        print('BACKEND', type(engine.backend).__name__, await one())
        await engine.shutdown()

    asyncio.run(main())
''')

OUTCOME_DRIVER = textwrap.dedent('''
    import asyncio, sys
    from radical.asyncflow import WorkflowEngine

    async def main():
        engine = await WorkflowEngine.create()

        @engine.executable_task
        async def command(cmd):
            return cmd

        what = sys.argv[1]
        if what == 'fail':
            try:
                await command('exit 3')
            except Exception:
                pass
        elif what == 'raise':
            raise ValueError('the driver gave up')
        elif what == 'sleep':
            print('SLEEPING', flush=True)
            await command('sleep 30')
        else:
            await command('true')
        await engine.shutdown()

    asyncio.run(main())
''')


@pytest.fixture
def env(tmp_path):
    """A clean environment: no runner settings, no batch job, profiling off."""
    environ = {k: v for k, v in os.environ.items()
               if k not in VARS and not k.startswith(('SLURM_', 'PBS_'))}
    environ['RADICAL_ASYNCFLOW_PROFILE'] = 'False'
    environ['RADICAL_ASYNCFLOW_PROGRESS'] = '0'
    environ['RADICAL_CONFIG_USER_DIR'] = str(tmp_path / 'radical-config')
    return environ


@pytest.fixture
def show(tmp_path):
    path = tmp_path / 'show.py'
    path.write_text(SHOW_DRIVER)
    return path


def run(args, env, cwd, timeout=60):
    return subprocess.run([*CLI, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def shown(proc):
    """What the show driver printed: (its CONFIG dict, the backend class)."""
    assert proc.returncode == 0, proc.stderr
    config = backend = None
    for line in proc.stdout.splitlines():
        if line.startswith('CONFIG '):
            config = json.loads(line[len('CONFIG '):])
        elif line.startswith('BACKEND '):
            backend = line.split()[1]
    return config, backend


def slurm_job_env(env, **extra):
    """A synthetic SLURM job: 2 nodes of 8 cores, 20 minutes left."""
    return {**env, 'SLURM_JOB_ID': '99', 'SLURM_JOB_NODELIST': 'cn[01-02]',
            'SLURM_JOB_CPUS_PER_NODE': '8(x2)', 'SLURM_CPUS_ON_NODE': '8',
            'SLURM_JOB_END_TIME': str(int(time.time()) + 1200), **extra}


# ----------------------------------------------------------- precedence

def test_default_outside_an_allocation_is_the_concurrent_backend(show, env, tmp_path):
    config, backend = shown(run([show, 'x', '--y'], env, tmp_path))
    assert config['backend'] == 'concurrent'
    assert backend == 'ConcurrentExecutionBackend'
    assert config['argv'] == ['x', '--y']         # options after the driver are its own


def test_inside_a_slurm_allocation_the_default_is_a_pilot_filling_it(show, env, tmp_path):
    proc = run([show], slurm_job_env(env), tmp_path)
    config, _ = shown(proc)
    assert config['backend'] == 'radical'
    resources = config['resources']
    assert resources['resource'] == 'asyncflow.slurm'
    assert resources['cores'] == 16 and resources['gpus'] == 0
    assert 17 <= resources['runtime'] <= 19
    assert 'SLURM job 99: 2 node(s) cn01,cn02, 16 cores' in proc.stderr


def test_inside_a_pbs_allocation_the_default_is_a_pilot_filling_it(show, env, tmp_path):
    nodefile = tmp_path / 'nodefile'
    nodefile.write_text('n1\n' * 4 + 'n2\n' * 4)
    config, _ = shown(run([show], {**env, 'PBS_JOBID': '5.pbs', 'PBS_NODEFILE': str(nodefile),
                                   'PBS_WALLTIME': '3600'}, tmp_path))
    resources = config['resources']
    assert resources == {'resource': 'asyncflow.pbs', 'cores': 8, 'gpus': 0, 'runtime': 59}


def test_inside_a_pbs_pro_allocation_the_pilot_sees_every_core(show, env, tmp_path):
    nodefile = tmp_path / 'nodefile'
    nodefile.write_text('x1\nx2\n')             # PBS Pro: one line per node
    config, _ = shown(run([show], {**env, 'PBS_JOBID': '6.pbs', 'PBS_NODEFILE': str(nodefile),
                                   'NCPUS': '4'}, tmp_path))
    assert config['resources']['cores'] == 8
    with open(config['PBS_NODEFILE']) as handle:
        assert handle.read().split() == ['x1'] * 4 + ['x2'] * 4


def test_given_resources_refine_the_detected_pilot(show, env, tmp_path):
    config, _ = shown(run(['--resources', '{"runtime": 5, "queue": "debug"}', show],
                          slurm_job_env(env), tmp_path))
    resources = config['resources']
    assert resources['runtime'] == 5 and resources['queue'] == 'debug'
    assert resources['cores'] == 16


def test_a_named_resource_replaces_the_detected_pilot(show, env, tmp_path):
    config, _ = shown(run(['--resources', '{"resource": "local.localhost", "cores": 2}', show],
                          slurm_job_env(env), tmp_path))
    assert config['resources'] == {
        'resource': 'local.localhost', 'cores': 2}


def test_another_backend_inside_an_allocation(show, env, tmp_path):
    config, backend = shown(run(['--backend', 'concurrent', show], slurm_job_env(env),
                                tmp_path))
    assert backend == 'ConcurrentExecutionBackend'
    assert config['resources'] == {}


def write_config(tmp_path, text):
    path = tmp_path / 'run.toml'
    path.write_text(textwrap.dedent(text))
    return path


def test_config_file_settings(show, env, tmp_path):
    cfg = write_config(tmp_path, '''
        backend = "concurrent"
        work_dir = "wd"
        resume = "wd/campaign.journal"
        [resources]
        max_workers = 3
        executor = "thread"
    ''')
    config, backend = shown(run(['--config', cfg, show], env, tmp_path))
    assert backend == 'ConcurrentExecutionBackend'
    assert config['resources'] == {'max_workers': 3,
                                                                'executor': 'thread'}
    assert config['cwd'] == str(tmp_path / 'wd')
    assert config['journal'] == str(tmp_path / 'wd' / 'campaign.journal')


def test_config_file_from_the_environment(show, env, tmp_path):
    cfg = write_config(tmp_path, 'backend = "noop"\n')
    _, backend = shown(run([show], {**env, 'RADICAL_ASYNCFLOW_CONFIG': str(cfg)}, tmp_path))
    assert backend == 'NoopExecutionBackend'


def test_precedence_flags_over_environment_over_file(show, env, tmp_path):
    cfg = write_config(tmp_path, '''
        backend = "noop"
        resources = '{"max_workers": 1}'
    ''')
    both = {**env, 'RADICAL_ASYNCFLOW_BACKEND': 'concurrent',
            'RADICAL_ASYNCFLOW_RESOURCES': '{"max_workers": 2}'}
    config, backend = shown(run(['--config', cfg, show], both, tmp_path))   # env over file
    assert backend == 'ConcurrentExecutionBackend'
    assert config['resources'] == {"max_workers": 2}
    config, backend = shown(run(['--config', cfg, '--backend', 'noop', '--resources',
                                 '{"max_workers": 4}', show], both, tmp_path))  # flags
    assert backend == 'NoopExecutionBackend'
    assert config['resources'] == {"max_workers": 4}
    config, _ = shown(run(['--config', cfg, show],
                          {**env, 'RADICAL_ASYNCFLOW_RESOURCES': '{"max_workers": 2}'},
                          tmp_path))          # file backend, env resources
    assert config['backend'] == 'noop'
    assert config['resources'] == {"max_workers": 2}


def test_resources_from_a_json_file(show, env, tmp_path):
    (tmp_path / 'res.json').write_text('{"max_workers": 5}')
    config, _ = shown(run(['--resources', 'res.json', show], env, tmp_path))
    assert config['resources'] == {"max_workers": 5}


#: Prints the engine's backends (name: class) after running one task on each.
BACKENDS_DRIVER = textwrap.dedent('''
    import asyncio
    from radical.asyncflow import WorkflowEngine

    async def main():
        engine = await WorkflowEngine.create()

        @engine.executable_task
        async def where():
            return 'echo ran'

        outputs = [await where(task_description={'backend': name})
                   for name in engine.backends]
        print('BACKENDS', ' '.join(f'{name}:{type(b).__name__}'
                                   for name, b in engine.backends.items()), outputs)
        await engine.shutdown()

    asyncio.run(main())
''')


def test_config_file_declares_several_named_backends(env, tmp_path):
    driver = tmp_path / 'backends.py'
    driver.write_text(BACKENDS_DRIVER)
    cfg = write_config(tmp_path, '''
        [backends.sim]
        type = "concurrent"
        max_workers = 2

        [backends.local]
        type = "concurrent"
        executor = "process"

        [backends.noop]
    ''')
    proc = run(['--config', cfg, driver], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith('BACKENDS'))
    assert line.startswith('BACKENDS sim:ConcurrentExecutionBackend '
                           'local:ConcurrentExecutionBackend noop:NoopExecutionBackend')
    assert "['ran\\n', 'ran\\n', '']" in line
    assert ('backend sim (ConcurrentExecutionBackend), local (ConcurrentExecutionBackend), '
            'noop (NoopExecutionBackend):') in proc.stderr
    # --backend is still the one-backend shortcut, over the file's tables
    proc = run(['--config', cfg, '--backend', 'concurrent', driver], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'BACKENDS concurrent:ConcurrentExecutionBackend' in proc.stdout


def test_several_backends_from_the_environment(env, tmp_path):
    driver = tmp_path / 'backends.py'
    driver.write_text(BACKENDS_DRIVER)
    env['RADICAL_ASYNCFLOW_BACKENDS'] = json.dumps(
        [{'name': 'a', 'type': 'noop'}, {'name': 'b', 'type': 'concurrent',
                                         'resources': {'max_workers': 1}}])
    proc = subprocess.run([sys.executable, str(driver)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 'BACKENDS a:NoopExecutionBackend b:ConcurrentExecutionBackend' in proc.stdout


def test_work_dir_and_resume(show, env, tmp_path):
    config, _ = shown(run(['--work-dir', 'new/dir', '--resume', 'c.journal', show], env,
                          tmp_path))
    assert config['cwd'] == str(tmp_path / 'new' / 'dir')
    assert config['journal'] == str(tmp_path / 'c.journal')
    assert (tmp_path / 'c.journal').exists()


# ---------------------------------------------------------- exit statuses

@pytest.fixture
def outcome(tmp_path):
    path = tmp_path / 'outcome.py'
    path.write_text(OUTCOME_DRIVER)
    return path


@pytest.mark.parametrize('what, status', [('ok', 0), ('fail', 1), ('raise', 1)])
def test_exit_status(outcome, env, tmp_path, what, status):
    proc = run([outcome, what], env, tmp_path)
    assert proc.returncode == status, proc.stderr
    assert f'exit status {status}' in proc.stderr
    if what == 'raise':
        assert 'ValueError: the driver gave up' in proc.stderr


def test_quiet_prints_no_summary(outcome, env, tmp_path):
    proc = run(['--quiet', outcome, 'fail'], env, tmp_path)
    assert proc.returncode == 1
    assert 'radical-asyncflow-run' not in proc.stderr


def test_stop_after_is_an_orderly_sigusr1_stop(outcome, env, tmp_path):
    started = time.monotonic()
    proc = run(['--stop-after', '2', outcome, 'sleep'], env, tmp_path)
    assert proc.returncode == 128 + signal.SIGUSR1, proc.stderr
    assert time.monotonic() - started < 20
    assert 'received SIGUSR1' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_sigterm_exit_status(outcome, env, tmp_path):
    proc = subprocess.Popen([*CLI, str(outcome), 'sleep'], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == 'SLEEPING'
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err


# -------------------------------------------------------------- bad input

NO_ENGINE = 'print("a driver that never creates an engine")\n'

BAD_INPUT = {
    'missing-driver': (['nosuch.py'], "driver 'nosuch.py' does not exist"),
    'never-creates-an-engine': (['noengine.py'], 'never created a WorkflowEngine'),
    'resources-malformed-json': (['--resources', '{cores: 4}', 'show.py'],
                                 '--resources is not valid JSON'),
    'resources-not-an-object': (['--resources', '[4]', 'show.py'],
                                'neither a JSON object nor a file'),
    'resources-missing-file': (['--resources', 'nosuch.json', 'show.py'],
                               "'nosuch.json' is neither a JSON object nor a file"),
    'resources-misspelled-key': (['--resources', '{"max_worker": 4}', 'show.py'],
                                 "the concurrent backend takes no resource 'max_worker' "
                                 "(did you mean 'max_workers'?)"),
    'resources-misspelled-pilot-key': (['--backend', 'radical', '--resources',
                                        '{"cores": 2, "runtim": 5}', 'show.py'],
                                       "takes no resource 'runtim' (did you mean 'runtime'?)"),
    'resources-misspelled-dask-key': (['--backend', 'dask', '--resources', '{"n_worker": 2}',
                                       'show.py'], "(did you mean 'n_workers'?)"),
    'unknown-backend': (['--backend', 'slurm', 'show.py'], "invalid choice: 'slurm'"),
    'walltime-zero': (['--submit', 'slurm', '--walltime', '0', 'show.py'],
                      'must be a positive number of minutes'),
    'walltime-negative': (['--submit', 'slurm', '--walltime', '-5', 'show.py'],
                          'must be a positive number of minutes'),
    'walltime-not-a-number': (['--submit', 'pbs', '--walltime', '1h', 'show.py'],
                              "must be a positive number of minutes, not '1h'"),
    'walltime-infinite': (['--submit', 'pbs', '--walltime', 'inf', 'show.py'],
                          'must be a positive number of minutes'),
    'walltime-missing': (['--submit', 'slurm', 'show.py'], 'needs --walltime'),
    'nodes-zero': (['--submit', 'slurm', '--walltime', '5', '--nodes', '0', 'show.py'],
                   'argument --nodes'),
    'signal-after-walltime': (['--submit', 'slurm', '--walltime', '5', '--signal-before',
                               '300', '--dry-run', 'show.py'], 'less than the walltime'),
    'submit-options-without-submit': (['--nodes', '2', 'show.py'],
                                      '--nodes only apply with --submit'),
    'dry-run-without-submit': (['--dry-run', 'show.py'], '--dry-run goes with --submit'),
    'output-without-submit': (['-o', 'x.sh', 'show.py'], '--output goes with --submit'),
    'unknown-scheduler': (['--submit', 'lsf', '--walltime', '5', 'show.py'],
                          "invalid choice: 'lsf'"),
    'config-missing': (['--config', 'nosuch.toml', 'show.py'],
                       "config file 'nosuch.toml' does not exist"),
    'config-not-toml': (['--config', 'bad.toml', 'show.py'], 'is not valid TOML'),
    'config-unknown-key': (['--config', 'typo.toml', 'show.py'], "unknown setting 'backendz'"),
    'config-backends-not-tables': (['--config', 'flat.toml', 'show.py'],
                                   'backends must be tables [backends.NAME]'),
    'config-backend-and-backends': (['--config', 'both.toml', 'show.py'],
                                    'either backend (and resources) or [backends.NAME]'),
    'config-backend-without-type': (['--config', 'untyped.toml', 'show.py'],
                                    "backend 'gpu'): choose one of"),
    'config-wrong-type': (['--config', 'type.toml', 'show.py'], 'nodes must be a int'),
    'config-unknown-backend': (['--config', 'backend.toml', 'show.py'],
                               "unknown backend 'pbs'"),
    'env-unknown-backend': (['show.py'], "unknown backend 'mpi'"),
}
CONFIG_FILES = {'bad.toml': 'backend = \n', 'typo.toml': 'backendz = "noop"\n',
                'flat.toml': 'backends = "noop"\n',
                'both.toml': 'backend = "noop"\n[backends.x]\ntype = "noop"\n',
                'untyped.toml': '[backends.gpu]\ncores = 4\n',
                'type.toml': '[submit]\nnodes = "two"\n', 'backend.toml': 'backend = "pbs"\n'}


@pytest.mark.parametrize('case', BAD_INPUT)
def test_bad_input_is_a_usage_error(case, show, env, tmp_path):
    args, message = BAD_INPUT[case]
    (tmp_path / 'noengine.py').write_text(NO_ENGINE)
    for name, text in CONFIG_FILES.items():
        (tmp_path / name).write_text(text)
    if case == 'env-unknown-backend':
        env = {**env, 'RADICAL_ASYNCFLOW_BACKEND': 'mpi'}
    proc = run(args, env, tmp_path)
    assert proc.returncode == 2, f'{proc.returncode}\n{proc.stdout}\n{proc.stderr}'
    assert message in proc.stderr, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert 'BACKEND' not in proc.stdout           # the driver did not run


def test_submit_without_sbatch_installed(show, env, tmp_path):
    empty = tmp_path / 'empty-bin'
    empty.mkdir()
    for scheduler, command in (('slurm', 'sbatch'), ('pbs', 'qsub')):
        proc = run(['--submit', scheduler, '--walltime', '10', show],
                   {**env, 'PATH': str(empty)}, tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert f'{command} is not installed' in proc.stderr
        assert 'Traceback' not in proc.stderr


def test_inconsistent_allocation_is_a_usage_error(show, env, tmp_path):
    proc = run([show], {**env, 'SLURM_JOB_ID': '7'}, tmp_path)
    assert proc.returncode == 2
    assert 'SLURM_JOB_NODELIST is not set' in proc.stderr


# ------------------------------------------------------------------- submit

def test_dry_run_prints_the_slurm_script(show, env, tmp_path):
    proc = run(['--submit', 'slurm', '--walltime', '30', '--nodes', '2', '--account', 'abc',
                '--queue', 'debug', '--signal-before', '120', '--dry-run', show, 'arg'],
               env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    for line in ('#SBATCH --nodes=2', '#SBATCH --time=00:30:00',
                 '#SBATCH --signal=B:USR1@120', '#SBATCH --account=abc',
                 '#SBATCH --partition=debug', f'--resume {tmp_path}/show.journal'):
        assert line in script
    assert sorted(os.listdir(tmp_path)) == ['show.py']       # a dry run writes nothing
    # -o FILE writes the script there instead, and prints nothing
    proc = run(['--submit', 'slurm', '--walltime', '30', '--dry-run', '-o', 'jobs/run.sh',
                show], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '' and 'wrote' in proc.stderr and 'not submitted' in proc.stderr
    written = (tmp_path / 'jobs' / 'run.sh').read_text()
    assert '#SBATCH --time=00:30:00' in written and 'sbatch' in written
    assert 'jobs/run.sh' in written                  # the script resubmits itself from there


def test_dry_run_prints_the_pbs_script(show, env, tmp_path):
    proc = run(['--submit', 'pbs', '--walltime', '60', '--dry-run', show], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '#PBS -l walltime=01:00:00' in proc.stdout
    assert '--stop-after 3300' in proc.stdout
    assert not (tmp_path / 'show.pbs').exists()


def test_submit_settings_from_the_config_file(show, env, tmp_path):
    cfg = write_config(tmp_path, '''
        backend = "radical"
        [submit]
        nodes = 3
        walltime = 45
        queue = "big"
        setup = ["module load python/3.11"]
    ''')
    proc = run(['--config', cfg, '--submit', 'slurm', '--dry-run', '--nodes', '4', show],
               env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '#SBATCH --nodes=4' in proc.stdout              # the flag wins
    assert '#SBATCH --time=00:45:00' in proc.stdout
    assert '#SBATCH --partition=big' in proc.stdout
    assert 'module load python/3.11' in proc.stdout
    assert f'--config {cfg}' in proc.stdout


def stand_in(tmp_path, name, job_id):
    bindir = tmp_path / 'bin'
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/{name}.args\necho {job_id}\n')
    exe.chmod(0o755)
    return bindir


@pytest.mark.parametrize('scheduler, command, job_id', [('slurm', 'sbatch', '4711'),
                                                         ('pbs', 'qsub', '12.server')])
def test_submit_prints_the_job_id(show, env, tmp_path, scheduler, command, job_id):
    bindir = stand_in(tmp_path, command, job_id)
    proc = run(['--submit', scheduler, '--walltime', '10', '--work-dir', 'jobs', show],
               {**env, 'PATH': f'{bindir}:{env["PATH"]}'}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == job_id
    script = tmp_path / 'jobs' / f'show.{"sbatch" if scheduler == "slurm" else "pbs"}'
    assert str(script) in (tmp_path / f'{command}.args').read_text()
    assert f'{scheduler.upper()} job {job_id}' in proc.stderr


def test_console_script_is_installed():
    exe = shutil.which('radical-asyncflow-run', path=os.path.dirname(sys.executable))
    assert exe is not None
    proc = subprocess.run([exe, '--help'], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert '--submit' in proc.stdout and 'Exit status' in proc.stdout


# ------------------------------------------------------- the driver's errors

DRIVER_ERRORS = textwrap.dedent('''
    import asyncio, sys
    from radical.asyncflow import WorkflowEngine

    async def main():
        engine = await WorkflowEngine.create()
        what = sys.argv[1]
        if what == 'not-async':
            def plain():
                return 1
            engine.function_task(plain)
        elif what == 'failed-task':
            @engine.executable_task
            async def broken():
                return 'exit 4'

            @engine.function_task
            async def after(x):
                return x

            await after(broken())
        elif what == 'own-error':
            raise ZeroDivisionError("the driver's own bug")
        await engine.shutdown()

    asyncio.run(main())
''')


@pytest.mark.parametrize('what, status, line', [
    ('not-async', 2, "radical-asyncflow-run: error: UsageTypeError: @function_task needs an "
                     "'async def' function: 'main.<locals>.plain' is not one"),
    ('failed-task', 1, "radical-asyncflow-run: error: DependencyFailure: Cannot execute "
                       "'after' due to dependency failure"),
])
def test_radical_asyncflow_errors_are_one_line(what, status, line, env, tmp_path):
    driver = tmp_path / 'errors.py'
    driver.write_text(DRIVER_ERRORS)
    proc = run([driver, what], env, tmp_path)
    assert proc.returncode == status, proc.stderr
    assert line in proc.stderr and 'errors.py, line' in proc.stderr
    assert 'Traceback' not in proc.stderr
    debug = run(['--debug', driver, what], env, tmp_path)
    assert debug.returncode == 1 and 'Traceback' in debug.stderr, debug.stderr


def test_the_drivers_own_error_keeps_its_traceback(env, tmp_path):
    driver = tmp_path / 'errors.py'
    driver.write_text(DRIVER_ERRORS)
    proc = run([driver, 'own-error'], env, tmp_path)
    assert proc.returncode == 1
    assert 'Traceback' in proc.stderr and "ZeroDivisionError: the driver's own bug" in proc.stderr


OWN_BACKEND = textwrap.dedent('''
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

    async def main():
        backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(2))
        engine = await WorkflowEngine.create(backend=backend)

        @engine.executable_task
        async def hello():
            return 'echo ran for real'

        print(await hello(), end='')
        await engine.shutdown()

    asyncio.run(main())
''')


def test_a_chosen_backend_the_driver_does_not_use_is_a_warning(env, tmp_path):
    env.pop('RADICAL_ASYNCFLOW_PROFILE')               # the command's own default
    driver = tmp_path / 'own.py'
    driver.write_text(OWN_BACKEND)
    proc = run(['--backend', 'noop', driver], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'ran for real\n'
    warnings = [l for l in proc.stderr.splitlines() if 'warning' in l]
    assert warnings == ['radical-asyncflow-run: warning: the driver made its own backend, so '
                        'ConcurrentExecutionBackend runs its tasks, not the noop backend '
                        'chosen for it'], proc.stderr
    assert 'backend ConcurrentExecutionBackend: 1 done' in proc.stderr
    summary_file = proc.stderr.split('run summary: ')[1].split(';')[0].strip()
    summary = json.load(open(summary_file))
    assert summary['backend'] == 'ConcurrentExecutionBackend'
    # under the command the profile is on, in the run's own directory
    assert summary['profile'] == os.path.join(os.path.dirname(summary_file),
                                              'radical.asyncflow.prof')
    assert os.path.getsize(summary['profile']) > 0
    # without --backend (the default backend) there is nothing to warn about
    assert 'warning' not in run([driver], env, tmp_path).stderr


EXAMPLES = sorted(p for p in (pathlib.Path(__file__).resolve().parents[2] / 'examples')
                  .glob('*.py'))


#: Examples that show failures: the command's exit status says a task failed.
FAIL_ON_PURPOSE = {'05_failure_handling.py', 'rp_workflow.py', 'rp_raptor_functions.py'}
#: Examples that leave the backend to the command (the others build their own).
CONFIGURED = {'campaign_driver.py', '07_dry_run.py'}


@pytest.mark.parametrize('example', [pytest.param(p, id=p.name, marks=(
    [pytest.mark.rp] if p.name.startswith('rp_') else [])) for p in EXAMPLES])
def test_every_example_driver_runs_under_backend_noop(example, env, tmp_path):
    """A driver that uses the command's backend makes a dry run of it; one that builds
    its own runs as written, and the command says so in one line."""
    proc = run(['--backend', 'noop', example], env, tmp_path, timeout=600)
    expected = 1 if example.name in FAIL_ON_PURPOSE else 0
    assert proc.returncode == expected, f'{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}'
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    warned = 'the driver made its own backend' in proc.stderr
    assert warned == (example.name not in CONFIGURED), proc.stderr[-3000:]
    if example.name == 'campaign_driver.py':
        assert 'dry run done' in proc.stdout and 'backend NoopExecutionBackend' in proc.stderr


def test_resuming_from_a_journal_others_can_write_is_one_line(show, env, tmp_path):
    assert run(['--resume', 'c.db', show], env, tmp_path).returncode == 0
    os.chmod(tmp_path / 'c.db', 0o664)
    proc = run(['--resume', 'c.db', show], env, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f'radical-asyncflow-run: error: JournalError: refusing to resume from ' \
           f'{tmp_path}/c.db: it is writable by its group (mode 0664)' in proc.stderr
    assert 'Traceback' not in proc.stderr
