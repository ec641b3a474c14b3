"""radical.asyncflow.cli.batch: allocation detection, RP resource configs, batch scripts."""

import json
import os
import shlex
import stat

import pytest

from radical.asyncflow.cli import batch
from radical.asyncflow.cli.batch import (Allocation, BatchError, BatchJob, AllocatedNode, BatchSystem,
                                     detect_allocation, expand_counts, expand_hostlist,
                                     parse_duration, read_pbs_nodefile)


# ----------------------------------------------------------- SLURM syntax

@pytest.mark.parametrize('hostlist, expected', [
    ('vm', ['vm']),
    ('n1,n2', ['n1', 'n2']),
    ('nid[001-003,007]', ['nid001', 'nid002', 'nid003', 'nid007']),
    ('gpu[1-2]-ib,login', ['gpu1-ib', 'gpu2-ib', 'login']),
    ('r[1-2]n[08-10]', ['r1n08', 'r1n09', 'r1n10', 'r2n08', 'r2n09', 'r2n10']),
    ('node[9-11]', ['node9', 'node10', 'node11']),
    ('a[0],b', ['a0', 'b']),
    (' x[1-2] ', ['x1', 'x2']),
])
def test_expand_hostlist(hostlist, expected):
    assert expand_hostlist(hostlist) == expected


@pytest.mark.parametrize('bad', ['n[1-', 'n1-2]', 'n[a-b]', 'n[3-1]', 'n[1--2]'])
def test_expand_hostlist_rejects_malformed_lists(bad):
    with pytest.raises(BatchError, match='host list'):
        expand_hostlist(bad)


@pytest.mark.parametrize('spec, expected', [
    ('2', [2]), ('36(x2),72', [36, 36, 72]), ('128(x3)', [128, 128, 128]), ('4,8', [4, 8])])
def test_expand_counts(spec, expected):
    assert expand_counts(spec) == expected


@pytest.mark.parametrize('bad', ['', 'x', '2(x)', '2(3)', '2,'])
def test_expand_counts_rejects_malformed_lists(bad):
    with pytest.raises(BatchError, match='per-node count'):
        expand_counts(bad)


