"""Runs tasks as RADICAL-Pilot tasks on one pilot.

``await RadicalExecutionBackend(resources, raptor_config=None)`` opens an
``rp.Session`` (its directory is created in the current directory, or in
``work_dir``), submits one pilot described by ``resources`` (keys of
``rp.PilotDescription``: ``resource``, ``cores``, ``gpus``, ``nodes``,
``runtime``, ``queue``, ``project``, ``sandbox``...) and waits until it is
active.  When neither ``cores`` nor ``nodes`` is given the pilot gets one
node's worth of cores and GPUs from the resource's configuration
(``local.*``: this machine's CPU count and no GPU); ``runtime`` defaults to
:data:`DEFAULT_RUNTIME` minutes.

Each engine task becomes one RP task:

* executable task: ``/bin/sh -c <command>`` in executable mode, with
  ``ranks``, ``cores_per_rank``, ``gpus_per_rank``, ``environment``,
  ``pre_exec``, ``named_env``, ``sandbox``... from its ``task_description``.
  The result is its stdout (all ranks); a non-zero exit fails the task with a
  :class:`TaskExecutionError` carrying the exit code, the stderr tail and the
  task sandbox.
* function task: with ``raptor_config``, a RAPTOR function task on the
  configured masters and workers; without it, an executable task that runs
  the function with the client's Python (``sys.executable``: the pilot must
  see the client's file system, as ``local.*`` and batch-allocation drivers
  do).  Either way the function, its arguments, its return value and any
  exception travel pickled with ``dill``, so they come back intact.
* service task (executables only): RP's service mode; the future resolves
  with the service's start-up info (the ``info_pattern`` match, else
  ``'service is up'``) as soon as the service runs.  Services are stopped at
  shutdown.

RP starts helper programs by name from ``PATH`` and picks the pilot's Python
from ``VIRTUAL_ENV``; both are set from ``sys.executable`` so a driver run
with a non-activated virtualenv works.  Pilot start-up is bounded by
``startup_timeout`` (default :data:`PILOT_STARTUP_TIMEOUT` seconds, or
``$RADICAL_ASYNCFLOW_PILOT_TIMEOUT``); a pilot that fails or does not become
active in time raises :class:`BackendError` and leaves nothing behind.

Tested with radical.pilot 1.103 (see :data:`TESTED_RP_VERSIONS`).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import inspect
import itertools
import logging
import os
import pickle
import shutil
import signal
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ...constants import StateMapper
from ...errors import BackendError, MissingDependencyError, TaskExecutionError
from ._command import STDERR_TAIL, CommandResult, command_failure
from .base import BaseExecutionBackend, Session, TaskDict

# The values of rp.DONE, rp.FAILED, rp.CANCELED and rp.AGENT_EXECUTING:
# registered here without importing radical.pilot, checked in __init__.
StateMapper.register_backend_states('radical', done_state='DONE', failed_state='FAILED',
                                    canceled_state='CANCELED', running_state='AGENT_EXECUTING')

#: radical.pilot releases this backend is tested with (major.minor).
TESTED_RP_VERSIONS = ('1.103',)
#: Seconds allowed for the pilot to become active (override: startup_timeout=...).
PILOT_STARTUP_TIMEOUT = 600.0
#: Pilot walltime in minutes when ``resources`` gives none (RP's own default is 10).
DEFAULT_RUNTIME = 60
#: Seconds a service task may take to come up (task_description 'startup_timeout').
SERVICE_STARTUP_TIMEOUT = 300
#: Seconds allowed for closing the session, then for its processes to exit.
CLOSE_TIMEOUT = 120.0
PROCESS_EXIT_TIMEOUT = 10.0
TASK_STOP_TIMEOUT = 10.0
PILOT_CANCEL_TIMEOUT = 30.0
#: RP keeps only the last 1024 characters of stdout/stderr in the task.
_RP_TAIL_MARK = '[... CONTENT SHORTENED ...]'
_RP_TAIL_LENGTH = 1024
#: task_description keys the backend sets itself.
_RESERVED_KEYS = frozenset({'uid', 'name', 'mode', 'executable', 'arguments', 'function',
                            'args', 'kwargs', 'code', 'command', 'raptor_id', 'pilot'})
#: Key of the task dict under which implicit data links are recorded.
IMPLICIT_INPUTS_KEY = 'radical_implicit_inputs'
#: Files of the function trampoline in the task sandbox (hidden: not linked on).
_PAYLOAD_IN = '.asyncflow.call'
_PAYLOAD_OUT = '.asyncflow.result'
#: Staging action of inputs the client downloads before the task is submitted.
_FETCH = 'asyncflow.fetch'

log = logging.getLogger('radical.asyncflow.radical')


class TaskKind(enum.Enum):
    """How an engine task runs on the pilot."""

    EXECUTABLE = 'executable'
    FUNCTION = 'function'           # through the trampoline, as an executable
    RAPTOR_FUNCTION = 'raptor'      # on a RAPTOR worker
    SERVICE = 'service'


class Phase(enum.Enum):
    """Where a submitted task is, as far as the engine was told."""

    SUBMITTED = 'submitted'
    RUNNING = 'running'
    FINAL = 'final'                 # DONE/FAILED/CANCELED reported (services: up)


@dataclass
class _Submitted:
    """One engine task and the RP task that runs it."""

    task: TaskDict
    kind: TaskKind
    rp_uid: str
    result_file: Optional[str] = None       # function tasks: where the outcome lands
    master: Optional[str] = None            # raptor function tasks
    startup_timeout: float = SERVICE_STARTUP_TIMEOUT
    phase: Phase = Phase.SUBMITTED


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
class _Raptor:
    """A running RAPTOR master and its workers."""

    uid: str
    workers: List[str] = field(default_factory=list)
    dead_workers: set = field(default_factory=set)
    alive: bool = True


def parse_raptor_config(config: Optional[Dict[str, Any]]) -> Tuple[MasterSpec, ...]:
    """Validate ``raptor_config``; ValueError/TypeError say what is wrong."""
    if config is None:
        return ()
    if not isinstance(config, dict):
        raise TypeError(f'raptor_config must be a dict, not {type(config).__name__}')
    masters = config.get('masters')
    if not isinstance(masters, list) or not masters:
        raise ValueError("raptor_config needs a non-empty list 'masters', e.g. "
                         "{'masters': [{'ranks': 1, 'workers': [{'ranks': 1, "
                         "'worker_type': 'DefaultWorker'}]}]}")
    specs = []
    for i, master in enumerate(masters):
        if not isinstance(master, dict):
            raise TypeError(f'raptor_config master {i} must be a dict, not {type(master).__name__}')
        options = {k: v for k, v in master.items() if k != 'workers'}
        workers = master.get('workers')
        if not isinstance(workers, list) or not workers:
            raise ValueError(f"raptor_config master {i} needs a non-empty list 'workers'")
        wspecs = []
        for j, worker in enumerate(workers):
            if not isinstance(worker, dict):
                raise TypeError(f'raptor_config master {i} worker {j} must be a dict')
            wopts = dict(worker)
            ranks = wopts.pop('ranks', 1)
            if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
                raise ValueError(f'raptor_config master {i} worker {j}: ranks must be a '
                                 f'positive int, not {ranks!r}')
            cls = wopts.pop('worker_type', None) or wopts.pop('raptor_class', None) \
                or 'DefaultWorker'
            wspecs.append(WorkerSpec(ranks, cls, wopts))
        specs.append(MasterSpec(options, tuple(wspecs)))
    return tuple(specs)


class RadicalExecutionBackend(BaseExecutionBackend):
    """Execution on one RADICAL-Pilot pilot."""

    #: RUNNING is RP's AGENT_EXECUTING: after the task waited for cores.
    reports_running = True

    def __init__(self, resources: Dict[str, Any], raptor_config: Optional[Dict[str, Any]] = None,
                 *, work_dir: Optional[str] = None,
                 startup_timeout: Optional[float] = None) -> None:
        try:
            import radical.pilot as rp
            import radical.utils as ru
        except ImportError as exc:
            raise MissingDependencyError('RadicalExecutionBackend', 'radical.pilot',
                                         'radical') from exc
        if not isinstance(resources, dict):
            raise TypeError(f'RadicalExecutionBackend needs a dict of PilotDescription keys, '
                            f'not {type(resources).__name__}')
        unknown = sorted(set(resources) - set(rp.PilotDescription._schema))
        if unknown:
            raise ValueError(f'RadicalExecutionBackend: {", ".join(map(repr, unknown))} '
                             f'not a PilotDescription key (known: resource, cores, gpus, '
                             f'nodes, runtime, queue, project, sandbox, access_schema, ...)')
        self._rp = rp
        self._ru = ru
        if not str(rp.version).startswith(tuple(v + '.' for v in TESTED_RP_VERSIONS)):
            log.warning('RadicalExecutionBackend is tested with radical.pilot %s, not %s',
                        ' and '.join(TESTED_RP_VERSIONS), rp.version)
        StateMapper.register_backend_states('radical', done_state=rp.DONE,
                                            failed_state=rp.FAILED,
                                            canceled_state=rp.CANCELED,
                                            running_state=rp.AGENT_EXECUTING)
        self._states = StateMapper('radical')
        self.resources = dict(resources)
        self.raptor_config = raptor_config
        self._masters_spec = parse_raptor_config(raptor_config)
        if startup_timeout is None:
            startup_timeout = float(os.environ.get('RADICAL_ASYNCFLOW_PILOT_TIMEOUT',
                                                   PILOT_STARTUP_TIMEOUT))
        self.startup_timeout = startup_timeout
        self._work_dir = os.path.abspath(work_dir or os.getcwd())
        self.session = Session(self._work_dir)

        self.rp_session: Any = None
        self.pmgr: Any = None
        self.tmgr: Any = None
        self.pilot: Any = None
        self.pilot_sandbox: Optional[str] = None        # path on the resource
        self._state = 'NEW'
        self._lock = threading.RLock()
        self._abort = threading.Event()
        self._by_rp_uid: Dict[str, _Submitted] = {}
        self._current: Dict[str, str] = {}              # engine uid -> latest rp uid
        self._attempts: Dict[str, int] = {}
        self._sandboxes: Dict[str, str] = {}            # engine uid -> sandbox path
        self._raptors: Dict[str, _Raptor] = {}          # master uid -> raptor
        self._raptor_of_worker: Dict[str, str] = {}
        self._next_master = itertools.count()
        self._watchers: List[threading.Thread] = []
        self._payload_dir = ''
        self._warned_keys: set = set()

    # -- lifecycle -----------------------------------------------------------

    async def _async_init(self) -> None:
        self._state = 'STARTING'
        deadline = time.monotonic() + self.startup_timeout
        start = _in_thread(self._start, deadline, name='asyncflow-rp-start')
        try:
            # the thread checks the deadline itself; this is the safety net
            await asyncio.wait_for(asyncio.shield(start), self.startup_timeout + 60)
        except BaseException as exc:
            self._abort.set()
            self._state = 'FAILED'
            if not start.done():        # hung in RP: tear down what exists
                await asyncio.shield(_in_thread(self._close, name='asyncflow-rp-close'))
            if isinstance(exc, asyncio.TimeoutError):
                raise BackendError(f'RadicalExecutionBackend: the pilot did not start within '
                                   f'{self.startup_timeout:.0f} s') from None
            raise
        self._state = 'RUNNING'

    def _start(self, deadline: float) -> None:
        """Open the session, start the pilot and the raptors (runs in a thread)."""
        rp = self._rp
        _prepare_environment()
        try:
            try:
                self.rp_session = rp.Session(cfg={'base': self._work_dir})
            except Exception as exc:
                raise BackendError(f'RadicalExecutionBackend could not open an rp.Session in '
                                   f'{self._work_dir}: {type(exc).__name__}: {exc}') from exc
            self.session.path = self.rp_session.path
            self._payload_dir = os.path.join(self.rp_session.path, 'asyncflow')
            os.makedirs(self._payload_dir, exist_ok=True)
            self.pmgr = rp.PilotManager(session=self.rp_session)
            self.tmgr = rp.TaskManager(session=self.rp_session)
            self.tmgr.register_callback(self._on_rp_state)
            description = self._pilot_description()
            log.info('submitting pilot %s', description)
            self.pilot = self.pmgr.submit_pilots(rp.PilotDescription(description))
            self.tmgr.add_pilots(self.pilot)
            self._wait_for_pilot(deadline)
            self.pilot_sandbox = self._ru.Url(self.pilot.pilot_sandbox).path.rstrip('/')
            self._start_raptors()
        except BaseException:
            self._close()
            raise

    def _pilot_description(self) -> Dict[str, Any]:
        """``resources`` with explicit cores, gpus and runtime."""
        pd = dict(self.resources)
        resource = pd.setdefault('resource', 'local.localhost')
        pd.setdefault('runtime', DEFAULT_RUNTIME)
        # RP's default kills this very process when the pilot fails; the
        # engine reports the failure instead
        pd.setdefault('exit_on_error', False)
        try:
            rcfg = self.rp_session.get_resource_config(resource, pd.get('access_schema'))
        except Exception as exc:
            raise BackendError(f"RadicalExecutionBackend: unknown resource {resource!r}: {exc}. "
                               f"Known: {', '.join(self.rp_session.list_resources())}") from exc
        cores_per_node = int(rcfg.get('cores_per_node') or 0)
        gpus_per_node = int(rcfg.get('gpus_per_node') or 0)
        if resource.startswith('local.'):       # the config's numbers are made up
            cores_per_node = os.cpu_count() or 1
            gpus_per_node = 0
        nodes = int(pd.get('nodes') or 0)
        if not pd.get('cores'):
            if not cores_per_node:
                raise BackendError(f"RadicalExecutionBackend: resource {resource!r} does not "
                                   f"say how many cores a node has: give 'cores' in resources")
            pd['cores'] = (nodes or 1) * cores_per_node
        if pd.get('gpus') is None:
            pd['gpus'] = (nodes or 1) * gpus_per_node
        return pd

    def _wait_for_pilot(self, deadline: float) -> None:
        rp = self._rp
        final = (rp.FAILED, rp.CANCELED, rp.DONE)
        while True:
            state = self.pilot.state
            if state == rp.PMGR_ACTIVE:
                return
            if state in final:
                raise BackendError(f'RadicalExecutionBackend: pilot {self.pilot.uid} on '
                                   f'{self.pilot.resource} ended {state} during start-up'
                                   f'{self._pilot_diagnostics()}')
            if self._abort.is_set():
                raise BackendError('RadicalExecutionBackend: pilot start-up was aborted')
            if time.monotonic() > deadline:
                raise BackendError(f'RadicalExecutionBackend: pilot {self.pilot.uid} did not '
                                   f'become active within {self.startup_timeout:.0f} s '
                                   f'(state {state}){self._pilot_diagnostics()}')
            self.pilot.wait(state=[rp.PMGR_ACTIVE, *final], timeout=0.5)

    def _pilot_diagnostics(self) -> str:
        """The tails of the pilot's bootstrap output, when they can be read."""
        parts = []
        try:
            sandbox = self._ru.Url(self.pilot.pilot_sandbox).path
        except Exception:
            sandbox = ''
        for name in ('bootstrap_0.out', 'bootstrap_0.err', 'agent_0.err'):
            text = _read_tail(os.path.join(sandbox, name), 1500) if sandbox else ''
            if text.strip():
                parts.append(f'--- {name} (tail):\n{text.rstrip()}')
        # A pilot refused by the launcher never gets a sandbox: its reason is
        # in the client session's launcher log.
        session_dir = getattr(self.rp_session, 'path', None) or ''
        launcher_log = os.path.join(session_dir, 'pmgr_launching.0000.log')
        errors = [line for line in _read_tail(launcher_log, 20000).splitlines()
                  if 'ERROR' in line or 'Error' in line or 'xception' in line]
        if errors:
            parts.append('--- pmgr_launching.0000.log (errors):\n' + '\n'.join(errors[-8:]))
        where = ''
        if sandbox:
            missing = '' if os.path.isdir(sandbox) else ' (never created: the pilot was not launched)'
            where = f'\npilot sandbox: {sandbox}{missing}'
        return where + ('\n' + '\n'.join(parts) if parts else '')

    def _start_raptors(self) -> None:
        rp = self._rp
        for spec in self._masters_spec:
            opts = dict(spec.options)
            td = rp.TaskDescription(self._valid_keys(opts, 'raptor master'))
            td.mode = rp.RAPTOR_MASTER
            td.ranks = td.ranks or 1
            if td.executable and td.arguments:      # a custom master program, as given
                td.uid = self._ru.generate_id('raptor.%(item_counter)04d', self._ru.ID_CUSTOM,
                                              ns=self.rp_session.uid)
                td.named_env = td.named_env or 'rp'
                td.environment['PYTHONUNBUFFERED'] = '1'
                master = self.tmgr.submit_tasks([td])[0]
            else:
                master = self.tmgr.submit_raptors([td])[0]
            raptor = _Raptor(master.uid)
            wtds = []
            for wspec in spec.workers:
                wtd = rp.TaskDescription(self._valid_keys(dict(wspec.options), 'raptor worker'))
                wtd.mode = rp.RAPTOR_WORKER
                wtd.ranks = wspec.ranks
                wtd.raptor_class = wspec.raptor_class
                wtd.raptor_id = master.uid
                _allow_mpi_as_root(wtd)
                wtds.append(wtd)
            with self._lock:
                self._raptors[master.uid] = raptor
            for worker in self.tmgr.submit_workers(wtds):
                with self._lock:
                    raptor.workers.append(worker.uid)
                    self._raptor_of_worker[worker.uid] = master.uid
            log.info('raptor %s with workers %s', master.uid, raptor.workers)

    async def shutdown(self) -> None:
        if self._state in ('STOPPING', 'STOPPED'):
            return
        self._state = 'STOPPING'
        self._abort.set()
        with self._lock:
            pending = [s for s in self._by_rp_uid.values() if s.phase is not Phase.FINAL]
        for sub in pending:
            self._finish(sub, self._states.CANCELED)
        await asyncio.shield(_in_thread(self._close, name='asyncflow-rp-close'))
        for watcher in self._watchers:
            watcher.join(timeout=1.0)
        self._state = 'STOPPED'

    def _close(self) -> None:
        """Close the session, then make sure none of its processes is left."""
        session, self.rp_session = self.rp_session, None
        if session is None:
            return
        sid = session.uid
        self._stop_tasks()
        closer = threading.Thread(target=_close_session, args=(session, self.pmgr), daemon=True,
                                  name='asyncflow-rp-session-close')
        closer.start()
        closer.join(CLOSE_TIMEOUT)
        if closer.is_alive():
            log.warning('closing RP session %s took more than %.0f s', sid, CLOSE_TIMEOUT)
        _reap_session_processes(sid, PROCESS_EXIT_TIMEOUT)

    def _stop_tasks(self) -> None:
        """Cancel every unfinished RP task (services, RAPTOR masters and workers
        included) and wait, bounded, until RP says they ended: the pilot's
        own shutdown leaves such processes behind."""
        if self.tmgr is None:
            return
        try:
            alive = [t for t in self.tmgr.get_tasks() if t.state not in self._rp.FINAL]
            if alive:
                self.tmgr.cancel_tasks([t.uid for t in alive])
                deadline = time.monotonic() + TASK_STOP_TIMEOUT
                while any(t.state not in self._rp.FINAL for t in alive) \
                        and time.monotonic() < deadline:
                    time.sleep(0.1)
        except Exception as exc:
            log.warning('cancelling the remaining RP tasks: %s', exc)

    def state(self) -> str:
        return self._state

    @property
    def cores(self) -> int:
        """Cores the pilot's agent schedules on (RP rounds up to whole nodes)."""
        return self._count('cores')

    @property
    def gpus(self) -> int:
        """GPUs the pilot's agent schedules on."""
        return self._count('gpus')

    def _count(self, what: str) -> int:
        try:
            return sum(len(node[what]) for node in self.pilot.resource_details['node_list'])
        except Exception:
            return int((self.pilot.description.get(what) if self.pilot else 0) or 0)

    # -- tasks -----------------------------------------------------------------

    async def submit_tasks(self, tasks: List[TaskDict]) -> None:
        if self._state != 'RUNNING':
            raise RuntimeError(f'RadicalExecutionBackend is not running ({self._state}): '
                               + ('await it first: backend = await RadicalExecutionBackend({...})'
                                  if self._state == 'NEW' else 'it has been shut down'))
        await _in_thread(self._submit, list(tasks), name='asyncflow-rp-submit')

    def _submit(self, tasks: List[TaskDict]) -> None:
        batch: List[Tuple[_Submitted, Any]] = []
        services: List[Tuple[_Submitted, Any]] = []
        for task in tasks:
            try:
                sub, td = self._prepare(task)
            except Exception as exc:
                task['exception'] = exc
                self.task_state_cb(task, self._states.FAILED)
                continue
            (services if sub.kind is TaskKind.SERVICE else batch).append((sub, td))
        # RP's agent starts a service inside its intake: a service that fails
        # fails the tasks submitted with it, so each goes on its own.
        for group in ([batch] if batch else []) + [[s] for s in services]:
            with self._lock:
                for sub, _ in group:
                    self._by_rp_uid[sub.rp_uid] = sub
                    self._current[sub.task['uid']] = sub.rp_uid
            try:
                self.tmgr.submit_tasks([td for _, td in group])
            except Exception as exc:
                for sub, _ in group:
                    sub.task['exception'] = BackendError(
                        f"RADICAL-Pilot refused task '{sub.task.get('name')}' "
                        f"({sub.task['uid']}): {type(exc).__name__}: {exc}")
                    self._finish(sub, self._states.FAILED)

    def _prepare(self, task: TaskDict) -> Tuple[_Submitted, Any]:
        """The record and the RP TaskDescription for an engine task."""
        rp_uid = self._new_rp_uid(task['uid'])
        opts = dict(task.get('task_backend_specific_kwargs') or {})
        if opts.get('input_staging'):
            opts['input_staging'] = [self._fetch(d, rp_uid) for d in opts['input_staging']]
        td = self.build_task(rp_uid, task, opts)
        kind = TaskKind(td.metadata['asyncflow_kind'])
        sub = _Submitted(task, kind, rp_uid, master=td.get('raptor_id') or None)
        if kind is TaskKind.FUNCTION:
            sub.result_file = self._write_payload(task, rp_uid, td)
        elif kind is TaskKind.RAPTOR_FUNCTION:
            blob = base64.b64encode(_function_payload(task)).decode()
            td.function = self._rp.PythonTask(_raptor_entry, (blob,), {})
        elif kind is TaskKind.SERVICE:
            sub.startup_timeout = float(td.startup_timeout)
        return sub, td

    def _new_rp_uid(self, uid: str) -> str:
        """The engine uid, or ``uid.N`` if RP knows it already: a retried task,
        a second engine on this backend, or RP's own ``task.NNNNNN`` ids."""
        known = getattr(self.tmgr, '_known_uids', None) or ()
        count = self._attempts.get(uid, 0)
        while True:
            count += 1
            rp_uid = uid if count == 1 else f'{uid}.{count}'
            if rp_uid not in known and rp_uid not in self._by_rp_uid:
                break
        self._attempts[uid] = count
        return rp_uid

    def build_task(self, uid: str, task_desc: TaskDict,
                   task_backend_specific_kwargs: Dict[str, Any]) -> Any:
        """An ``rp.TaskDescription`` for ``task_desc`` with RP uid ``uid``.

        Function tasks get their call (payload) attached at submission.
        """
        rp = self._rp
        name = task_desc.get('name') or uid
        is_function = task_desc.get('function') is not None
        if task_desc.get('is_service') and is_function:
            raise ValueError('RadicalExecutionBackend does not support function service tasks')
        opts = self._valid_keys(dict(task_backend_specific_kwargs or {}), f"task '{name}'")
        links = list(task_desc.get(IMPLICIT_INPUTS_KEY) or ())
        td = rp.TaskDescription(opts)
        td.uid = uid
        td.name = str(name)
        td.metadata = {**(td.metadata or {}), 'asyncflow_uid': task_desc['uid']}
        if is_function and self._raptors:
            kind = TaskKind.RAPTOR_FUNCTION
            td.mode = rp.TASK_FUNCTION
            td.raptor_id = self._pick_master(name)
            for key in ('pre_exec', 'post_exec', 'pre_launch'):
                if td.get(key):
                    log.warning("task '%s': %s is ignored for RAPTOR function tasks", name, key)
        elif is_function:
            kind = TaskKind.FUNCTION
            td.mode = rp.TASK_EXECUTABLE
            td.executable = sys.executable
            td.arguments = ['-c', _TRAMPOLINE_COMMAND, _PAYLOAD_IN, _PAYLOAD_OUT]
            td.stage_on_error = True
        else:
            command = task_desc.get('executable')
            if not isinstance(command, str) or not command.strip():
                raise ValueError(f"executable task '{name}' has no command")
            if task_desc.get('is_service'):
                kind = TaskKind.SERVICE
                td.mode = rp.TASK_SERVICE
                td.executable = _service_command(command)
                td.arguments = []
                td.named_env = td.named_env or 'rp'     # finds radical-pilot-service-wrapper
                td.startup_timeout = td.startup_timeout or SERVICE_STARTUP_TIMEOUT
            else:
                kind = TaskKind.EXECUTABLE
                td.mode = rp.TASK_EXECUTABLE
                td.executable = '/bin/sh'
                td.arguments = ['-c', _shell_argument(command)]
        if links and kind is not TaskKind.RAPTOR_FUNCTION and kind is not TaskKind.FUNCTION:
            td.pre_exec = [_link_inputs_command(links), *(td.pre_exec or [])]
        td.metadata['asyncflow_kind'] = kind.value
        _allow_mpi_as_root(td)
        return td

    def _valid_keys(self, opts: Dict[str, Any], what: str) -> Dict[str, Any]:
        """``opts`` without keys RP's TaskDescription does not know (warned once)."""
        schema = self._rp.TaskDescription._schema
        for key in list(opts):
            if key in schema and key not in _RESERVED_KEYS or \
                    (what.startswith('raptor') and key in ('executable', 'arguments', 'uid')):
                continue
            value = opts.pop(key)
            if key not in self._warned_keys:
                self._warned_keys.add(key)
                log.warning('%s: task_description key %r (%r) is not used by '
                            'RadicalExecutionBackend', what, key, value)
        return opts

    def _pick_master(self, name: str) -> str:
        with self._lock:
            alive = [r.uid for r in self._raptors.values() if r.alive]
        if not alive:
            raise BackendError(f"function task '{name}': no RAPTOR master is running "
                               f"(they failed; see the raptor.* task sandboxes in "
                               f"{self.pilot_sandbox})")
        return alive[next(self._next_master) % len(alive)]

    def _write_payload(self, task: TaskDict, rp_uid: str, td: Any) -> str:
        """Write the function call for the trampoline; return the result's client path."""
        call = os.path.join(self._payload_dir, f'{rp_uid}.call')
        result = os.path.join(self._payload_dir, f'{rp_uid}.result')
        with open(call, 'wb') as f:
            f.write(_function_payload(task))
        td.input_staging = [*(td.input_staging or []),
                            {'source': f'file://localhost{call}',
                             'target': f'task:///{_PAYLOAD_IN}',
                             'action': self._rp.TRANSFER}]
        td.output_staging = [*(td.output_staging or []),
                             {'source': f'task:///{_PAYLOAD_OUT}',
                              'target': f'file://localhost{result}',
                              'action': self._rp.TRANSFER}]
        return result

    def _fetch(self, directive: Any, rp_uid: str) -> Any:
        """Download an http/https/ftp input on the client; stage the copy."""
        if not isinstance(directive, dict) or directive.get('action') != _FETCH:
            return directive
        url = directive['source']
        target = directive['target'].split('task:///', 1)[-1]
        folder = os.path.join(self._payload_dir, 'inputs', rp_uid)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, os.path.basename(target) or 'download')
        try:
            with urllib.request.urlopen(url, timeout=300) as response, open(path, 'wb') as f:
                shutil.copyfileobj(response, f)
        except Exception as exc:
            raise BackendError(f'could not download {url}: {type(exc).__name__}: {exc}') from exc
        return {**directive, 'source': f'file://localhost{path}', 'action': self._rp.TRANSFER}

    async def cancel_task(self, uid: str) -> bool:
        with self._lock:
            sub = self._by_rp_uid.get(self._current.get(uid, ''))
        if sub is None or sub.phase is Phase.FINAL or self.tmgr is None:
            return False
        self.tmgr.cancel_tasks([sub.rp_uid])        # asynchronous in RP
        return True

    # -- state reports (RP's callback thread) ------------------------------------

    def _on_rp_state(self, rp_task: Any, state: str) -> None:
        try:
            with self._lock:
                sub = self._by_rp_uid.get(rp_task.uid)
            if sub is None:
                self._on_raptor_state(rp_task, state)
                return
            if state in self._states.terminal_states:
                self._sandboxes[sub.task['uid']] = self._sandbox_path(rp_task)
            if sub.phase is Phase.FINAL:
                return
            if state == self._states.RUNNING:
                with self._lock:
                    sub.phase = Phase.RUNNING
                self.task_state_cb(sub.task, state)
                if sub.kind is TaskKind.SERVICE:
                    self._watch_service(sub, rp_task)
            elif state == self._states.DONE:
                self._on_done(sub, rp_task)
            elif state == self._states.FAILED:
                self._on_failed(sub, rp_task)
            elif state == self._states.CANCELED:
                self._finish(sub, state)
            else:
                self.task_state_cb(sub.task, state)
        except Exception:               # never let an error kill RP's callback thread
            log.exception('handling state %s of %s failed', state, getattr(rp_task, 'uid', '?'))

    def _finish(self, sub: _Submitted, state: str) -> bool:
        """The one place a task's final state is reported; False if it already was."""
        with self._lock:
            if sub.phase is Phase.FINAL:
                return False
            sub.phase = Phase.FINAL
        self.task_state_cb(sub.task, state)
        return True

    def _on_done(self, sub: _Submitted, rp_task: Any) -> None:
        task = sub.task
        if sub.kind in (TaskKind.FUNCTION, TaskKind.RAPTOR_FUNCTION):
            task['stdout'] = rp_task.stdout
            task['stderr'] = rp_task.stderr
            ok, value = self._function_outcome(sub, rp_task)
            if ok:
                task['return_value'] = value
                self._finish(sub, self._states.DONE)
            else:
                task['exception'] = value
                self._finish(sub, self._states.FAILED)
            return
        result = self._command_result(rp_task)
        task['stdout'] = result.stdout
        task['stderr'] = result.stderr
        task['exit_code'] = result.exit_code
        self._finish(sub, self._states.DONE)

    def _on_failed(self, sub: _Submitted, rp_task: Any) -> None:
        task = sub.task
        name = task.get('name', task['uid'])
        sandbox = self._sandbox_path(rp_task)
        if sub.kind is TaskKind.FUNCTION and rp_task.exit_code == 0:
            self._on_done(sub, rp_task)         # failed in output staging: the outcome tells
            return
        if sub.kind in (TaskKind.EXECUTABLE, TaskKind.SERVICE) and rp_task.exit_code:
            result = self._command_result(rp_task)
            task['stdout'] = result.stdout
            task['stderr'] = result.stderr
            task['exit_code'] = result.exit_code
            error = command_failure(task, result)
            task['exception'] = TaskExecutionError(
                f'{error}\ntask sandbox: {sandbox}', task_name=error.task_name,
                command=error.command, exit_code=error.exit_code, stderr=error.stderr)
        elif sub.kind is TaskKind.RAPTOR_FUNCTION and rp_task.return_value:
            ok, value = self._function_outcome(sub, rp_task)
            task['exception'] = value if not ok else BackendError(
                f"function task '{name}' returned but RADICAL-Pilot marked it FAILED")
        else:
            detail = rp_task.exception or ''
            if rp_task.exception_detail:
                detail += f'\n{rp_task.exception_detail}'
            stderr = (rp_task.stderr or '').strip()
            what = 'function' if sub.kind in (TaskKind.FUNCTION, TaskKind.RAPTOR_FUNCTION) \
                else 'task'
            message = (f"{what} '{name}' ({task['uid']}) failed in RADICAL-Pilot"
                       + (f' with exit code {rp_task.exit_code}' if rp_task.exit_code else ''))
            if detail.strip():
                message += f':\n{detail.strip()}'
            if stderr:
                message += f'\nstderr:\n{stderr[-STDERR_TAIL:]}'
            message += f'\ntask sandbox: {sandbox}'
            task['stderr'] = rp_task.stderr
            task['exit_code'] = rp_task.exit_code
            task['exception'] = (TaskExecutionError(message, task_name=str(name),
                                                    command=str(task.get('executable')),
                                                    exit_code=rp_task.exit_code, stderr=stderr)
                                 if sub.kind is TaskKind.EXECUTABLE else BackendError(message))
        self._finish(sub, self._states.FAILED)

    def _function_outcome(self, sub: _Submitted, rp_task: Any) -> Tuple[bool, Any]:
        """(True, value) or (False, exception) of a function task."""
        name = sub.task.get('name', sub.task['uid'])
        try:
            if sub.kind is TaskKind.RAPTOR_FUNCTION:
                blob = base64.b64decode(rp_task.return_value or '')
            else:
                with open(sub.result_file, 'rb') as f:
                    blob = f.read()
            return _load_outcome(blob, sub.task)
        except Exception as exc:
            stderr = (rp_task.stderr or '').strip()
            error = BackendError(
                f"function task '{name}' ({sub.task['uid']}) left no result: "
                f"{type(exc).__name__}: {exc}"
                + (f'\nstderr:\n{stderr}' if stderr else '')
                + f'\ntask sandbox: {self._sandbox_path(rp_task)}')
            error.__cause__ = exc
            return False, error

    def _command_result(self, rp_task: Any) -> CommandResult:
        """stdout whole (read from the sandbox when RP kept only its tail), stderr's tail."""
        stdout = rp_task.stdout or ''
        stderr = rp_task.stderr or ''
        sandbox = self._sandbox_path(rp_task)
        if stdout.startswith(_RP_TAIL_MARK) or len(stdout) >= _RP_TAIL_LENGTH:
            path = os.path.join(sandbox, rp_task.description.get('stdout') or
                                f'{rp_task.uid}.out')
            if os.path.isfile(path):
                with open(path, errors='replace') as f:
                    stdout = f.read()
        size = len(stderr)
        if stderr.startswith(_RP_TAIL_MARK) or len(stderr) >= _RP_TAIL_LENGTH:
            path = os.path.join(sandbox, rp_task.description.get('stderr') or
                                f'{rp_task.uid}.err')
            if os.path.isfile(path):
                size = os.path.getsize(path)
                stderr = _read_tail(path, STDERR_TAIL)
        return CommandResult(int(rp_task.exit_code or 0), stdout, stderr, size)

    def _sandbox_path(self, rp_task: Any) -> str:
        try:
            return self._ru.Url(rp_task.sandbox).path.rstrip('/')
        except Exception:
            return os.path.join(self.pilot_sandbox or '', rp_task.uid)

    def _watch_service(self, sub: _Submitted, rp_task: Any) -> None:
        """Report the service DONE (its info as stdout) once RP says it is up."""
        def wait_until_up() -> None:
            try:
                info = rp_task.wait_info(timeout=sub.startup_timeout + 30)
            except Exception as exc:
                if rp_task.state in self._rp.FINAL:
                    return                  # its final state is reported by _on_rp_state
                sub.task['exception'] = BackendError(
                    f"service '{sub.task.get('name')}' did not come up within "
                    f'{sub.startup_timeout:.0f} s: {exc}')
                if self._finish(sub, self._states.FAILED) and self.tmgr is not None:
                    self.tmgr.cancel_tasks([sub.rp_uid])
                return
            sub.task['stdout'] = info if isinstance(info, str) else str(info)
            self._finish(sub, self._states.DONE)

        watcher = threading.Thread(target=wait_until_up, daemon=True,
                                   name=f'asyncflow-rp-service-{sub.rp_uid}')
        self._watchers.append(watcher)
        watcher.start()

    def _on_raptor_state(self, rp_task: Any, state: str) -> None:
        """A master or worker ended: fail the function tasks it can no longer run."""
        if state not in self._rp.FINAL or self._state != 'RUNNING':
            return
        with self._lock:
            master_uid = self._raptor_of_worker.get(rp_task.uid, rp_task.uid)
            raptor = self._raptors.get(master_uid)
            if raptor is None:
                return
            if rp_task.uid == master_uid:
                raptor.alive = False
            else:
                raptor.dead_workers.add(rp_task.uid)
                if raptor.dead_workers >= set(raptor.workers):
                    raptor.alive = False
            if raptor.alive:
                return
            stranded = [s for s in self._by_rp_uid.values()
                        if s.master == master_uid and s.phase is not Phase.FINAL]
        log.error('RAPTOR %s stopped (%s ended %s): %s', master_uid, rp_task.uid, state,
                  (rp_task.stderr or '').strip()[-500:])
        for sub in stranded:
            sub.task['exception'] = BackendError(
                f"function task '{sub.task.get('name')}' ({sub.task['uid']}): its RAPTOR "
                f"{master_uid} stopped ({rp_task.uid} ended {state}); see "
                f'{self._sandbox_path(rp_task)}')
            self._finish(sub, self._states.FAILED)
            self.tmgr.cancel_tasks([sub.rp_uid])

    # -- data --------------------------------------------------------------------

    def get_task_states_map(self) -> StateMapper:
        return self._states

    def link_implicit_data_deps(self, src_task: TaskDict, dst_task: TaskDict) -> None:
        """Link every file ``src_task`` wrote in its sandbox into ``dst_task``'s.

        The links are made in the consumer's sandbox just before it runs
        (``pre_exec``, or by the function trampoline).  Links the producer
        got itself (its inputs) are not passed on, nor are RP's own files;
        files staged explicitly under the same name win.
        """
        sandbox = self._source_sandbox(src_task)
        links = list(dst_task.get(IMPLICIT_INPUTS_KEY) or ())
        entry = (sandbox, self._current.get(src_task['uid'], src_task['uid']))
        if entry not in links:
            links.append(entry)
        dst_task[IMPLICIT_INPUTS_KEY] = links

    def link_explicit_data_deps(self, src_task: Optional[TaskDict] = None,
                                dst_task: Optional[TaskDict] = None,
                                file_name: Optional[str] = None,
                                file_path: Optional[str] = None) -> Dict[str, Any]:
        """Add the ``input_staging`` directive that brings one file to ``dst_task``."""
        if dst_task is None:
            raise ValueError('link_explicit_data_deps needs a dst_task')
        if not file_name and not file_path:
            raise ValueError('link_explicit_data_deps needs a file_name or a file_path')
        rp = self._rp
        if src_task is not None:
            relative = file_path or file_name
            for produced in (src_task.get('metadata') or {}).get('output_files') or ():
                if os.path.basename(produced) == file_name and not os.path.isabs(produced):
                    relative = produced
            target = file_name or os.path.basename(relative)
            directive = {'source': self._sandbox_url(self._source_sandbox(src_task), relative),
                         'target': f'task:///{target}', 'action': rp.LINK}
        else:
            source = file_path or file_name
            target = file_name or os.path.basename(urllib.parse.urlparse(source).path)
            directive = {'source': source, 'target': f'task:///{target}',
                         'action': rp.TRANSFER}
            scheme = urllib.parse.urlparse(source).scheme.lower()
            if scheme in ('', 'file'):
                path = urllib.parse.urlparse(source).path if scheme else source
                directive['source'] = f'file://localhost{os.path.abspath(path)}'
            elif scheme in ('http', 'https', 'ftp'):
                directive['source'] = source        # fetched by the client: see _fetch
                directive['action'] = _FETCH
            elif scheme in ('pilot', 'task', 'resource', 'endpoint'):
                directive['action'] = rp.COPY
            elif scheme != 'client':
                raise ValueError(f'RadicalExecutionBackend cannot stage {source!r}: '
                                 f'{scheme}:// URLs are not supported (use a local path, '
                                 f'file://, http(s)://, ftp:// or pilot:///)')
        opts = dst_task.setdefault('task_backend_specific_kwargs', {})
        opts['input_staging'] = [*(opts.get('input_staging') or []), directive]
        return directive

    def _source_sandbox(self, src_task: TaskDict) -> str:
        uid = src_task['uid']
        sandbox = self._sandboxes.get(uid)
        if sandbox is None:         # not (yet) run here: where RP will put it
            sandbox = os.path.join(self.pilot_sandbox or '', self._current.get(uid, uid))
        return sandbox

    def _sandbox_url(self, sandbox: str, relative: str) -> str:
        pilot = self.pilot_sandbox or ''
        if pilot and (sandbox + '/').startswith(pilot + '/'):
            return f'pilot:///{os.path.relpath(sandbox, pilot)}/{relative}'
        return f'file://localhost{sandbox}/{relative}'


