"""A real SLURM cluster for the tests, started from Debian's slurm-wlm.

:class:`SlurmCluster` writes a private configuration into a directory
(munge key, ``slurm.conf`` with ``select/cons_tres`` and
``proctrack/linuxproc``, state and spool directories), starts ``munged``,
``slurmctld`` and one ``slurmd`` per node as foreground daemons it owns, and
stops them by PID.  Nothing outside that directory is touched: clients find
the cluster through ``SLURM_CONF`` (:attr:`SlurmCluster.env`), munge through
the private socket named in ``slurm.conf``.

One node (the default) is this host under its own name, with all its CPUs.
Several nodes (``SlurmCluster(base, nodes=4)``) are emulated on this one
host: nodes ``n1`` ... ``nN`` of :data:`MULTI_NODE_CPUS` CPUs each, one
``slurmd -N nK`` per node on a port of its own, each with its own spool,
pid, log and TmpFS directory (``%n`` in ``slurm.conf``).  Every node has the
same ``hostname``; a job step knows its node from ``SLURMD_NODENAME``.  For
MPI across them ``MpiDefault=pmix`` (RADICAL-Pilot's ``srun`` passes no
``--mpi``) and ``OMPI_MCA_btl=self,tcp`` in the clients' (so the jobs')
environment: OpenMPI's shared-memory transport crashes between "nodes" of
one host.

The module-scoped pytest fixtures ``slurm_cluster`` (one node) and
``slurm_cluster_4`` (four nodes) start one cluster per test module.  In CI
(``CI=true``) a cluster that cannot start fails the tests; elsewhere they
are skipped with the reason (not root, packages missing: ``bash
tests/setup_system.sh`` installs them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import psutil
import pytest

#: What the cluster needs on the PATH (Debian: slurmctld slurmd slurm-client munge).
DAEMONS = ('munged', 'slurmctld', 'slurmd')
CLIENTS = ('sbatch', 'srun', 'squeue', 'scontrol', 'scancel', 'sinfo')
#: CPUs of each emulated node of a multi-node cluster.
MULTI_NODE_CPUS = 2
#: MB of memory each emulated node declares.
MULTI_NODE_MEMORY = 2048
#: Environment of multi-node jobs: OpenMPI's shared-memory transport between
#: emulated nodes of one host crashes, TCP works.
MULTI_NODE_JOB_ENV = {'OMPI_MCA_btl': 'self,tcp'}
#: Seconds the daemons may take to start, and a node to become idle.
STARTUP_TIMEOUT = 60
#: Seconds each daemon gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 10
#: Job states after which a job will not run again.
FINAL_STATES = frozenset({'COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL',
                          'PREEMPTED', 'OUT_OF_MEMORY', 'BOOT_FAIL', 'DEADLINE'})


def in_ci() -> bool:
    return os.environ.get('CI', '').lower() in ('1', 'true', 'yes')


def unavailable_reason() -> Optional[str]:
    """Why no cluster can be started here, or None."""
    if os.geteuid() != 0:
        return 'the SLURM test cluster runs its daemons as root; not root'
    for sbin in ('/usr/sbin', '/sbin'):
        if sbin not in os.environ.get('PATH', '').split(os.pathsep):
            os.environ['PATH'] += os.pathsep + sbin
    missing = [name for name in DAEMONS + CLIENTS if shutil.which(name) is None]
    if missing:
        return (f'SLURM/munge not installed (missing {", ".join(missing)}): '
                f'run bash tests/setup_system.sh')
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@dataclass
class Job:
    """What ``scontrol show job`` says about a job."""

    job_id: str
    state: str
    exit_code: str
    fields: Dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


class SlurmCluster:
    """``munged`` + ``slurmctld`` + a ``slurmd`` per node, configured in ``base``."""

    def __init__(self, base: str, partition: str = 'debug', nodes: int = 1) -> None:
        if nodes < 1:
            raise ValueError(f'a cluster needs at least one node, not {nodes}')
        self.base = os.path.abspath(base)
        self.partition = partition
        self.host = socket.gethostname().split('.')[0]
        if nodes == 1:          # this host, all its CPUs
            self.nodes = [self.host]
            self.cpus = os.cpu_count() or 1
        else:                   # emulated nodes n1..nN on this host
            self.nodes = [f'n{i}' for i in range(1, nodes + 1)]
            self.cpus = MULTI_NODE_CPUS
        #: The first node (the only one of a one-node cluster).
        self.node = self.nodes[0]
        self.conf = os.path.join(self.base, 'slurm.conf')
        self.munge_socket = os.path.join(self.base, 'munge', 'munge.socket')
        self.procs: Dict[str, subprocess.Popen] = {}
        self._logs: List = []
        self.startup_seconds: Optional[float] = None

    # ----------------------------------------------------------------- config

    @property
    def env(self) -> Dict[str, str]:
        """Environment of a client of this cluster (``os.environ`` plus SLURM_CONF)."""
        path = os.environ.get('PATH', '')
        for sbin in ('/usr/sbin', '/sbin'):
            if sbin not in path.split(os.pathsep):
                path += os.pathsep + sbin
        extra = MULTI_NODE_JOB_ENV if len(self.nodes) > 1 else {}
        return {**os.environ, **extra, 'SLURM_CONF': self.conf, 'PATH': path}

    @property
    def multi_node(self) -> bool:
        return len(self.nodes) > 1

    def _write_config(self) -> None:
        for sub in ('munge', 'state', 'spool', 'log'):
            os.makedirs(os.path.join(self.base, sub), mode=0o700, exist_ok=True)
        os.chmod(self.base, 0o755)     # slurmstepd and jobs read slurm.conf
        key = os.path.join(self.base, 'munge', 'munge.key')
        with open(key, 'wb') as handle:
            handle.write(os.urandom(1024))
        os.chmod(key, 0o400)
        # Jobs (as root) must reach the munge socket: its directory is ours.
        os.chmod(os.path.join(self.base, 'munge'), 0o755)
        if self.multi_node:
            # %n: the node's name, so that each slurmd has directories of its own
            # (a shared TmpFS makes the PMIx servers of two nodes clash)
            spool, pid, log = (f'{self.base}/spool/%n', f'{self.base}/slurmd.%n.pid',
                               f'{self.base}/log/slurmd.%n.log')
            node_lines = [f'NodeName={name} NodeHostname={self.host} NodeAddr=127.0.0.1 '
                          f'Port={_free_port()} CPUs={self.cpus} '
                          f'RealMemory={MULTI_NODE_MEMORY} State=UNKNOWN'
                          for name in self.nodes]
            extra = [f'SlurmdPort={_free_port()}', f'TmpFS={self.base}/tmp/%n',
                     'MpiDefault=pmix']
            for name in self.nodes:
                for sub in ('tmp', 'spool'):
                    os.makedirs(os.path.join(self.base, sub, name), exist_ok=True)
        else:
            memory = max(256, psutil.virtual_memory().total // 2**20 // 2)
            spool, pid, log = (f'{self.base}/spool', f'{self.base}/slurmd.pid',
                               f'{self.base}/log/slurmd.log')
            node_lines = [f'NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} '
                          f'RealMemory={memory} State=UNKNOWN']
            extra = [f'SlurmdPort={_free_port()}', 'MpiDefault=none']
        lines = [
            'ClusterName=asyncflowtest',
            f'SlurmctldHost={self.host}(127.0.0.1)',
            f'SlurmctldPort={_free_port()}',
            *extra,
            'SlurmUser=root',
            'SlurmdUser=root',
            'AuthType=auth/munge',
            'CredType=cred/munge',
            f'AuthInfo=socket={self.munge_socket}',
            f'StateSaveLocation={self.base}/state',
            f'SlurmdSpoolDir={spool}',
            f'SlurmctldPidFile={self.base}/slurmctld.pid',
            f'SlurmdPidFile={pid}',
            f'SlurmctldLogFile={self.base}/log/slurmctld.log',
            f'SlurmdLogFile={log}',
            'SlurmctldDebug=info',
            'SlurmdDebug=info',
            'ProctrackType=proctrack/linuxproc',
            'TaskPlugin=task/none',
            'JobAcctGatherType=jobacct_gather/none',
            'AccountingStorageType=accounting_storage/none',
            'JobCompType=jobcomp/none',
            'SelectType=select/cons_tres',
            'SelectTypeParameters=CR_Core',
            'SchedulerType=sched/backfill',
            'ReturnToService=2',
            'SlurmctldTimeout=30',
            'SlurmdTimeout=30',
            'InactiveLimit=0',
            'MinJobAge=300',
            'KillWait=5',
            'Waittime=0',
            'SchedulerParameters=sched_interval=1',
            *node_lines,
            f'PartitionName={self.partition} Nodes={",".join(self.nodes)} Default=YES '
            f'MaxTime=INFINITE State=UP',
        ]
        with open(self.conf, 'w') as handle:
            handle.write('\n'.join(lines) + '\n')
        os.chmod(self.conf, 0o644)

    # -------------------------------------------------------------- lifetime

    def _spawn(self, name: str, argv: List[str]) -> None:
        log = open(os.path.join(self.base, 'log', f'{name}.out'), 'wb')
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, cwd=self.base, start_new_session=True)

    def start(self) -> 'SlurmCluster':
        """Configure and start the daemons; return once the node is idle."""
        started = time.monotonic()
        self._write_config()
        munge_dir = os.path.join(self.base, 'munge')
        self._spawn('munged', [
            shutil.which('munged'), '--foreground', '--force',
            f'--socket={self.munge_socket}',
            f'--key-file={munge_dir}/munge.key',
            f'--pid-file={munge_dir}/munged.pid',
            f'--seed-file={munge_dir}/munged.seed',
            f'--log-file={self.base}/log/munged.log'])
        self._wait_for(lambda: os.path.exists(self.munge_socket), 'the munge socket')
        self._spawn('slurmctld', [shutil.which('slurmctld'), '-D', '-i', '-f', self.conf])
        self._wait_for(lambda: self._ok(['scontrol', 'ping']), 'slurmctld')
        for name in self.nodes:
            self._spawn(self._slurmd(name), [shutil.which('slurmd'), '-D', '-f', self.conf,
                                             '-N', name])
        self._wait_for(self._nodes_idle, f'node(s) {",".join(self.nodes)} to be idle')
        self.startup_seconds = time.monotonic() - started
        return self

    def _ok(self, argv: List[str]) -> bool:
        try:
            return subprocess.run(argv, env=self.env, capture_output=True,
                                  timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _slurmd(self, node: str) -> str:
        """The name of ``node``'s slurmd in :attr:`procs` (and of its output file)."""
        return 'slurmd' if not self.multi_node else f'slurmd.{node}'

    def node_states(self) -> Dict[str, str]:
        """``{node: state}`` as ``sinfo`` says (a trailing ``*``: not responding)."""
        out = self.run(['sinfo', '-h', '-N', '-o', '%N %T'], check=False)
        return dict(line.split(None, 1) for line in out.splitlines() if ' ' in line.strip())

    def _nodes_idle(self) -> bool:
        states = self.node_states()
        return sorted(states) == sorted(self.nodes) and \
            all(state.strip() == 'idle' for state in states.values())

    def _wait_for(self, condition, what: str, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f'{name} exited with {proc.returncode} while waiting '
                                       f'for {what}:\n{self.logs()}')
            if time.monotonic() > deadline:
                raise TimeoutError(f'waited {timeout}s for {what}:\n{self.logs()}')
            time.sleep(0.2)

    def stop(self) -> None:
        """Cancel every job, then stop the daemons (newest first) by PID."""
        if 'slurmctld' in self.procs and self.procs['slurmctld'].poll() is None:
            self.run(['scancel', '--full', '--partition', self.partition], check=False)
            try:
                self._wait_for(lambda: not self.run(['squeue', '-h', '-o', '%i'], check=False)
                               .strip(), 'jobs to end', timeout=30)
            except (TimeoutError, RuntimeError):
                pass
        stepds = self._stepd_pids()
        for name in [*(self._slurmd(n) for n in reversed(self.nodes)), 'slurmctld', 'munged']:
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        for pid in stepds:          # slurmstepd of our slurmd that outlived it
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        for log in self._logs:
            log.close()
        self._logs = []

    def _stepd_pids(self) -> List[int]:
        """slurmstepd processes using our configuration (started by our slurmd)."""
        pids = []
        if not any(self._slurmd(n) in self.procs for n in self.nodes):
            return pids
        spool = os.path.join(self.base, 'spool')
        for proc in psutil.process_iter(['name', 'open_files']):
            try:
                if proc.info['name'] != 'slurmstepd':
                    continue
                if any(f.path.startswith(spool) for f in (proc.info['open_files'] or ())) \
                        or proc.environ().get('SLURM_CONF') == self.conf:
                    pids.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return pids

    def logs(self, tail: int = 40) -> str:
        text = []
        slurmd = [f'{self._slurmd(n)}.{ext}' for n in self.nodes for ext in ('log', 'out')]
        for name in ('munged.out', 'slurmctld.log', *slurmd, 'slurmctld.out'):
            path = os.path.join(self.base, 'log', name)
            if os.path.exists(path):
                with open(path, errors='replace') as handle:
                    lines = handle.read().splitlines()[-tail:]
                text.append(f'--- {name}\n' + '\n'.join(lines))
        return '\n'.join(text)

    # ---------------------------------------------------------------- clients

    def client_env(self, radical_config_dir: str, pilot_timeout: float) -> Dict[str, str]:
        """A client of this cluster outside any job: no job variables of an enclosing
        allocation, RP configs in ``radical_config_dir``, no task profile."""
        environ = {k: v for k, v in self.env.items()
                   if not k.startswith(('SLURM_JOB', 'SLURM_STEP', 'PBS_', 'RADICAL_ASYNCFLOW_'))
                   and k not in ('SLURM_JOBID', 'SLURM_NODELIST', 'SLURM_CPUS_ON_NODE')}
        environ.update({'SLURM_CONF': self.conf,
                        'RADICAL_CONFIG_USER_DIR': radical_config_dir,
                        'RADICAL_ASYNCFLOW_PROFILE': 'False',
                        'RADICAL_ASYNCFLOW_PILOT_TIMEOUT': str(pilot_timeout),
                        'PYTHONUNBUFFERED': '1'})
        return environ

    def run(self, argv: List[str], check: bool = True, timeout: float = 30, **kw) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        proc = subprocess.run(argv, env=kw.pop('env', self.env), capture_output=True,
                              text=True, timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise RuntimeError(f'{argv} exited {proc.returncode}: {proc.stderr.strip()}')
        return proc.stdout

    def job(self, job_id: str) -> Job:
        """The job's state from ``scontrol show job -o``."""
        out = self.run(['scontrol', 'show', 'job', '-o', str(job_id)])
        fields = dict(item.split('=', 1) for item in out.split() if '=' in item)
        return Job(str(job_id), fields.get('JobState', ''), fields.get('ExitCode', ''), fields)

    def wait_job(self, job_id: str, timeout: float, state: Optional[str] = None) -> Job:
        """Wait until the job is in ``state`` (default: any final state)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if (job.state == state) if state else job.done:
                return job
            if job.done:
                raise RuntimeError(f'job {job_id} ended in {job.state} while waiting for '
                                   f'{state}: {job.fields}')
            if time.monotonic() > deadline:
                raise TimeoutError(f'job {job_id} still {job.state} after {timeout}s')
            time.sleep(0.5)


def running_cluster(tmp_path_factory, nodes: int = 1):
    """Generator for a fixture: a started cluster of ``nodes`` nodes, stopped afterwards."""
    reason = unavailable_reason()
    if reason:
        if in_ci():
            pytest.fail(f'CI must run the SLURM tests: {reason}')
        pytest.skip(reason)
    cluster = SlurmCluster(str(tmp_path_factory.mktemp(f'slurm{nodes}')), nodes=nodes)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope='module')
def slurm_cluster(tmp_path_factory):
    """A running one-node SLURM cluster (module scope), stopped afterwards."""
    yield from running_cluster(tmp_path_factory, nodes=1)


@pytest.fixture(scope='module')
def slurm_cluster_4(tmp_path_factory):
    """A running four-node SLURM cluster n1..n4 on this host (module scope)."""
    yield from running_cluster(tmp_path_factory, nodes=4)
