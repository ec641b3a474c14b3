"""RAPTOR for RadicalExecutionBackend: masters and workers that run function tasks.

Checks what ``raptor_config`` asks for (:func:`parse_raptor_config`),
describes and submits the masters and their workers, and keeps track of
which of them still run (:class:`Raptor`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .describe import KeyFilter, allow_mpi_as_root, keep_node_name
from ....errors import UsageTypeError, UsageValueError


#: The file of RP's workers with this backend's payload runner imported once
#: (``raptor_file`` of a worker), and their class for each RP worker class.
WORKER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'raptor_workers.py')
WARM_WORKERS = {'DefaultWorker': 'AsyncflowDefaultWorker', 'MPIWorker': 'AsyncflowMPIWorker'}


@dataclass(frozen=True)
class WorkerSpec:
    """One ``workers`` entry of a raptor_config master."""

    ranks: int
    raptor_class: str
    options: Dict[str, Any]


@dataclass(frozen=True)
class MasterSpec:
    """One ``masters`` entry of a raptor_config."""

    options: Dict[str, Any]
    workers: Tuple[WorkerSpec, ...]


@dataclass
class Raptor:
    """A running RAPTOR master and its workers."""

    uid: str
    workers: List[str] = field(default_factory=list)
    dead_workers: set = field(default_factory=set)
    alive: bool = True

    def ended(self, uid: str) -> None:
        """The master or worker ``uid`` ended: not alive once the master or all workers are."""
        if uid == self.uid:
            self.alive = False
        else:
            self.dead_workers.add(uid)
            if self.dead_workers >= set(self.workers):
                self.alive = False


def parse_raptor_config(config: Optional[Dict[str, Any]]) -> Tuple[MasterSpec, ...]:
    """Validate ``raptor_config``; ValueError/TypeError say what is wrong."""
    if config is None:
        return ()
    if not isinstance(config, dict):
        raise UsageTypeError(f'raptor_config must be a dict, not {type(config).__name__}')
    masters = config.get('masters')
    if not isinstance(masters, list) or not masters:
        raise UsageValueError("raptor_config needs a non-empty list 'masters', e.g. "
                              "{'masters': [{'ranks': 1, 'workers': [{'ranks': 1, "
                              "'worker_type': 'DefaultWorker'}]}]}")
    specs = []
    for i, master in enumerate(masters):
        if not isinstance(master, dict):
            raise UsageTypeError(f'raptor_config master {i} must be a dict, '
                                 f'not {type(master).__name__}')
        options = {k: v for k, v in master.items() if k != 'workers'}
        workers = master.get('workers')
        if not isinstance(workers, list) or not workers:
            raise UsageValueError(f"raptor_config master {i} needs a non-empty list 'workers'")
        wspecs = []
        for j, worker in enumerate(workers):
            if not isinstance(worker, dict):
                raise UsageTypeError(f'raptor_config master {i} worker {j} must be a dict')
            wopts = dict(worker)
            ranks = wopts.pop('ranks', 1)
            if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
                raise UsageValueError(f'raptor_config master {i} worker {j}: ranks must be a '
                                      f'positive int, not {ranks!r}')
            cls = wopts.pop('worker_type', None) or wopts.pop('raptor_class', None) \
                or 'DefaultWorker'
            wspecs.append(WorkerSpec(ranks, cls, wopts))
        specs.append(MasterSpec(options, tuple(wspecs)))
    return tuple(specs)


def check_mpi_function(masters: Tuple[MasterSpec, ...], name: str, ranks: int) -> None:
    """ValueError if RAPTOR cannot run function task ``name`` on ``ranks`` ranks.

    RP 1.103 hands a function task to any worker of any master; only an
    MPIWorker with enough ranks runs it on several ranks (a DefaultWorker runs
    it once, without a communicator; a smaller MPIWorker fails it).  Workers of
    other classes (``raptor_file``) are not judged.
    """
    if ranks <= 1:
        return
    for i, master in enumerate(masters):
        for j, worker in enumerate(master.workers):
            if worker.raptor_class == 'DefaultWorker':
                what = 'a DefaultWorker (it runs a function on one process)'
            elif worker.raptor_class == 'MPIWorker' and worker.ranks < ranks:
                what = f'an MPIWorker of {worker.ranks} ranks'
            else:
                continue
            raise UsageValueError(f"function task '{name}' asks for {ranks} ranks, but worker {j} "
                                  f"of RAPTOR master {i} is {what}: every worker in raptor_config "
                                  f"must be an MPIWorker of at least {ranks} ranks (RADICAL-Pilot "
                                  f"hands a task to any worker)")


def submit_master(rp: Any, ru: Any, tmgr: Any, session_uid: str, spec: MasterSpec,
                  valid_keys: KeyFilter) -> Any:
    """Submit the master of ``spec``; return its RP task."""
    opts = dict(spec.options)
    td = rp.TaskDescription(valid_keys(opts, 'raptor master'))
    td.mode = rp.RAPTOR_MASTER
    td.ranks = td.ranks or 1
    td.named_env = td.named_env or 'rp'     # what RP would set: said here
    keep_node_name(td)
    if td.executable and td.arguments:      # a custom master program, as given
        td.uid = ru.generate_id('raptor.%(item_counter)04d', ru.ID_CUSTOM, ns=session_uid)
        td.environment['PYTHONUNBUFFERED'] = '1'
        return tmgr.submit_tasks([td])[0]
    return tmgr.submit_raptors([td])[0]


def worker_descriptions(rp: Any, spec: MasterSpec, master_uid: str,
                        valid_keys: KeyFilter) -> List[Any]:
    """The TaskDescriptions of the workers of ``spec`` under master ``master_uid``."""
    wtds = []
    for wspec in spec.workers:
        wtd = rp.TaskDescription(valid_keys(dict(wspec.options), 'raptor worker'))
        wtd.mode = rp.RAPTOR_WORKER
        wtd.ranks = wspec.ranks
        wtd.raptor_class = wspec.raptor_class
        if wspec.raptor_class in WARM_WORKERS and not wtd.raptor_file:
            # the same worker, without an import of radical.asyncflow per task
            wtd.raptor_file = WORKER_FILE
            wtd.raptor_class = WARM_WORKERS[wspec.raptor_class]
        wtd.raptor_id = master_uid
        wtd.named_env = wtd.named_env or 'rp'       # what RP would set: said here
        allow_mpi_as_root(wtd)
        keep_node_name(wtd)
        wtds.append(wtd)
    return wtds