# ---------------------------------------------------------------------------
# Client-side helpers

def _in_thread(func: Callable, *args: Any, name: str) -> 'asyncio.Future':
    """Run ``func`` in a daemon thread (a hung RP call never blocks exit)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def run() -> None:
        try:
            value = func(*args)
        except BaseException as exc:
            outcome = (False, exc)
        else:
            outcome = (True, value)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:            # the loop is gone
            pass

    threading.Thread(target=run, daemon=True, name=name).start()
    return future


def _prepare_environment() -> None:
    """Let RP find its helper programs and Python when the venv is not activated."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get('PATH', '')
    if bindir not in path.split(os.pathsep):
        os.environ['PATH'] = bindir + os.pathsep + path if path else bindir
    if sys.prefix != sys.base_prefix and not os.environ.get('VIRTUAL_ENV') \
            and not os.environ.get('CONDA_PREFIX'):
        os.environ['VIRTUAL_ENV'] = sys.prefix


def _close_session(session: Any, pmgr: Any) -> None:
    try:
        if pmgr is not None:
            # a pilot asked to stop reports CANCELED when it is gone; without
            # this, close() waits 10 s for a kill it does not need
            t0 = time.monotonic()
            pmgr.cancel_pilots(_timeout=PILOT_CANCEL_TIMEOUT)
            log.debug('pilots cancelled in %.1f s', time.monotonic() - t0)
        session.close(terminate=True, download=False)
    except Exception as exc:
        log.warning('closing RP session %s: %s', getattr(session, 'uid', '?'), exc)