@pytest.mark.parametrize('text, seconds', [
    ('1:00:00', 3600), ('05:30', 330), ('1-02:00:00', 93600), ('45', 2700),
    ('0:00:59', 59), ('UNLIMITED', None), ('NOT_SET', None), ('', None)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


# ------------------------------------------------------------- detection

def test_no_allocation_outside_a_batch_job():
    assert detect_allocation({'HOME': '/root', 'PATH': '/bin'}) is None


def slurm_env(**extra):
    env = {'SLURM_JOB_ID': '4242', 'SLURM_JOB_NODELIST': 'nid[001-002],gpu07',
           'SLURM_JOB_CPUS_PER_NODE': '64(x2),32', 'SLURM_CPUS_ON_NODE': '64',
           'SLURM_JOB_PARTITION': 'regular'}
    env.update(extra)
    return env


def test_slurm_allocation_nodes_cores_and_partition():
    alloc = detect_allocation(slurm_env())
    assert alloc.scheduler is BatchSystem.SLURM
    assert alloc.job_id == '4242'
    assert alloc.node_names == ['nid001', 'nid002', 'gpu07']
    assert [n.cores for n in alloc.nodes] == [64, 64, 32]
    assert alloc.cores == 160 and alloc.gpus == 0
    assert alloc.queue == 'regular'
    assert alloc.walltime_left is None


def test_slurm_allocation_from_cpus_on_node_alone():
    env = slurm_env()
    del env['SLURM_JOB_CPUS_PER_NODE']
    alloc = detect_allocation(env)
    assert [n.cores for n in alloc.nodes] == [64, 64, 64]


@pytest.mark.parametrize('gpu_env, gpus', [
    ({'SLURM_GPUS_ON_NODE': '4'}, 4),
    ({'SLURM_GPUS_PER_NODE': 'a100:2'}, 2),
    ({'SLURM_JOB_GPUS': '0,1,2'}, 3),
    ({}, 0)])
def test_slurm_gpus(gpu_env, gpus):
    alloc = detect_allocation(slurm_env(**gpu_env))
    assert alloc.gpus_per_node == gpus
    assert alloc.gpus == 3 * gpus


@pytest.mark.parametrize('change, message', [
    ({'SLURM_JOB_NODELIST': ''}, 'SLURM_JOB_NODELIST'),
    ({'SLURM_JOB_CPUS_PER_NODE': '64'}, 'lists 1 nodes'),
    ({'SLURM_JOB_CPUS_PER_NODE': '', 'SLURM_CPUS_ON_NODE': ''}, 'SLURM_CPUS_ON_NODE'),
    ({'SLURM_JOB_CPUS_PER_NODE': '', 'SLURM_CPUS_ON_NODE': 'many'}, 'not a whole number'),
])
def test_inconsistent_slurm_environment_is_a_clear_error(change, message):
    with pytest.raises(BatchError, match=message):
        detect_allocation(slurm_env(**change))


def test_slurm_walltime_left_from_the_environment(monkeypatch):
    import time
    env = slurm_env(SLURM_JOB_END_TIME=str(int(time.time()) + 600))
    alloc = detect_allocation(env, walltime=True)
    assert 590 <= alloc.walltime_left <= 600


def test_slurm_walltime_left_from_squeue(tmp_path, monkeypatch):
    fake = tmp_path / 'squeue'
    fake.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\necho 1:30:00\n')
    fake.chmod(0o755)
    env = slurm_env(PATH=f'{tmp_path}:/usr/bin:/bin')
    monkeypatch.setenv('PATH', env['PATH'])
    alloc = detect_allocation(env, walltime=True)
    assert alloc.walltime_left == 5400
    assert (tmp_path / 'args').read_text().split() == ['-h', '-j', '4242', '-o', '%L']


def write_nodefile(tmp_path, lines):
    path = tmp_path / 'nodefile'
    path.write_text(''.join(f'{line}\n' for line in lines))
    return str(path)


def test_pbs_nodefile_one_line_per_slot(tmp_path):
    nodefile = write_nodefile(tmp_path, ['n01'] * 4 + ['n02'] * 4 + ['n03'] * 4)
    alloc = detect_allocation({'PBS_JOBID': '77.pbs01', 'PBS_NODEFILE': nodefile,
                               'PBS_QUEUE': 'debug'})
    assert alloc.scheduler is BatchSystem.PBS
    assert alloc.job_id == '77.pbs01'
    assert alloc.node_names == ['n01', 'n02', 'n03']
    assert alloc.cores_per_node == 4 and alloc.cores == 12
    assert alloc.queue == 'debug'


def test_pbs_pro_nodefile_one_line_per_node_uses_ncpus(tmp_path):
    nodefile = write_nodefile(tmp_path, ['x3001', 'x3002'])
    alloc = detect_allocation({'PBS_JOBID': '9', 'PBS_NODEFILE': nodefile, 'NCPUS': '64',
                               'NGPUS': '4'})
    assert [(n.name, n.cores, n.gpus) for n in alloc.nodes] == [('x3001', 64, 4),
                                                                ('x3002', 64, 4)]


def test_pbs_gpus_from_cuda_visible_devices(tmp_path):
    nodefile = write_nodefile(tmp_path, ['a', 'a'])
    alloc = detect_allocation({'PBS_JOBID': '9', 'PBS_NODEFILE': nodefile,
                               'CUDA_VISIBLE_DEVICES': '0,1'})
    assert alloc.gpus == 2


def test_multi_node_torque_allocation_from_a_four_entry_nodefile(tmp_path):
    # one line per slot, the nodes' lines interleaved (as mpiprocs placement writes them)
    nodefile = write_nodefile(tmp_path, ['n1', 'n2', 'n1', 'n2'])
    env = {'PBS_JOBID': '12.pbs', 'PBS_NODEFILE': nodefile}
    alloc = detect_allocation(env)
    assert [(n.name, n.cores) for n in alloc.nodes] == [('n1', 2), ('n2', 2)]
    assert alloc.pilot_resources()['resource'] == 'asyncflow.pbs'
    assert alloc.pilot_resources()['cores'] == 4
    # RADICAL-Pilot counts a node's lines: this file already says 2 cores each
    assert alloc.pilot_environment(str(tmp_path), env) == {}
    assert alloc.describe() == 'PBS job 12.pbs: 2 node(s) n1,n2, 4 cores'


def test_multi_node_pbs_pro_allocation_from_a_four_entry_nodefile(tmp_path):
    # one line per node, NCPUS cores each: the pilot gets a file with a line per core
    nodefile = write_nodefile(tmp_path, ['x1', 'x2', 'x3', 'x4'])
    env = {'PBS_JOBID': '13.pbs', 'PBS_NODEFILE': nodefile, 'NCPUS': '2'}
    alloc = detect_allocation(env)
    assert alloc.node_names == ['x1', 'x2', 'x3', 'x4']
    assert alloc.cores_per_node == 2 and alloc.cores == 8
    assert alloc.pilot_resources()['cores'] == 8
    extra = alloc.pilot_environment(str(tmp_path), env)
    with open(extra['PBS_NODEFILE']) as handle:
        lines = handle.read().split()
    assert lines == ['x1', 'x1', 'x2', 'x2', 'x3', 'x3', 'x4', 'x4']
    assert read_pbs_nodefile('\n'.join(lines)) == [('x1', 2), ('x2', 2), ('x3', 2), ('x4', 2)]


def test_read_pbs_nodefile_keeps_first_seen_order():
    assert read_pbs_nodefile('b\na\nb\n\n# comment\na\nc\n') == [('b', 2), ('a', 2), ('c', 1)]


@pytest.mark.parametrize('env, message', [
    ({'PBS_JOBID': '1'}, 'PBS_NODEFILE is not set'),
    ({'PBS_JOBID': '1', 'PBS_NODEFILE': '/nonexistent/nodefile'}, 'cannot read'),
])
def test_inconsistent_pbs_environment_is_a_clear_error(env, message):
    with pytest.raises(BatchError, match=message):
        detect_allocation(env)


def test_empty_pbs_nodefile_is_an_error(tmp_path):
    with pytest.raises(BatchError, match='lists no node'):
        detect_allocation({'PBS_JOBID': '1', 'PBS_NODEFILE': write_nodefile(tmp_path, [])})


def test_pbs_walltime_left_from_qstat(tmp_path, monkeypatch):
    fake = tmp_path / 'qstat'
    fake.write_text('#!/bin/sh\ncat <<EOF\nJob Id: 5.server\n    Resource_List.walltime = '
                    '02:00:00\n    resources_used.walltime = 00:30:00\nEOF\n')
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', f'{tmp_path}:/usr/bin:/bin')
    env = {'PBS_JOBID': '5.server', 'PBS_NODEFILE': write_nodefile(tmp_path, ['n1']),
           'PATH': f'{tmp_path}:/usr/bin:/bin'}
    assert detect_allocation(env, walltime=True).walltime_left == 5400


def test_slurm_wins_when_both_are_set(tmp_path):
    # a SLURM cluster with the PBS compatibility layer sets both
    env = slurm_env(PBS_JOBID='4242', PBS_NODEFILE=write_nodefile(tmp_path, ['x']))
    assert detect_allocation(env).scheduler is BatchSystem.SLURM


# ---------------------------------------------------------- pilot resources

def test_pilot_resources_fill_the_allocation():
    alloc = Allocation(BatchSystem.SLURM, '1', (AllocatedNode('a', 8, 2), AllocatedNode('b', 8, 2)),
                       walltime_left=3600)
    assert alloc.pilot_resources() == {'resource': 'asyncflow.slurm', 'cores': 16,
                                       'gpus': 4, 'runtime': 59}


def test_pilot_runtime_without_a_known_walltime():
    alloc = Allocation(BatchSystem.PBS, '1', (AllocatedNode('a', 4),))
    assert alloc.pilot_resources()['runtime'] == batch.DEFAULT_PILOT_RUNTIME
    assert alloc.pilot_resources()['resource'] == 'asyncflow.pbs'


def test_pilot_runtime_is_at_least_a_minute():
    alloc = Allocation(BatchSystem.SLURM, '1', (AllocatedNode('a', 4),), walltime_left=30)
    assert alloc.pilot_resources()['runtime'] == 1


# ---------------------------------------------------- RP resource configs

def test_rp_resource_configs_use_the_batch_system():
    slurm, pbs = batch.RP_RESOURCE_CONFIGS['slurm'], batch.RP_RESOURCE_CONFIGS['pbs']
    assert slurm['resource_manager'] == 'SLURM'
    assert slurm['launch_methods']['order'] == ['SRUN']
    assert slurm['schemas']['batch']['job_manager_endpoint'].startswith('slurm://')
    assert pbs['resource_manager'] == 'TORQUE'
    assert pbs['launch_methods']['order'] == ['MPIEXEC']
    assert pbs['schemas']['batch']['job_manager_endpoint'].startswith('pbspro://')


def test_install_rp_resource_configs(tmp_path):
    env = {'RADICAL_CONFIG_USER_DIR': str(tmp_path)}
    path = batch.install_rp_resource_configs(env)
    assert path == str(tmp_path / '.radical' / 'pilot' / 'configs' / 'resource_asyncflow.json')
    assert json.loads(open(path).read()) == batch.RP_RESOURCE_CONFIGS
    mtime = os.stat(path).st_mtime_ns
    assert batch.install_rp_resource_configs(env) == path       # unchanged: not rewritten
    assert os.stat(path).st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / '.radical' / 'pilot' / 'configs').iterdir()] == \
        ['resource_asyncflow.json']


