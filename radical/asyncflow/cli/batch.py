"""Batch systems: the allocation a driver runs in, and batch scripts for drivers.

:func:`detect_allocation` reads the environment of a SLURM or PBS job
(SLURM first: a SLURM cluster that emulates PBS sets both) and returns an
:class:`Allocation`: its nodes with their cores and GPUs, and (on request)
the walltime left.  :meth:`Allocation.pilot_resources` turns it into the
``PilotDescription`` keys of one pilot that fills the allocation: resource
``asyncflow.slurm`` or ``asyncflow.pbs``, RADICAL-Pilot resource configs
(:data:`RP_RESOURCE_CONFIGS`, installed by :func:`install_rp_resource_configs`)
whose agent takes its nodes from the batch system (``SLURM`` /
``TORQUE`` resource manager) and launches tasks with ``srun`` / ``mpiexec``.
Outside an allocation the same labels submit the pilot as a batch job
(``slurm://`` / ``pbspro://`` through PSI/J); inside one RADICAL-Pilot starts
the pilot in place (``fork://localhost``).

:class:`BatchJob` is a driver run as a batch job: :meth:`BatchJob.script`
renders the SLURM or PBS script and :func:`submit` hands it to
``sbatch``/``qsub``.  The script runs ``radical-asyncflow-run --resume
JOURNAL`` in the work directory and arranges for SIGUSR1 ahead of the
walltime (SLURM ``--signal=B:USR1@S``; PBS has no such directive, so the
runner's own ``--stop-after`` timer sends it), so the run stops in order
and the same script, submitted again, resumes it.
"""

from __future__ import annotations

import enum
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..backends.execution.radical_pilot.site import (RP_RESOURCE_CONFIGS, RP_SITE,  # noqa: F401
                                                     install_rp_resource_configs,
                                                     rp_config_dir)
from ..errors import UsageValueError

#: Seconds a batch-system client command (squeue, qstat, sbatch, qsub) may take.
CLIENT_TIMEOUT = 60
#: Default seconds between the pre-walltime signal and the walltime.
DEFAULT_SIGNAL_BEFORE = 300
#: Minutes of pilot runtime when the allocation's walltime is unknown.
DEFAULT_PILOT_RUNTIME = 24 * 60


class BatchSystem(str, enum.Enum):
    """A batch system."""

    SLURM = 'slurm'
    PBS = 'pbs'

    @property
    def submit_command(self) -> str:
        """The command that submits a batch script: sbatch or qsub."""
        return 'sbatch' if self is BatchSystem.SLURM else 'qsub'

    @property
    def rp_resource(self) -> str:
        """The RADICAL-Pilot resource label of a pilot on this batch system."""
        return f'{RP_SITE}.{self.value}'


class BatchError(UsageValueError):
    """Bad batch input (a malformed node list, walltime...); the message says what."""


# ------------------------------------------------------------------ allocation

@dataclass(frozen=True, slots=True)
class AllocatedNode:
    """One node of an allocation."""

    name: str
    cores: int
    gpus: int = 0