def _session_processes(sid: str) -> List[Any]:
    """Processes of RP session ``sid``: the pilot's bootstrap, agent and tasks.

    This process and its children (not RP's: its helpers detach) are not
    among them, even if they name the session directory.
    """
    import psutil
    me = psutil.Process()
    own = {me.pid, *(child.pid for child in me.children(recursive=True))}
    found = []
    for proc in psutil.process_iter(['pid', 'cmdline']):
        if proc.info['pid'] in own:
            continue
        try:
            if sid in ' '.join(proc.info['cmdline'] or ()) or \
                    proc.environ().get('RP_SESSION_ID') == sid:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _reap_session_processes(sid: str, timeout: float) -> None:
    """Wait for the session's processes to exit; terminate, then kill, the rest."""
    import psutil
    deadline = time.monotonic() + timeout
    procs = _session_processes(sid)
    while procs and time.monotonic() < deadline:
        time.sleep(0.25)
        procs = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        procs = [p for p in _session_processes(sid) if p.status() != psutil.STATUS_ZOMBIE]
        if not procs:
            return
        log.warning('RP session %s left %d processes; sending %s', sid, len(procs), sig.name)
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)


def _read_tail(path: str, limit: int) -> str:
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors='replace')
    except OSError:
        return ''


def _allow_mpi_as_root(td: Any) -> None:
    """OpenMPI's mpiexec refuses root unless told in the launcher's environment."""
    if os.geteuid() == 0 and (td.ranks or 1) > 1:
        allow = 'export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1'
        if allow not in (td.pre_launch or []):
            td.pre_launch = [allow, *(td.pre_launch or [])]