def test_rp_reads_the_installed_configs(tmp_path, monkeypatch):
    rp = pytest.importorskip('radical.pilot')
    import radical.utils as ru
    monkeypatch.setenv('RADICAL_CONFIG_USER_DIR', str(tmp_path))
    batch.install_rp_resource_configs()
    configs = ru.Config('radical.pilot.resource', name='*', expand=False)
    for name in ('slurm', 'pbs'):
        rcfg = rp.ResourceConfig(from_dict=configs['asyncflow'][name])
        rcfg.verify()
        assert rcfg['resource_manager'] in ('SLURM', 'TORQUE')
        from radical.pilot.agent.resource_manager import ResourceManager
        assert ResourceManager.get_manager(rcfg['resource_manager']) is not None


# --------------------------------------------------------------- batch jobs

def job(tmp_path, scheduler='slurm', **kw):
    driver = tmp_path / 'campaign.py'
    driver.write_text('')
    kw.setdefault('walltime', 90)
    return BatchJob(scheduler=scheduler, driver=str(driver), work_dir=str(tmp_path), **kw)


def directives(script, prefix):
    return [line[len(prefix) + 1:] for line in script.splitlines() if line.startswith(prefix)]


def exec_line(script):
    (line,) = [line for line in script.splitlines() if line.startswith('exec ')]
    return shlex.split(line)[1:]