@dataclass(frozen=True, slots=True)
class Allocation:
    """The batch job a process runs in."""

    scheduler: BatchSystem
    job_id: str
    nodes: Tuple[AllocatedNode, ...]
    queue: Optional[str] = None
    #: Seconds of walltime left when detected (None: unknown or not asked for).
    walltime_left: Optional[float] = None

    @property
    def node_names(self) -> List[str]:
        """The host names of the allocation's nodes."""
        return [node.name for node in self.nodes]

    @property
    def cores_per_node(self) -> int:
        """Cores of the first node (where the driver runs); RADICAL-Pilot
        assumes every node has as many."""
        return self.nodes[0].cores if self.nodes else 0

    @property
    def gpus_per_node(self) -> int:
        """GPUs of the first node (where the driver runs)."""
        return self.nodes[0].gpus if self.nodes else 0

    @property
    def cores(self) -> int:
        """Cores of all nodes together."""
        return sum(node.cores for node in self.nodes)

    @property
    def gpus(self) -> int:
        """GPUs of all nodes together."""
        return sum(node.gpus for node in self.nodes)

    def pilot_resources(self) -> Dict[str, object]:
        """``PilotDescription`` keys of one pilot that fills this allocation.

        Cores and GPUs, not nodes: the resource config cannot know the node
        size (the agent learns it from the batch system), and RADICAL-Pilot
        needs it to turn nodes into cores.
        """
        n_nodes = len(self.nodes)
        resources: Dict[str, object] = {
            'resource': self.scheduler.rp_resource,
            'cores': n_nodes * self.cores_per_node,
            'gpus': n_nodes * self.gpus_per_node,
        }
        if self.walltime_left is not None:
            # the agent stops itself after 'runtime' minutes: before the walltime
            resources['runtime'] = max(1, int(self.walltime_left // 60) - 1)
        else:
            resources['runtime'] = DEFAULT_PILOT_RUNTIME
        return resources

    def pilot_environment(self, directory: str,
                          environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """Variables the pilot needs beyond the job's own (it inherits the driver's).

        PBS: RADICAL-Pilot counts a node's cores as its lines in
        ``PBS_NODEFILE``; PBS Pro writes one line per node (per MPI rank), so
        a node file with one line per core is written into ``directory``.
        """
        env = os.environ if environ is None else environ
        if self.scheduler is not BatchSystem.PBS:
            return {}
        try:
            with open(env.get('PBS_NODEFILE', ''), encoding='utf-8') as handle:
                listed = dict(read_pbs_nodefile(handle.read()))
        except OSError:
            listed = {}
        if all(listed.get(node.name) == node.cores for node in self.nodes):
            return {}
        path = os.path.join(directory, f'.asyncflow-{self.job_id}.nodefile')
        with open(path, 'w', encoding='utf-8') as handle:
            handle.writelines(f'{node.name}\n' * node.cores for node in self.nodes)
        return {'PBS_NODEFILE': path}

    def describe(self) -> str:
        """A one-line description of the allocation, for messages."""
        gpus = f', {self.gpus} GPUs' if self.gpus else ''
        left = (f', {self.walltime_left / 60:.0f} min left'
                if self.walltime_left is not None else '')
        return (f'{self.scheduler.value.upper()} job {self.job_id}: {len(self.nodes)} '
                f'node(s) {",".join(self.node_names[:8])}{"..." if len(self.nodes) > 8 else ""}'
                f', {self.cores} cores{gpus}{left}')


def detect_allocation(environ: Optional[Mapping[str, str]] = None, *,
                      walltime: bool = False) -> Optional[Allocation]:
    """The SLURM or PBS allocation of this process, or None outside one.

    With ``walltime=True`` the time left is looked up too (``squeue`` /
    ``qstat`` when the environment does not tell).  Raises
    :class:`BatchError` when the job's environment is inconsistent.
    """
    env = os.environ if environ is None else environ
    if env.get('SLURM_JOB_ID') or env.get('SLURM_JOBID'):
        alloc = _slurm_allocation(env)
    elif env.get('PBS_JOBID'):
        alloc = _pbs_allocation(env)
    else:
        return None
    if walltime:
        left = (slurm_time_left(alloc.job_id, env) if alloc.scheduler is BatchSystem.SLURM
                else pbs_time_left(alloc.job_id, env))
        alloc = Allocation(alloc.scheduler, alloc.job_id, alloc.nodes, alloc.queue, left)
    return alloc


def _slurm_allocation(env: Mapping[str, str]) -> Allocation:
    job_id = env.get('SLURM_JOB_ID') or env['SLURM_JOBID']
    nodelist = env.get('SLURM_JOB_NODELIST') or env.get('SLURM_NODELIST')
    if not nodelist:
        raise BatchError(f'SLURM job {job_id}: SLURM_JOB_NODELIST is not set')
    names = expand_hostlist(nodelist)
    per_node = env.get('SLURM_JOB_CPUS_PER_NODE')
    if per_node:
        cores = expand_counts(per_node)
        if len(cores) != len(names):
            raise BatchError(f'SLURM job {job_id}: SLURM_JOB_CPUS_PER_NODE={per_node!r} '
                             f'lists {len(cores)} nodes, SLURM_JOB_NODELIST {len(names)}')
    elif env.get('SLURM_CPUS_ON_NODE'):
        cores = [_int(env['SLURM_CPUS_ON_NODE'], 'SLURM_CPUS_ON_NODE')] * len(names)
    else:
        raise BatchError(f'SLURM job {job_id}: neither SLURM_JOB_CPUS_PER_NODE nor '
                         f'SLURM_CPUS_ON_NODE is set')
    gpus = _slurm_gpus_per_node(env)
    nodes = tuple(AllocatedNode(name, n, gpus) for name, n in zip(names, cores))
    return Allocation(BatchSystem.SLURM, job_id, nodes, env.get('SLURM_JOB_PARTITION'))


def _slurm_gpus_per_node(env: Mapping[str, str]) -> int:
    if env.get('SLURM_GPUS_ON_NODE'):
        return _int(env['SLURM_GPUS_ON_NODE'], 'SLURM_GPUS_ON_NODE')
    if env.get('SLURM_GPUS_PER_NODE'):          # "4" or "a100:4"
        return _int(env['SLURM_GPUS_PER_NODE'].rsplit(':', 1)[-1], 'SLURM_GPUS_PER_NODE')
    ids = env.get('SLURM_JOB_GPUS') or env.get('SLURM_STEP_GPUS')
    if ids:
        return len([i for i in ids.split(',') if i.strip()])
    return 0


def _pbs_allocation(env: Mapping[str, str]) -> Allocation:
    job_id = env['PBS_JOBID']
    nodefile = env.get('PBS_NODEFILE')
    if not nodefile:
        raise BatchError(f'PBS job {job_id}: PBS_NODEFILE is not set')
    try:
        with open(nodefile, encoding='utf-8') as handle:
            counts = read_pbs_nodefile(handle.read())
    except OSError as exc:
        raise BatchError(f'PBS job {job_id}: cannot read PBS_NODEFILE {nodefile}: '
                         f'{exc.strerror}') from None
    if not counts:
        raise BatchError(f'PBS job {job_id}: PBS_NODEFILE {nodefile} lists no node')
    if env.get('NCPUS') and all(n == 1 for _, n in counts):
        # PBS Pro writes one line per MPI process; NCPUS is the cores per node
        counts = [(name, _int(env['NCPUS'], 'NCPUS')) for name, _ in counts]
    gpus = 0
    if env.get('NGPUS'):
        gpus = _int(env['NGPUS'], 'NGPUS')
    elif env.get('CUDA_VISIBLE_DEVICES'):
        gpus = len([d for d in env['CUDA_VISIBLE_DEVICES'].split(',') if d.strip()])
    nodes = tuple(AllocatedNode(name, n, gpus) for name, n in counts)
    return Allocation(BatchSystem.PBS, job_id, nodes, env.get('PBS_QUEUE'))


def read_pbs_nodefile(text: str) -> List[Tuple[str, int]]:
    """``(node, lines)`` in first-seen order: a PBS nodefile has one line per slot."""
    counts: Dict[str, int] = {}
    for line in text.splitlines():
        name = line.strip()
        if name and not name.startswith('#'):
            counts[name] = counts.get(name, 0) + 1
    return list(counts.items())


def _int(value: str, what: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise BatchError(f'{what}={value!r} is not a whole number') from None
    if number < 0:
        raise BatchError(f'{what}={value!r} is negative')
    return number


# ------------------------------------------------------------- SLURM syntax

def expand_hostlist(hostlist: str) -> List[str]:
    """Expand a SLURM host list: ``'nid[001-003,007],gpu[1-2]-ib'`` →
    ``['nid001', 'nid002', 'nid003', 'nid007', 'gpu1-ib', 'gpu2-ib']``.

    Several bracket groups in one name expand to their product; the width
    of a range's lower bound sets the zero padding.
    """
    names: List[str] = []
    for item in _split_top_level(hostlist.strip()):
        names.extend(_expand_item(item, hostlist))
    return names


def _split_top_level(text: str) -> List[str]:
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == '[':
            depth += 1
        elif char == ']':
            depth -= 1
        elif char == ',' and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _expand_item(item: str, whole: str) -> List[str]:
    match = re.search(r'\[([^\[\]]*)\]', item)
    if match is None:
        if '[' in item or ']' in item:
            raise BatchError(f'malformed SLURM host list {whole!r}: unbalanced brackets')
        return [item]
    prefix, suffix = item[:match.start()], item[match.end():]
    expanded = []
    for value in _expand_ranges(match.group(1), whole):
        expanded.extend(_expand_item(prefix + value + suffix, whole))
    return expanded


def _expand_ranges(ranges: str, whole: str) -> List[str]:
    values = []
    for part in ranges.split(','):
        part = part.strip()
        if re.fullmatch(r'\d+', part):
            values.append(part)
            continue
        match = re.fullmatch(r'(\d+)-(\d+)', part)
        if match is None:
            raise BatchError(f'malformed SLURM host list {whole!r}: bad range {part!r}')
        low, high = match.groups()
        if int(high) < int(low):
            raise BatchError(f'malformed SLURM host list {whole!r}: range {part!r} runs '
                             f'backwards')
        width = len(low)
        values.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
    return values


def expand_counts(spec: str) -> List[int]:
    """Expand SLURM's per-node counts: ``'36(x2),72'`` → ``[36, 36, 72]``."""
    counts = []
    for part in spec.split(','):
        match = re.fullmatch(r'\s*(\d+)(?:\(x(\d+)\))?\s*', part)
        if match is None:
            raise BatchError(f'malformed SLURM per-node count list {spec!r}')
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def parse_duration(text: str) -> Optional[float]:
    """Seconds of a SLURM/PBS duration (``[D-]HH:MM:SS``, ``MM:SS``, ``MM``);
    None for ``UNLIMITED``/``NOT_SET``/``INVALID``."""
    text = text.strip()
    if not text or text.upper() in ('UNLIMITED', 'NOT_SET', 'INVALID', 'N/A'):
        return None
    days = 0
    if '-' in text:
        day_part, text = text.split('-', 1)
        days = int(day_part)
    parts = [float(p) for p in text.split(':')]
    if len(parts) == 1 and not days:
        seconds = parts[0] * 60              # plain minutes
    else:
        while len(parts) < 3:
            parts.insert(0, 0.0)
        hours, minutes, secs = parts[-3:]
        seconds = hours * 3600 + minutes * 60 + secs
    return days * 86400 + seconds


def slurm_time_left(job_id: str, env: Mapping[str, str]) -> Optional[float]:
    """Seconds until the SLURM job's time limit (None: unlimited or unknown)."""
    end = env.get('SLURM_JOB_END_TIME')            # Slurm >= 23.02
    if end:
        try:
            import time
            return max(0.0, float(end) - time.time())
        except ValueError:
            pass
    out = _client(['squeue', '-h', '-j', str(job_id), '-o', '%L'], env)
    try:
        return parse_duration(out.splitlines()[0]) if out.strip() else None
    except ValueError:
        return None


def pbs_time_left(job_id: str, env: Mapping[str, str]) -> Optional[float]:
    """Seconds until the PBS job's walltime (None: unknown)."""
    if env.get('PBS_WALLTIME'):                    # Torque: the limit, in seconds
        try:
            limit = float(env['PBS_WALLTIME'])
        except ValueError:
            limit = None
        if limit is not None:
            return limit
    out = _client(['qstat', '-f', str(job_id)], env)
    fields = dict(re.findall(r'^\s*([\w.]+)\s*=\s*(.*)$', out, flags=re.M))
    try:
        limit = parse_duration(fields.get('Resource_List.walltime', ''))
        used = parse_duration(fields.get('resources_used.walltime', '')) or 0.0
    except ValueError:
        return None
    return None if limit is None else max(0.0, limit - used)


def _client(argv: List[str], env: Mapping[str, str]) -> str:
    """stdout of a batch-system client, or '' when it is missing or fails."""
    if shutil.which(argv[0]) is None:
        return ''
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
                              env=dict(env))
    except (OSError, subprocess.TimeoutExpired):
        return ''
    return proc.stdout if proc.returncode == 0 else ''


# ---------------------------------------------------------------- batch jobs

@dataclass(slots=True)
class BatchJob:
    """A driver to run as a batch job; :meth:`script` is its batch script."""

    scheduler: BatchSystem
    driver: str
    walltime: float                              # minutes
    nodes: int = 1
    driver_args: Sequence[str] = ()
    work_dir: str = '.'
    journal: Optional[str] = None                # default: WORK_DIR/<driver>.journal
    account: Optional[str] = None
    queue: Optional[str] = None
    signal_before: Optional[int] = None          # seconds; default: DEFAULT_SIGNAL_BEFORE
    gpus_per_node: int = 0
    job_name: Optional[str] = None
    backend: Optional[str] = None
    resources: Optional[str] = None              # as given to --resources
    config: Optional[str] = None                 # TOML file
    quiet: bool = False
    batch_options: Sequence[str] = ()            # extra '#SBATCH ...' / '#PBS ...' lines
    setup: Sequence[str] = ()                    # shell lines before the driver runs
    python: str = field(default_factory=lambda: sys.executable)
    script_file: Optional[str] = None            # default: WORK_DIR/<name>.sbatch|.pbs

    def __post_init__(self) -> None:
        self.scheduler = BatchSystem(self.scheduler)
        if not isinstance(self.walltime, (int, float)) or isinstance(self.walltime, bool) \
                or not math.isfinite(self.walltime) or self.walltime <= 0:
            raise BatchError(f'the walltime must be a positive number of minutes, '
                             f'not {self.walltime!r}')
        if not isinstance(self.nodes, int) or isinstance(self.nodes, bool) or self.nodes < 1:
            raise BatchError(f'the number of nodes must be a positive whole number, '
                             f'not {self.nodes!r}')
        if self.gpus_per_node < 0:
            raise BatchError(f'gpus per node must not be negative, not {self.gpus_per_node}')
        self.driver = os.path.abspath(self.driver)
        self.work_dir = os.path.abspath(self.work_dir)
        if self.journal is None:
            stem = os.path.splitext(os.path.basename(self.driver))[0]
            self.journal = os.path.join(self.work_dir, f'{stem}.journal')
        self.journal = os.path.abspath(os.path.join(self.work_dir, self.journal))
        if self.config:
            self.config = os.path.abspath(self.config)
        if self.signal_before is None:
            # a few minutes early, but never more than a quarter of a short walltime
            self.signal_before = int(min(DEFAULT_SIGNAL_BEFORE, self.walltime * 60 / 4))
        if self.signal_before < 0 or self.signal_before >= self.walltime * 60:
            raise BatchError(f'--signal-before {self.signal_before} s must be at least 0 '
                             f'and less than the walltime ({self.walltime * 60:.0f} s)')

    @property
    def name(self) -> str:
        """The job name: the given one, else derived from the driver's file name."""
        if self.job_name:
            return self.job_name
        return re.sub(r'[^A-Za-z0-9_.-]', '_',
                      os.path.splitext(os.path.basename(self.driver))[0])[:60] or 'asyncflow'

    @property
    def script_path(self) -> str:
        """Where the batch script is written (in the work directory)."""
        if self.script_file:
            return os.path.abspath(self.script_file)
        suffix = 'sbatch' if self.scheduler is BatchSystem.SLURM else 'pbs'
        return os.path.join(self.work_dir, f'{self.name}.{suffix}')

    @property
    def output_path(self) -> str:
        """The job's output file, as the scheduler names it."""
        return os.path.join(self.work_dir, f'{self.name}.%j.out' if self.scheduler is
                            BatchSystem.SLURM else f'{self.name}.out')

    def command(self, stop_after: Optional[int] = None) -> List[str]:
        """The ``radical-asyncflow-run`` command line the job runs."""
        argv = [self.python, '-m', 'radical.asyncflow.cli']
        if self.config:
            argv += ['--config', self.config]
        if self.backend:
            argv += ['--backend', self.backend]
        if self.resources is not None:
            resources = self.resources
            if not resources.lstrip().startswith('{') and os.path.exists(resources):
                resources = os.path.abspath(resources)
            argv += ['--resources', resources]
        argv += ['--work-dir', self.work_dir, '--resume', self.journal]
        if stop_after is not None:
            argv += ['--stop-after', str(stop_after)]
        if self.quiet:
            argv.append('--quiet')
        argv += [self.driver, *self.driver_args]
        return argv

    def script(self) -> str:
        """The batch script."""
        walltime_s = int(math.ceil(self.walltime * 60))
        hms = f'{walltime_s // 3600:02d}:{walltime_s % 3600 // 60:02d}:{walltime_s % 60:02d}'
        if self.scheduler is BatchSystem.SLURM:
            directives = [
                f'--job-name={self.name}',
                f'--nodes={self.nodes}',
                '--exclusive',
                f'--time={hms}',
                f'--signal=B:USR1@{self.signal_before}',
                f'--output={self.output_path}',
                f'--chdir={self.work_dir}',
            ]
            if self.gpus_per_node:
                directives.append(f'--gpus-per-node={self.gpus_per_node}')
            if self.account:
                directives.append(f'--account={self.account}')
            if self.queue:
                directives.append(f'--partition={self.queue}')
            prefix, stop_after = '#SBATCH', None
            warning = (f'# SLURM sends SIGUSR1 {self.signal_before} s before the walltime '
                       f'(--signal=B:USR1@{self.signal_before});\n'
                       f'# "exec" makes the driver the batch shell, so it receives it.')
            resubmit = f'sbatch {shlex.quote(self.script_path)}'
        else:
            select = f'select={self.nodes}'
            if self.gpus_per_node:
                select += f':ngpus={self.gpus_per_node}'
            directives = [
                f'-N {self.name}',
                f'-l {select}',
                '-l place=scatter:excl',
                f'-l walltime={hms}',
                '-j oe',
                f'-o {self.output_path}',
            ]
            if self.account:
                directives.append(f'-A {self.account}')
            if self.queue:
                directives.append(f'-q {self.queue}')
            prefix, stop_after = '#PBS', walltime_s - self.signal_before
            warning = (f'# PBS has no pre-walltime signal: radical-asyncflow-run sends itself '
                       f'SIGUSR1\n# after {stop_after} s, {self.signal_before} s before the '
                       f'walltime (--stop-after).')
            resubmit = f'qsub {shlex.quote(self.script_path)}'
        directives += list(self.batch_options)
        lines = ['#!/bin/bash',
                 *(f'{prefix} {d}' for d in directives),
                 '',
                 f'# radical.asyncflow: {os.path.basename(self.driver)} as a '
                 f'{self.scheduler.value.upper()} job, written by radical-asyncflow-run '
                 f'--submit {self.scheduler.value}.',
                 '# Exit status: 0 all tasks succeeded, 1 a task failed, 2 bad usage,',
                 '# 128+N stopped by signal N (138: the walltime warning, SIGUSR1).',
                 f'# The journal keeps finished tasks: to continue, submit again: {resubmit}',
                 '',
                 f'cd {shlex.quote(self.work_dir)} || exit 2',
                 *self.setup,
                 warning,
                 'exec ' + shlex.join(self.command(stop_after)),
                 '']
        return '\n'.join(lines)


def write_script(job: BatchJob) -> str:
    """Write the job's batch script (into its work directory, unless it names a file); the path."""
    path = job.script_path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(job.script())
    os.chmod(path, 0o755)
    return path


def submit(job: BatchJob, script_path: str) -> str:
    """Submit the written script with sbatch/qsub; the job id.

    Raises :class:`BatchError` when the submit command is missing or fails.
    """
    command = job.scheduler.submit_command
    exe = shutil.which(command)
    if exe is None:
        raise BatchError(f'--submit {job.scheduler.value}: {command} is not installed (not '
                         f'on PATH); run on a login node of the cluster, or use --dry-run '
                         f'to only write the script')
    if command == 'sbatch':
        argv = [exe, '--parsable', script_path]
    else:       # repeat the output directives: PBS emulations may not read #PBS lines
        argv = [exe, '-j', 'oe', '-o', job.output_path, script_path]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
                              cwd=job.work_dir)
    except subprocess.TimeoutExpired:
        raise BatchError(f'{command} did not answer within {CLIENT_TIMEOUT} s') from None
    if proc.returncode != 0:
        raise BatchError(f'{command} {script_path} failed (exit {proc.returncode}): '
                         f'{(proc.stderr or proc.stdout).strip()}')
    out = proc.stdout.strip().splitlines()
    if not out:
        raise BatchError(f'{command} printed no job id')
    job_id = out[-1].strip()
    if command == 'sbatch':
        job_id = job_id.split(';')[0]          # "id;cluster" on federated clusters
    return job_id