#: Characters RP's double-quoting of arguments would let the shell interpret.
_UNSAFE = frozenset('$`\\"')


def _shell_argument(command: str) -> str:
    """The ``-c`` argument that makes ``/bin/sh`` run exactly ``command``.

    RP writes arguments in double quotes into the task script, so ``$`` and
    backticks would be expanded there; such commands travel base64-encoded
    and are decoded by that very expansion (``"$(... | base64 -d)"`` is one
    word, taken literally).
    """
    if not _UNSAFE.intersection(command) and '\n' not in command:
        return command
    encoded = base64.b64encode(command.encode()).decode()
    return f'$(printf %s {encoded} | base64 -d)'


def _service_command(command: str) -> str:
    """A one-string command for RP's service wrapper (it runs it with a shell)."""
    encoded = base64.b64encode(command.encode()).decode()
    code = (f"import base64,os;os.execv('/bin/sh',['/bin/sh','-c',"
            f"base64.b64decode('{encoded}').decode()])")
    return f'{sys.executable} -c "{code}"'


def _link_inputs_command(links: List[Tuple[str, str]]) -> str:
    """A shell loop linking the files of other task sandboxes into this one."""
    loops = []
    for sandbox, rp_uid in links:
        quoted = sandbox.replace("'", "'\\''")
        loops.append(
            f"for f in '{quoted}'/*; do [ -e \"$f\" ] && [ ! -L \"$f\" ] || continue; "
            f"b=${{f##*/}}; "
            f"case \"$b\" in {rp_uid}.*) continue;; esac; "
            f"[ -e \"$b\" ] || [ -L \"$b\" ] || ln -s \"$f\" \"$b\"; done")
    return '; '.join(loops)