def test_slurm_script(tmp_path):
    j = job(tmp_path, nodes=4, account='abc', queue='regular', signal_before=600,
            gpus_per_node=4, driver_args=['--members', '64', 'a b'], backend='radical',
            batch_options=['--constraint=gpu'], setup=['module load python'])
    script = j.script()
    assert script.startswith('#!/bin/bash\n')
    assert directives(script, '#SBATCH') == [
        '--job-name=campaign', '--nodes=4', '--exclusive', '--time=01:30:00',
        '--signal=B:USR1@600', f'--output={tmp_path}/campaign.%j.out', f'--chdir={tmp_path}',
        '--gpus-per-node=4', '--account=abc', '--partition=regular', '--constraint=gpu']
    assert 'module load python\n' in script
    argv = exec_line(script)
    assert argv[1:3] == ['-m', 'radical.asyncflow.cli']
    assert argv[-4:] == [str(tmp_path / 'campaign.py'), '--members', '64', 'a b']
    assert argv[argv.index('--resume') + 1] == str(tmp_path / 'campaign.journal')
    assert argv[argv.index('--work-dir') + 1] == str(tmp_path)
    assert argv[argv.index('--backend') + 1] == 'radical'
    assert '--stop-after' not in argv          # SLURM signals by itself
    assert j.script_path == str(tmp_path / 'campaign.sbatch')


def test_pbs_script(tmp_path):
    j = job(tmp_path, 'pbs', nodes=2, walltime=60, account='proj', queue='prod',
            signal_before=300, gpus_per_node=4)
    script = j.script()
    assert directives(script, '#PBS') == [
        '-N campaign', '-l select=2:ngpus=4', '-l place=scatter:excl', '-l walltime=01:00:00',
        '-j oe', f'-o {tmp_path}/campaign.out', '-A proj', '-q prod']
    argv = exec_line(script)
    # PBS has no pre-walltime signal: the runner sends itself one
    assert argv[argv.index('--stop-after') + 1] == str(3600 - 300)
    assert j.script_path == str(tmp_path / 'campaign.pbs')


