"""Dask workers as batch jobs: the ``cluster`` resource of DaskExecutionBackend.

``DaskExecutionBackend({'cluster': 'slurm', 'jobs': 2, 'cores': 2, 'memory':
'1GB', 'walltime': '00:10:00'})`` starts a dask-jobqueue ``SLURMCluster``
(its scheduler runs in the driver's process), submits ``jobs`` worker jobs
with ``sbatch`` and waits until their workers have connected; closing the
cluster cancels the jobs (``scancel``).  :func:`parse_jobqueue` checks the
keys (:data:`OWN_KEYS` and :data:`PASSED_KEYS`, the latter handed to
dask-jobqueue unchanged), :func:`start_cluster` starts the cluster and
:func:`wait_for_workers` waits for its workers.

Checked with dask-jobqueue 0.9.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from ...errors import BackendError, MissingDependencyError, UsageTypeError, UsageValueError

BACKEND = 'DaskExecutionBackend'
#: ``cluster`` values: the dask-jobqueue class of each batch system.
JOBQUEUE_CLUSTERS = {'slurm': 'SLURMCluster'}
#: Keys of ours: the batch system, how many worker jobs, how long to wait for them.
OWN_KEYS = ('cluster', 'jobs', 'startup_timeout')
#: Keys passed to the dask-jobqueue cluster as they are (see its documentation).
PASSED_KEYS = ('cores', 'memory', 'processes', 'walltime', 'queue', 'account', 'job_name',
               'job_cpu', 'job_mem', 'job_extra_directives', 'job_directives_skip',
               'job_script_prologue', 'worker_extra_args', 'interface', 'local_directory',
               'log_directory', 'python', 'death_timeout', 'shebang', 'nanny', 'protocol',
               'security', 'scheduler_options', 'name', 'silence_logs')
#: Seconds to wait for the workers of the jobs (they may wait in the queue first).
DEFAULT_STARTUP_TIMEOUT = 300.0


@dataclass(frozen=True)
class JobQueueSpec:
    """A checked ``cluster`` resource dict."""

    kind: str
    jobs: int
    startup_timeout: float
    options: Dict[str, Any]

    @property
    def workers(self) -> int:
        """Dask workers once every job runs: ``jobs`` x ``processes``."""
        return self.jobs * self.options['processes']

    @property
    def batch_system(self) -> str:
        return self.kind.upper()


def parse_jobqueue(resources: Mapping[str, Any]) -> Optional[JobQueueSpec]:
    """The jobqueue cluster ``resources`` ask for; None for a LocalCluster or a
    running scheduler (no ``cluster`` key, or ``'local'``).

    Raises ValueError/TypeError (one line, naming the key) for bad input.
    """
    kind = resources.get('cluster', 'local')
    if kind == 'local':
        return None
    if not isinstance(kind, str) or kind not in JOBQUEUE_CLUSTERS:
        raise UsageValueError(f"{BACKEND}: resources['cluster'] must be 'local' or one of "
                              f"{', '.join(map(repr, JOBQUEUE_CLUSTERS))}, not {kind!r}")
    for key in ('scheduler_address', 'scheduler_file'):
        if resources.get(key):
            raise UsageValueError(f"{BACKEND}: resources['cluster']={kind!r} starts a cluster; "
                                  f"it cannot go with {key!r} (a running cluster)")
    unknown = sorted(set(resources) - set(OWN_KEYS) - set(PASSED_KEYS))
    if unknown:
        raise UsageValueError(f"{BACKEND}: unknown key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(map(repr, unknown))} for cluster {kind!r} (known: "
                              f"{', '.join(OWN_KEYS + PASSED_KEYS)})")
    for key in ('cores', 'memory'):
        if key not in resources:
            raise UsageValueError(f"{BACKEND}: cluster {kind!r} needs {key!r} (per worker job), "
                                  f"e.g. {{'cluster': {kind!r}, 'jobs': 2, 'cores': 4, "
                                  f"'memory': '8GB'}}")
    jobs = _whole(resources, 'jobs', 1)
    cores = _whole(resources, 'cores', 1)
    processes = _whole(resources, 'processes', 1)
    if processes > cores:
        raise UsageValueError(f"{BACKEND}: resources['processes']={processes} is more than "
                              f"resources['cores']={cores} (worker processes per job)")
    memory = resources['memory']
    if not isinstance(memory, str) or not memory.strip():
        raise UsageTypeError(f"{BACKEND}: resources['memory'] must be a size such as '4GB', "
                             f"not {memory!r}")
    walltime = resources.get('walltime')
    if walltime is not None and (not isinstance(walltime, str) or not walltime.strip()):
        raise UsageTypeError(f"{BACKEND}: resources['walltime'] must be a string such as "
                             f"'01:00:00', not {walltime!r}")
    timeout = resources.get('startup_timeout', DEFAULT_STARTUP_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise UsageValueError(f"{BACKEND}: resources['startup_timeout'] must be a positive "
                              f"number of seconds, not {timeout!r}")
    for key in ('job_extra_directives', 'job_script_prologue', 'job_directives_skip',
                'worker_extra_args'):
        value = resources.get(key)
        if value is not None and (isinstance(value, str) or not isinstance(value, (list, tuple))
                                  or not all(isinstance(v, str) for v in value)):
            raise UsageTypeError(f"{BACKEND}: resources[{key!r}] must be a list of strings, "
                                 f"not {value!r}")
    options = {k: v for k, v in resources.items() if k in PASSED_KEYS}
    options.update(cores=cores, processes=processes)
    # the scheduler's dashboard on a free port, not 8787
    options['scheduler_options'] = {'dashboard_address': ':0',
                                    **(options.get('scheduler_options') or {})}
    return JobQueueSpec(kind, jobs, float(timeout), options)


def _whole(resources: Mapping[str, Any], key: str, default: int) -> int:
    value = resources.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageValueError(f"{BACKEND}: resources[{key!r}] must be a whole number >= 1, "
                              f"not {value!r}")
    return value


def import_jobqueue() -> Any:
    """The dask_jobqueue module, or MissingDependencyError naming the extra."""
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise MissingDependencyError(BACKEND, 'dask_jobqueue', 'jobqueue') from exc
    return dask_jobqueue


async def start_cluster(spec: JobQueueSpec) -> Any:
    """Start the cluster's scheduler and submit its worker jobs; the cluster."""
    cls = getattr(import_jobqueue(), JOBQUEUE_CLUSTERS[spec.kind])
    cluster = cls(asynchronous=True, **spec.options)
    try:
        await cluster
        cluster.scale(jobs=spec.jobs)
    except BaseException:
        await asyncio.shield(cluster.close())
        raise
    return cluster