def _function_payload(task: TaskDict) -> bytes:
    """The pickled call of a function task, with what the worker needs to load it."""
    import dill
    func = task['function']
    func = getattr(func, '__asyncflow_original__', func)
    try:
        call = dill.dumps((func, tuple(task.get('args') or ()), dict(task.get('kwargs') or {})),
                          recurse=True)
    except Exception as exc:
        raise TypeError(f"function task '{task.get('name')}' cannot be sent to the pilot: "
                        f"{type(exc).__name__}: {exc}") from exc
    return pickle.dumps({'call': call,
                         'sys_path': [p for p in sys.path if p and os.path.isdir(p)],
                         'links': list(task.get(IMPLICIT_INPUTS_KEY) or ())})


def _load_outcome(blob: bytes, task: TaskDict) -> Tuple[bool, Any]:
    import dill
    outcome = dill.loads(blob)
    if outcome[0] == 'ok':
        return True, outcome[1]
    exc, remote_tb = outcome[1], outcome[2]
    if hasattr(exc, 'add_note') and remote_tb:
        exc.add_note(f"raised in function task '{task.get('name')}' ({task['uid']}) on the "
                     f"pilot:\n{remote_tb.rstrip()}")
    return False, exc


# ---------------------------------------------------------------------------
# Pilot side: what runs in the task (or on the RAPTOR worker) of a function task.