def test_default_signal_before(tmp_path):
    assert job(tmp_path, walltime=600).signal_before == 300
    assert job(tmp_path, walltime=4).signal_before == 60        # a quarter of a short job


def test_journal_and_config_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'run.toml').write_text('')
    j = job(tmp_path, journal='my.db', config='run.toml', resources='{"cores": 4}')
    argv = exec_line(j.script())
    assert argv[argv.index('--resume') + 1] == str(tmp_path / 'my.db')
    assert argv[argv.index('--config') + 1] == str(tmp_path / 'run.toml')
    assert argv[argv.index('--resources') + 1] == '{"cores": 4}'


@pytest.mark.parametrize('kw, message', [
    ({'walltime': 0}, 'walltime must be a positive number'),
    ({'walltime': -5}, 'walltime must be a positive number'),
    ({'walltime': float('nan')}, 'walltime must be a positive number'),
    ({'walltime': '10'}, 'walltime must be a positive number'),
    ({'nodes': 0}, 'nodes must be a positive whole number'),
    ({'walltime': 10, 'signal_before': 600}, 'less than the walltime'),
    ({'gpus_per_node': -1}, 'must not be negative'),
])
def test_bad_batch_jobs(tmp_path, kw, message):
    with pytest.raises(BatchError, match=message):
        job(tmp_path, **kw)


def test_write_script_is_executable(tmp_path):
    j = job(tmp_path)
    path = batch.write_script(j)
    assert open(path).read() == j.script()
    assert os.stat(path).st_mode & stat.S_IXUSR


def fake_command(tmp_path, name, output, status=0):
    bindir = tmp_path / 'bin'
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/{name}.args\necho "{output}"\n'
                   f'exit {status}\n')
    exe.chmod(0o755)
    return bindir


def test_submit_with_sbatch(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', f'{fake_command(tmp_path, "sbatch", "1234;cluster")}:/bin')
    j = job(tmp_path)
    path = batch.write_script(j)
    assert batch.submit(j, path) == '1234'
    assert (tmp_path / 'sbatch.args').read_text().split() == ['--parsable', path]


def test_submit_with_qsub(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', f'{fake_command(tmp_path, "qsub", "88.pbs01")}:/bin')
    j = job(tmp_path, 'pbs')
    path = batch.write_script(j)
    assert batch.submit(j, path) == '88.pbs01'
    assert (tmp_path / 'qsub.args').read_text().split() == [
        '-j', 'oe', '-o', j.output_path, path]


def test_submit_without_the_batch_system(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    j = job(tmp_path)
    with pytest.raises(BatchError, match='sbatch is not installed'):
        batch.submit(j, batch.write_script(j))


def test_submit_failure_shows_the_batch_systems_message(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', f'{fake_command(tmp_path, "sbatch", "invalid account", 1)}:/bin')
    j = job(tmp_path)
    with pytest.raises(BatchError, match='invalid account'):
        batch.submit(j, batch.write_script(j))


def test_pbs_pro_pilot_gets_a_node_file_with_one_line_per_core(tmp_path):
    nodefile = write_nodefile(tmp_path, ['x1', 'x2'])
    env = {'PBS_JOBID': '9.s', 'PBS_NODEFILE': nodefile, 'NCPUS': '3'}
    alloc = detect_allocation(env)
    extra = alloc.pilot_environment(str(tmp_path), env)
    assert open(extra['PBS_NODEFILE']).read() == 'x1\nx1\nx1\nx2\nx2\nx2\n'


def test_torque_node_file_is_used_as_it_is(tmp_path):
    nodefile = write_nodefile(tmp_path, ['x1', 'x1', 'x2', 'x2'])
    env = {'PBS_JOBID': '9.s', 'PBS_NODEFILE': nodefile}
    assert detect_allocation(env).pilot_environment(str(tmp_path), env) == {}
    slurm = Allocation(BatchSystem.SLURM, '1', (AllocatedNode('a', 4),))
    assert slurm.pilot_environment(str(tmp_path), {}) == {}
