"""RadicalExecutionBackend: tasks as RADICAL-Pilot tasks on one pilot.

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
  do), its call inline in its arguments and its outcome back in its stdout
  (large ones through files: see :mod:`.payload`).  Either way the function,
  its arguments, its return value and any exception travel pickled with
  ``dill``, so they come back intact.
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

The pilots the backend starts load :mod:`.agent_fix` (RP 1.103's agent
sends on one ZeroMQ socket from two threads and dies of it), and the backend
watches them (:mod:`.health`, :mod:`.care`: ``watch_pilots``,
``pilot_stall_after``): a pilot whose executing component died, stopped or
went silent is given up, its unfinished tasks fail naming it.

Tested with radical.pilot 1.103 (see :data:`TESTED_RP_VERSIONS`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ....constants import StateMapper
from ....errors import (BackendError, MissingDependencyError, UsageStateError, UsageTypeError,
                        UsageValueError)
from ....radical_compat import (TESTED_VERSIONS, is_tested, known_task_uids,
                                pilot_description_keys, task_description_keys)
from .._command import CommandSpec
from ..base import Session
from ..dict_protocol import DictFace, spec_from_dict
from ..spec import Reporter, TaskSpec
from .describe import TaskKind, describe_task, valid_keys
from .outcome import command_result, failure, function_outcome
from .payload import attach_call, raptor_function
from .raptor import (Raptor, check_mpi_function, parse_raptor_config, submit_master,
                     worker_descriptions)
from .pilots import Pilots, pilot_descriptions
from .care import PilotCare
from .health import STALL_AFTER
from .workers import DaemonPool
from .session import RPEnvironment, close_session, close_when_the_loop_ends, stop_tasks
from .staging import capture_stdio, export_from_sandbox, fetch, task_inputs
from .tasks import Phase, Submitted, SubmittedTasks

#: radical.pilot releases this backend is tested with (major.minor).
TESTED_RP_VERSIONS = TESTED_VERSIONS['radical.pilot']
#: Seconds allowed for the pilot to become active (override: startup_timeout=...).
PILOT_STARTUP_TIMEOUT = 600.0

log = logging.getLogger('radical.asyncflow.radical')


class RadicalExecutionBackend(DictFace):
    """Execution on RADICAL-Pilot pilots: one, or several (a list of descriptions)."""

    #: RUNNING is RP's AGENT_EXECUTING: after the task waited for cores.
    reports_running = True
    #: Each task runs in a sandbox of its own: data is linked or staged in.
    shared_filesystem = False

    def __init__(self, resources: Any, raptor_config: Optional[Dict[str, Any]] = None,
                 *, work_dir: Optional[str] = None, startup_timeout: Optional[float] = None,
                 name: Optional[str] = None, replace_pilots: bool = False,
                 watch_pilots: bool = True, pilot_stall_after: float = STALL_AFTER) -> None:
        try:
            import radical.pilot as rp
            import radical.utils as ru
        except ImportError as exc:
            raise MissingDependencyError('RadicalExecutionBackend', 'radical.pilot',
                                         'radical') from exc
        descriptions = pilot_descriptions(resources)
        for description in descriptions:
            unknown = sorted(set(description) - pilot_description_keys(rp))
            if unknown:
                raise UsageValueError(
                    f'RadicalExecutionBackend: {", ".join(map(repr, unknown))} not a '
                    f'PilotDescription key (known: resource, cores, gpus, nodes, runtime, queue, '
                    f'project, sandbox, access_schema, ...)')
        if not isinstance(replace_pilots, bool):
            raise UsageTypeError(f'replace_pilots must be True or False, not {replace_pilots!r}')
        self._name = name
        self._rp = rp
        self._ru = ru
        if not is_tested('radical.pilot', rp.version):
            log.warning('RadicalExecutionBackend is tested with radical.pilot %s, not %s',
                        ' and '.join(TESTED_RP_VERSIONS), rp.version)
        self._states = StateMapper.of('radical', done_state=rp.DONE, failed_state=rp.FAILED,
                                      canceled_state=rp.CANCELED,
                                      running_state=rp.AGENT_EXECUTING)
        #: The description of the first pilot (all of them: ``pilot_descriptions``).
        self.resources = dict(descriptions[0])
        self.pilot_descriptions = descriptions
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
        self._pilots = Pilots(rp, ru, descriptions, replace_pilots, startup_timeout)
        self.pilot_sandbox: Optional[str] = None        # the first pilot's, on the resource
        self._state = 'NEW'
        self._loop_guard: Optional[asyncio.Task] = None
        self._abort = threading.Event()
        self._tasks = SubmittedTasks()
        self._raptors: Dict[str, Raptor] = {}          # master uid -> raptor
        self._raptor_of_worker: Dict[str, str] = {}
        self._next_master = itertools.count()
        #: The threads RP is called from.
        self._threads = DaemonPool('asyncflow-rp')
        self.health = PilotCare(self._tasks, self._pilots, self._threads, ru, watch_pilots,
                                pilot_stall_after)
        self._watchers: List[Any] = []            # futures of the service watchers
        self._environment = False                 # holds RPEnvironment
        self._payload_dir = ''
        self._warned_keys: set = set()
        self._td_keys = task_description_keys(rp)

    # -- lifecycle -----------------------------------------------------------

    async def _async_init(self) -> None:
        self._state = 'STARTING'
        deadline = time.monotonic() + self.startup_timeout
        start = self._threads.run(self._start, deadline)
        try:
            # the thread checks the deadline itself; this is the safety net
            await asyncio.wait_for(asyncio.shield(start), self.startup_timeout + 60)
        except BaseException as exc:
            self._abort.set()
            self._state = 'FAILED'
            if not start.done():        # hung in RP: tear down what exists
                await asyncio.shield(self._threads.run(self._close))
            if isinstance(exc, asyncio.TimeoutError):
                raise BackendError(f'RadicalExecutionBackend: the pilot did not start within '
                                   f'{self.startup_timeout:.0f} s') from None
            raise
        self._state = 'RUNNING'
        self._loop_guard = close_when_the_loop_ends(self._abandoned)

    def _start(self, deadline: float) -> None:
        """Open the session, start the pilot and the raptors (runs in a thread)."""
        rp = self._rp
        RPEnvironment.acquire()
        self._environment = True
        if any(str(d.get('resource', '')).startswith('asyncflow.')
               for d in self.pilot_descriptions):
            from .site import install_rp_resource_configs
            install_rp_resource_configs()     # the batch-system resources of this package
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
            self.health.start(self.rp_session, self.pmgr, self.tmgr, deadline, self._abort)
            self.pilot_sandbox = self._ru.Url(self.pilot.pilot_sandbox).path.rstrip('/')
            self._start_raptors()
        except BaseException:
            self._close()
            raise

    def _start_raptors(self) -> None:
        for spec in self._masters_spec:
            master = submit_master(self._rp, self._ru, self.tmgr, self.rp_session.uid, spec,
                                   self._valid_keys)
            raptor = Raptor(master.uid)
            wtds = worker_descriptions(self._rp, spec, master.uid, self._valid_keys)
            with self._tasks.lock:
                self._raptors[master.uid] = raptor
            for worker in self.tmgr.submit_workers(wtds):
                with self._tasks.lock:
                    raptor.workers.append(worker.uid)
                    self._raptor_of_worker[worker.uid] = master.uid
            log.info('raptor %s with workers %s', master.uid, raptor.workers)

    @property
    def pilot(self) -> Any:
        """The first pilot (``pilots``: all of them)."""
        return self._pilots.all[0] if self._pilots.all else None

    @property
    def pilots(self) -> List[Any]:
        """Every pilot started, replacements included, in order."""
        return list(self._pilots.all)

    @property
    def lost_pilots(self) -> List[str]:
        """The uids of the pilots that ended while the backend ran."""
        return list(self._pilots.lost)

    def _begin_stopping(self) -> bool:
        """No new pilot, no start-up, unfinished tasks cancelled; False if stopping already."""
        if self._state in ('STOPPING', 'STOPPED'):
            return False
        self._state = 'STOPPING'
        self.health.stop()
        self._abort.set()
        for sub in self._tasks.unfinished():
            self._tasks.finish(sub, lambda sub=sub: sub.reporter.cancelled(sub.spec))
        return True

    async def shutdown(self) -> None:
        """Cancel unfinished tasks, close the RP session and its pilots."""
        if not self._begin_stopping():
            return
        if self._loop_guard is not None:
            self._loop_guard.cancel()
        await asyncio.shield(self._threads.run(self._close))
        concurrent.futures.wait(self._watchers, timeout=1.0)
        self._threads.close()
        self._state = 'STOPPED'

    def _abandoned(self) -> None:
        """The event loop ends before shutdown() (the driver raised, or forgot it):
        close here, or RP's threads keep the process alive and its pilots the nodes."""
        if self._begin_stopping():
            log.warning('the event loop ended before shutdown(): closing the RP session')
            self._close()
            self._state = 'STOPPED'

    def _close(self) -> None:
        """Close the session, then make sure none of its processes is left."""
        session, self.rp_session = self.rp_session, None
        if session is not None:
            stop_tasks(self._rp, self.tmgr)
            close_session(session, self.pmgr, self._threads)
        if self._environment:
            self._environment = False
            RPEnvironment.release()

    def state(self) -> str:
        return self._state

    @property
    def cores(self) -> int:
        """Cores the pilots' agents schedule on (RP rounds up to whole nodes)."""
        return self._pilots.count('cores')

    @property
    def gpus(self) -> int:
        """GPUs the pilots' agents schedule on."""
        return self._pilots.count('gpus')

    @property
    def tasks_per_node(self) -> Dict[str, int]:
        """``{node: tasks}``: where this backend's tasks ran, from RP's slots (a
        task on several nodes counts on each; RAPTOR function tasks are not
        counted: RP does not say which worker ran them)."""
        return self._tasks.tasks_per_node()

    def get_task_states_map(self) -> StateMapper:
        return self._states

    # -- tasks -----------------------------------------------------------------

    async def submit(self, tasks: Sequence[TaskSpec], reporter: Reporter) -> None:
        """Describe the tasks as RP tasks and submit them (in the backend's threads)."""
        if self._state != 'RUNNING':
            raise UsageStateError(
                f'RadicalExecutionBackend is not running ({self._state}): '
                + ('await it first: backend = await RadicalExecutionBackend({...})'
                   if self._state == 'NEW' else 'it has been shut down'))
        await self._threads.run(self._submit, list(tasks), reporter)

    def _submit(self, tasks: List[TaskSpec], reporter: Reporter) -> None:
        batch: List[Tuple[Submitted, Any]] = []
        services: List[Tuple[Submitted, Any]] = []
        for task in tasks:
            try:
                sub, td = self._prepare(task, reporter)
            except Exception as exc:
                reporter.failed(task, exc)
                continue
            (services if sub.kind is TaskKind.SERVICE else batch).append((sub, td))
        # RP's agent starts a service inside its intake: a service that fails
        # fails the tasks submitted with it, so each goes on its own.
        for group in ([batch] if batch else []) + [[s] for s in services]:
            for sub, _ in group:
                self._tasks.add(sub)
            try:
                self.tmgr.submit_tasks([td for _, td in group])
            except Exception as exc:
                for sub, _ in group:
                    error = BackendError(f"RADICAL-Pilot refused task '{sub.spec.name}' "
                                         f"({sub.spec.uid}): {type(exc).__name__}: {exc}")
                    self._tasks.finish(sub, lambda sub=sub, error=error:
                                       sub.reporter.failed(sub.spec, error))

    def _prepare(self, task: TaskSpec, reporter: Reporter) -> Tuple[Submitted, Any]:
        """The record and the RP TaskDescription of one attempt of an engine task."""
        rp_uid = self._tasks.new_rp_uid(task, known_task_uids(self.tmgr))
        options = dict(task.options)
        pinned = options.pop('pilot', None)
        if task.function is not None and self._raptors:
            check_mpi_function(self._masters_spec, task.name, int(options.get('ranks') or 1))
        # pilot:/// URLs name the consumer's pilot: with several, sandboxes by path
        shared = self.pilot_sandbox if len(self._pilots.all) == 1 else ''
        links, staging = task_inputs(self._rp, self._tasks, shared or '', task)
        if staging or options.get('input_staging'):
            folder = os.path.join(self._payload_dir, 'inputs', rp_uid)
            options['input_staging'] = [fetch(self._rp, d, folder)
                                        for d in [*(options.get('input_staging') or []),
                                                  *staging]]
        td = describe_task(self._rp, rp_uid, task, options, links, self._valid_keys,
                           self._pick_master if self._raptors else None)
        kind = TaskKind(td.metadata['asyncflow_kind'])
        if kind is not TaskKind.RAPTOR_FUNCTION:        # those go where their master runs
            td.pilot = self._pilots.uid_for(pinned, task.name)
        if task.stdio_dir is not None and kind is TaskKind.EXECUTABLE:
            capture_stdio(self._rp, td, task.stdio_dir)
        sub = Submitted.described(task, reporter, kind, rp_uid, td)
        if kind is TaskKind.FUNCTION:
            attach_call(self._rp, self._payload_dir, task, links, rp_uid, td)
        elif kind is TaskKind.RAPTOR_FUNCTION:
            td.function = raptor_function(task, links)
        elif kind is TaskKind.SERVICE:
            sub.startup_timeout = float(td.startup_timeout)
        return sub, td

    def export_output(self, uid: str, file_path: str) -> str:
        """Link a file a task wrote in its sandbox to its declared path on the client."""
        return export_from_sandbox(self._tasks.sandbox(uid, self.pilot_sandbox or ''),
                                   uid, file_path)

    def build_task(self, uid: str, task_desc: Dict[str, Any],
                   task_backend_specific_kwargs: Dict[str, Any]) -> Any:
        """An ``rp.TaskDescription`` for a task dict, with RP uid ``uid``."""
        spec = spec_from_dict({**task_desc, 'uid': uid,
                               'task_backend_specific_kwargs': task_backend_specific_kwargs})
        return describe_task(self._rp, uid, spec, dict(spec.options), (), self._valid_keys,
                             self._pick_master if self._raptors else None)

    def _valid_keys(self, opts: Dict[str, Any], what: str) -> Dict[str, Any]:
        """``opts`` without keys RP's TaskDescription does not know (warned once)."""
        return valid_keys(self._td_keys, opts, what, self._warned_keys)

    def _pick_master(self, name: str) -> str:
        with self._tasks.lock:
            alive = [r.uid for r in self._raptors.values() if r.alive]
        if not alive:
            raise BackendError(f"function task '{name}': no RAPTOR master is running "
                               f"(they failed; see the raptor.* task sandboxes in "
                               f"{self.pilot_sandbox})")
        return alive[next(self._next_master) % len(alive)]

    async def cancel_task(self, uid: str) -> bool:
        sub = self._tasks.latest(uid)
        if sub is None or sub.phase is Phase.FINAL or self.tmgr is None:
            return False
        self.tmgr.cancel_tasks([sub.rp_uid])        # asynchronous in RP
        return True

    # -- state reports (RP's callback thread) ------------------------------------

    def _on_rp_state(self, rp_task: Any, state: str) -> None:
        try:
            sub = self._tasks.reported(rp_task.uid)
            if sub is None:
                self._on_raptor_state(rp_task, state)
                return
            states = self._states
            if state in states.terminal_states:
                self._tasks.set_sandbox(sub.spec.uid, self._sandbox_path(rp_task))
            if state == states.RUNNING:
                if self._tasks.running(sub, task_nodes(rp_task)) and \
                        sub.kind is TaskKind.SERVICE:
                    self._watchers.append(self._threads.submit(_wait_until_up, self, sub,
                                                               rp_task))
                return
            # RP 1.103 sends a task's slots only when the task comes back from
            # the agent (TMGR_STAGING_OUTPUT_PENDING or final), not with
            # AGENT_EXECUTING: its nodes are known then
            self._tasks.placed(sub, task_nodes(rp_task))
            if state == states.DONE:
                self._on_done(sub, rp_task)
            elif state == states.FAILED:
                self._on_failed(sub, rp_task)
            elif state == states.CANCELED:
                self._tasks.finish(sub, lambda: sub.reporter.cancelled(sub.spec))
        except Exception as exc:        # never let an error kill RP's callback thread
            log.exception('handling state %s of %s failed', state, getattr(rp_task, 'uid', '?'))
            sub = self._tasks.get(getattr(rp_task, 'uid', None))
            if sub is not None and state in self._rp.FINAL:     # never leave it hanging
                error = BackendError(f"task '{sub.spec.name}' ({sub.spec.uid}): its RP state "
                                     f"{state} could not be read: {type(exc).__name__}: {exc}")
                self._tasks.finish(sub, lambda: sub.reporter.failed(sub.spec, error))

    def _on_done(self, sub: Submitted, rp_task: Any) -> None:
        if sub.phase is Phase.FINAL:
            return                      # e.g. cancelled at shutdown: no outcome to read
        if sub.kind in (TaskKind.FUNCTION, TaskKind.RAPTOR_FUNCTION):
            ok, value = function_outcome(sub.kind, sub.spec, rp_task,
                                         self._sandbox_path(rp_task))
            report = sub.reporter.done if ok else sub.reporter.failed
            self._tasks.finish(sub, lambda: report(sub.spec, value))
            return
        if sub.spec.stdio_dir is not None:
            result = CommandSpec('', stdio_dir=sub.spec.stdio_dir).captured(
                int(rp_task.exit_code or 0))
        else:
            result = command_result(rp_task, self._sandbox_path(rp_task))
        self._tasks.finish(sub, lambda: sub.reporter.done(sub.spec, result))

    def _on_failed(self, sub: Submitted, rp_task: Any) -> None:
        if sub.phase is Phase.FINAL:
            return
        if sub.kind is TaskKind.FUNCTION and rp_task.exit_code == 0:
            self._on_done(sub, rp_task)         # its own staging failed: the outcome tells
            return
        error = failure(sub.kind, sub.spec, rp_task, self._sandbox_path(rp_task))
        self._tasks.finish(sub, lambda: sub.reporter.failed(sub.spec, error))

    def _sandbox_path(self, rp_task: Any) -> str:
        try:
            return self._ru.Url(rp_task.sandbox).path.rstrip('/')
        except Exception:
            return os.path.join(self.pilot_sandbox or '', rp_task.uid)

    def _on_raptor_state(self, rp_task: Any, state: str) -> None:
        """A master or worker ended: fail the function tasks it can no longer run."""
        if state not in self._rp.FINAL or self._state != 'RUNNING':
            return
        with self._tasks.lock:
            master_uid = self._raptor_of_worker.get(rp_task.uid, rp_task.uid)
            raptor = self._raptors.get(master_uid)
            if raptor is None:
                return
            raptor.ended(rp_task.uid)
            if raptor.alive:
                return
            stranded = self._tasks.unfinished(master=master_uid)
        log.error('RAPTOR %s stopped (%s ended %s): %s', master_uid, rp_task.uid, state,
                  (rp_task.stderr or '').strip()[-500:])
        for sub in stranded:
            error = BackendError(
                f"function task '{sub.spec.name}' ({sub.spec.uid}): its RAPTOR "
                f"{master_uid} stopped ({rp_task.uid} ended {state}); see "
                f'{self._sandbox_path(rp_task)}')
            self._tasks.finish(sub, lambda sub=sub, error=error:
                               sub.reporter.failed(sub.spec, error))
            self.tmgr.cancel_tasks([sub.rp_uid])


def task_nodes(rp_task: Any) -> List[str]:
    """The names of the nodes an RP task's ranks run on (in order, each once)."""
    try:
        names = [slot['node_name'] for slot in rp_task.slots or ()]
    except Exception:           # no slots (yet), or not in this form
        return []
    return list(dict.fromkeys(name for name in names if name))


def _wait_until_up(backend: RadicalExecutionBackend, sub: Submitted, rp_task: Any) -> None:
    """A service task's watcher thread: DONE once RP says the service is up."""
    try:
        info = rp_task.wait_info(timeout=sub.startup_timeout + 30)
    except Exception as exc:
        if rp_task.state in backend._rp.FINAL:
            return                  # its final state is reported by _on_rp_state
        error = BackendError(f"service '{sub.spec.name}' did not come up within "
                             f'{sub.startup_timeout:.0f} s: {exc}')
        if backend._tasks.finish(sub, lambda: sub.reporter.failed(sub.spec, error)) \
                and backend.tmgr is not None:
            backend.tmgr.cancel_tasks([sub.rp_uid])
        return
    stdout = info if isinstance(info, str) else str(info)
    backend._tasks.finish(sub, lambda: sub.reporter.done(sub.spec, stdout))