def job_ids(cluster: Any) -> List[str]:
    """The batch job ids of the cluster's worker jobs (those submitted so far)."""
    ids = []
    for job in list(getattr(cluster, 'workers', {}).values()):
        job_id = getattr(job, 'job_id', None)
        if job_id:
            ids.append(str(job_id))
    return ids


async def connected_workers(client: Any) -> int:
    """Workers the scheduler knows as running."""
    info = await client.scheduler.identity(n_workers=-1)
    return sum(1 for worker in info.get('workers', {}).values()
               if worker.get('status', 'running') == 'running')


async def wait_for_workers(client: Any, cluster: Any, spec: JobQueueSpec) -> None:
    """Wait until every worker of the jobs is connected; BackendError after the
    startup timeout (the jobs are left to the caller to cancel)."""
    deadline = time.monotonic() + spec.startup_timeout
    while True:
        connected = await connected_workers(client)
        if connected >= spec.workers:
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    raise BackendError(f'{BACKEND}: {connected} of {spec.workers} Dask workers of '
                       f'{spec.jobs} {spec.batch_system} job(s) '
                       f'{", ".join(job_ids(cluster)) or "(none submitted)"} connected '
                       f'within {spec.startup_timeout:.0f} s (startup_timeout): are the jobs '
                       f'still queued (squeue), or did they fail (their output: '
                       f'log_directory)?')