_TRAMPOLINE_COMMAND = ('import sys; '
                       'from radical.asyncflow.backends.execution.radical_pilot '
                       'import run_payload_file; '
                       'sys.exit(run_payload_file(sys.argv[1], sys.argv[2]))')


def run_payload_file(call_path: str, result_path: str) -> int:
    """Run the call in ``call_path``; write the outcome (rank 0) to ``result_path``."""
    with open(call_path, 'rb') as f:
        payload = f.read()
    outcome = asyncio.run(_run_payload(payload))
    if os.environ.get('RP_RANK', '0') == '0':
        tmp = f'{result_path}.tmp'
        with open(tmp, 'wb') as f:
            f.write(outcome)
        os.replace(tmp, result_path)
    return 0


async def _raptor_entry(blob: str) -> str:
    """The function RAPTOR workers call (inside their own event loop)."""
    return base64.b64encode(await _run_payload(base64.b64decode(blob))).decode()


async def _run_payload(payload: bytes) -> bytes:
    import dill
    envelope = pickle.loads(payload)
    for path in envelope.get('sys_path', ()):
        if path not in sys.path and os.path.isdir(path):
            sys.path.append(path)
    try:
        _link_inputs(envelope.get('links', ()))
        func, args, kwargs = dill.loads(envelope['call'])
        value = func(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        outcome: Tuple[Any, ...] = ('ok', value)
    except BaseException as exc:        # noqa: B902 -- everything goes back to the client
        outcome = ('err', exc, traceback.format_exc())
    try:
        return dill.dumps(outcome, recurse=True)
    except Exception as exc:
        if outcome[0] == 'ok':
            error: BaseException = TypeError(
                f'the return value ({type(outcome[1]).__name__}) cannot be pickled: {exc}')
            return dill.dumps(('err', error, ''))
        error = RuntimeError(f'{outcome[1]!r} (not picklable: {exc})')
        return dill.dumps(('err', error, outcome[2]))


def _link_inputs(links: Any) -> None:
    """Link the files of producer sandboxes into the current directory."""
    for sandbox, rp_uid in links:
        try:
            names = os.listdir(sandbox)
        except OSError:
            continue
        for name in names:
            source = os.path.join(sandbox, name)
            if name.startswith('.') or name.startswith(f'{rp_uid}.') or \
                    os.path.islink(source) or os.path.lexists(name):
                continue
            os.symlink(source, name)
