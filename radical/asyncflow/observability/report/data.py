"""What ``report.html`` shows, read from a run directory.

A run directory (``<work_dir>/<engine uid>/``) holds the summary the engine
writes however the run ends (``asyncflow_summary.json``), the task profile
when profiling was on (``radical.asyncflow.prof``, see :mod:`.monitor` for
its lines) and, for ``capture_stdio=True`` tasks, ``<task uid>/stdout`` and
``<task uid>/stderr``.  An RP run's engine may sit inside RADICAL-Pilot's
client session directory (the default work_dir of a RadicalExecutionBackend
engine), where the pilot manager's profile says when each pilot started
and ended.

Everything here is plain data (:class:`RunData`); :mod:`.page`
turns it into the page.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ...errors import InputFileError
from ..monitor import PROFILE_FILE, STATE_EVENT, SUMMARY_FILE, WORKFLOW_MARK

FINAL_STATES = ('DONE', 'FAILED', 'CANCELED')
#: Bytes of a failed task's stderr shown (its end).
STDERR_TAIL = 2048
#: Failed tasks whose stderr file is read (the others are counted by cause).
STDERR_READS = 200
#: The task manager's record of an RP session is read only up to this size
#: (some 6 kB per task): beyond it, tasks count one core and have no pilot.
MAX_TMGR_JSON = 64 << 20
#: RP's pilot states, in the order they happen, as its pilot manager profiles them.
PILOT_STATES = ('NEW', 'PMGR_LAUNCHING_PENDING', 'PMGR_LAUNCHING', 'PMGR_ACTIVE_PENDING',
                'PMGR_ACTIVE', 'DONE', 'FAILED', 'CANCELED')


@dataclass(slots=True)
class TaskRow:
    """One component's life, from the profile (times in s since the run's first event).

    A time is None when the component never reached that state.  With
    retries, ``ready``/``submitted``/``running`` are those of the last attempt.
    ``start``, ``duration`` and ``wait`` are derived by :func:`read_profile`
    (plain fields: the report reads them for every task, several times).
    """

    uid: str
    name: str = ''
    workflow: Optional[str] = None
    created: Optional[float] = None
    ready: Optional[float] = None
    submitted: Optional[float] = None
    running: Optional[float] = None
    end: Optional[float] = None
    state: str = 'WAITING'
    cause: str = ''
    nodes: Tuple[str, ...] = ()
    attempts: int = 0
    #: When the backend began it: RUNNING if reported, else SUBMITTED.
    start: Optional[float] = None
    #: Seconds from ``start`` to its end.
    duration: Optional[float] = None
    #: Seconds from READY to ``start`` (of the last attempt).
    wait: Optional[float] = None
    is_task: bool = True

    @property
    def replayed(self) -> bool:
        """DONE without ever being submitted: resolved from the campaign journal."""
        return self.state == 'DONE' and self.attempts == 0 and self.is_task

    def settle(self, t0: float) -> None:
        """Make the times relative to ``t0`` and derive the others."""
        for name in ('created', 'ready', 'submitted', 'running', 'end'):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value - t0)
        self.is_task = self.uid.startswith('task.')
        start = self.start = self.running if self.running is not None else self.submitted
        if start is not None:
            if self.end is not None:
                self.duration = max(self.end - start, 0.0)
            if self.ready is not None:
                self.wait = max(start - self.ready, 0.0)


@dataclass(slots=True)
class Pilot:
    """A RADICAL-Pilot pilot's life, from its pilot manager's profile (s since the run's start)."""

    uid: str
    states: Dict[str, float] = field(default_factory=dict)
    cores: int = 0
    #: The pilot's sandbox, when on this file system (its tasks' folders are in it).
    sandbox: str = ''

    @property
    def started(self) -> Optional[float]:
        """When it became active (PMGR_ACTIVE), if it did."""
        return self.states.get('PMGR_ACTIVE')

    @property
    def ended(self) -> Optional[float]:
        """When it reached a final state, if it did."""
        return next((self.states[s] for s in ('DONE', 'FAILED', 'CANCELED')
                     if s in self.states), None)

    @property
    def final(self) -> str:
        """Its final state, or its last one."""
        return next((s for s in ('DONE', 'FAILED', 'CANCELED') if s in self.states),
                    max(self.states, key=self.states.get) if self.states else '')


@dataclass(slots=True)
class RunData:
    """Everything the report shows."""

    run_dir: str
    summary: Dict[str, Any]
    has_profile: bool
    #: Epoch seconds of the run's first profile event (0 without a profile).
    t0: float = 0.0
    #: Seconds from the first to the last profile event.
    span: float = 0.0
    rows: List[TaskRow] = field(default_factory=list)
    #: uid -> the tail of its stderr file, for failed tasks that left one.
    stderr: Dict[str, str] = field(default_factory=dict)
    rp_session: Optional[str] = None
    pilots: List[Pilot] = field(default_factory=list)
    #: RP tasks holding cores: (start, end, cores), from the pilots' schedulers.
    core_use: List[Tuple[float, float, int]] = field(default_factory=list)
    #: Engine task uid -> the RP pilot that ran its last attempt.
    task_pilot: Dict[str, str] = field(default_factory=dict)

    @property
    def tasks(self) -> List[TaskRow]:
        """The tasks (not the blocks)."""
        return [row for row in self.rows if row.is_task]


def find_run_dir(path: str) -> str:
    """``path`` if it is a run directory, else the latest run directory in it."""
    path = os.path.abspath(path)
    if _is_run_dir(path):
        return path
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise InputFileError(f'{path}: {exc.strerror or exc}') from None
    runs = [os.path.join(path, name) for name in names]
    runs = [run for run in runs if _is_run_dir(run)]
    if not runs:
        raise InputFileError(f'no {SUMMARY_FILE} or {PROFILE_FILE} in {path!r}: give a '
                                f'run directory <work_dir>/<engine uid>, or its work_dir')
    return max(runs, key=os.path.getmtime)


def _is_run_dir(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, name)) for name in (SUMMARY_FILE, PROFILE_FILE))


def load(run_dir: str) -> RunData:
    """Read a run directory (see the module's docstring)."""
    summary = _read_summary(os.path.join(run_dir, SUMMARY_FILE))
    profile = os.path.join(run_dir, PROFILE_FILE)
    data = RunData(run_dir=run_dir, summary=summary, has_profile=os.path.isfile(profile))
    if data.has_profile:
        data.t0, data.span, data.rows = read_profile(profile)
    data.stderr = _stderr_tails(run_dir, data.rows)
    data.rp_session = rp_session_dir(run_dir, summary)
    if data.rp_session is not None:
        data.pilots = read_pilots(data.rp_session, data.t0)
        cores = _read_rp_tasks(data)
        data.core_use = read_core_use(data.pilots, data.t0, cores)
        _add_rp_stderr(data)
    return data


def _read_summary(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding='utf-8') as handle:
            value = json.load(handle)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def read_profile(path: str) -> Tuple[float, float, List[TaskRow]]:
    """(t0, span, rows) of the last engine run in a profile.

    One pass, a split per line: a run of 10^5 tasks has some 5 * 10^5 lines.
    A state seen twice (a retry) keeps its last time; the first final state
    seen is the outcome.
    """
    rows: Dict[str, TaskRow] = {}
    t_first, t_last = float('inf'), float('-inf')
    with open(path, encoding='utf-8', errors='replace') as handle:
        for line in handle:
            parts = line.split(',', 6)
            if len(parts) < 6:
                continue
            event = parts[1]
            if event != STATE_EVENT:
                if event == 'engine_start':      # an older profile may hold several runs
                    rows, t_first, t_last = {}, float('inf'), float('-inf')
                continue
            try:
                ts = float(parts[0])
            except ValueError:
                continue
            uid, state = parts[4], parts[5]
            row = rows.get(uid)
            if row is None:
                row = rows[uid] = TaskRow(uid)
            if ts < t_first:
                t_first = ts
            if ts > t_last:
                t_last = ts
            if state == 'SUBMITTED':
                row.submitted = ts
                row.attempts += 1
            elif state == 'READY':
                row.ready = ts
            elif state == 'RUNNING':
                row.running = ts
                msg = parts[6].strip() if len(parts) > 6 else ''
                if msg:
                    row.nodes = tuple(msg.split(';'))
            elif state == 'WAITING':
                row.created = ts
                msg = parts[6].rstrip('\n') if len(parts) > 6 else ''
                if WORKFLOW_MARK in msg:
                    name, _, workflow = msg.partition(f' {WORKFLOW_MARK}')
                    row.name, row.workflow = name, workflow.strip() or None
                else:
                    row.name = msg
            elif state == 'PLACED':
                msg = parts[6].strip() if len(parts) > 6 else ''
                if msg:
                    row.nodes = tuple(msg.split(';'))
                continue
            elif state in FINAL_STATES:
                if row.end is None:
                    row.end = ts
                    row.state = state
                    if state == 'FAILED' and len(parts) > 6:
                        row.cause = parts[6].rstrip('\n')
                continue
            if row.end is None:
                row.state = state
    if not rows:
        return 0.0, 0.0, []
    for row in rows.values():
        row.settle(t_first)
    return t_first, t_last - t_first, list(rows.values())


def read_tail(path: str, size: int = STDERR_TAIL) -> str:
    """The last ``size`` bytes of a file, decoded leniently ('' if unreadable)."""
    try:
        with open(path, 'rb') as handle:
            handle.seek(0, os.SEEK_END)
            length = handle.tell()
            handle.seek(max(length - size, 0))
            data = handle.read()
    except OSError:
        return ''
    text = data.decode('utf-8', errors='replace')
    if length > size:                     # cut at a line start when one is near
        cut = text.find('\n')
        text = text[cut + 1:] if 0 <= cut < 200 else text
    return text


def _stderr_tails(run_dir: str, rows: List[TaskRow]) -> Dict[str, str]:
    """Tails of ``<run_dir>/<uid>/stderr`` of failed tasks (capture_stdio=True)."""
    tails: Dict[str, str] = {}
    for row in _failed_own(rows)[:STDERR_READS]:
        path = os.path.join(run_dir, row.uid, 'stderr')
        if os.path.isfile(path):
            tails[row.uid] = read_tail(path)
    return tails


def _failed_own(rows: List[TaskRow]) -> List[TaskRow]:
    """Failed tasks that failed themselves (not because a dependency did), by end time."""
    failed = [r for r in rows if r.is_task and r.state == 'FAILED'
              and not r.cause.startswith('DependencyFailure')]
    failed.sort(key=lambda r: (r.end if r.end is not None else 0.0))
    return failed


# ------------------------------------------------------------------ RADICAL-Pilot

def rp_session_dir(run_dir: str, summary: Dict[str, Any]) -> Optional[str]:
    """RADICAL-Pilot's client session directory of an RP run, if it can be found.

    Looked for as a link or directory ``rp.session*`` in the run directory,
    then as the run directory's parent (an engine on a RadicalExecutionBackend
    without ``work_dir=`` runs in RP's session directory).
    """
    for candidate in sorted(glob.glob(os.path.join(run_dir, 'rp.session.*'))):
        if os.path.isdir(candidate):
            return os.path.realpath(candidate)
    parent = os.path.dirname(os.path.abspath(run_dir))
    if os.path.basename(parent).startswith('rp.session.') and \
            glob.glob(os.path.join(parent, 'pmgr*.prof')):
        return parent
    return None


def read_pilots(session_dir: str, t0: float) -> List[Pilot]:
    """The pilots of an RP session: their descriptions from the pilot manager's
    ``pmgr.*.json``, their state times from its ``pmgr.*.prof``."""
    pilots: Dict[str, Pilot] = {}
    for path in sorted(glob.glob(os.path.join(session_dir, 'pmgr.*.json'))):
        for entry in _read_summary(path).get('pilots') or []:
            if not isinstance(entry, dict) or not entry.get('uid'):
                continue
            pilot = pilots.setdefault(entry['uid'], Pilot(entry['uid']))
            description = entry.get('description') or {}
            cores = description.get('cores') if isinstance(description, dict) else None
            pilot.cores = cores if isinstance(cores, int) else 0
            sandbox = str(entry.get('pilot_sandbox') or '')
            if sandbox.startswith('file://localhost/'):
                pilot.sandbox = sandbox[len('file://localhost'):]
    for path in sorted(glob.glob(os.path.join(session_dir, 'pmgr*.prof'))):
        try:
            handle = open(path, encoding='utf-8', errors='replace')
        except OSError:
            continue
        with handle:
            for line in handle:
                parts = line.split(',', 6)
                if len(parts) < 6 or parts[1] != 'advance' or \
                        not parts[4].startswith('pilot.') or parts[5] not in PILOT_STATES:
                    continue
                try:
                    ts = float(parts[0])
                except ValueError:
                    continue
                pilot = pilots.setdefault(parts[4], Pilot(parts[4]))
                pilot.states.setdefault(parts[5], ts - t0 if t0 else ts)
    return sorted(pilots.values(), key=lambda p: p.uid)


def _add_rp_stderr(data: RunData) -> None:
    """Tails of RP's ``<rp uid>.err`` in the pilot sandboxes, for failed tasks without
    a captured stderr.  RP names a task's first attempt by the engine uid, attempt N
    ``uid.N`` (see backends/execution/radical_pilot/tasks.py)."""
    sandboxes = [p.sandbox for p in data.pilots if p.sandbox and os.path.isdir(p.sandbox)]
    if not sandboxes:
        return
    for row in _failed_own(data.rows)[:STDERR_READS]:
        if row.uid in data.stderr:
            continue
        rp_uid = row.uid if row.attempts <= 1 else f'{row.uid}.{row.attempts}'
        for sandbox in sandboxes:
            for name in (f'{rp_uid}.err', 'stderr'):
                path = os.path.join(sandbox, rp_uid, name)
                if os.path.isfile(path):
                    data.stderr[row.uid] = read_tail(path)
                    break
            if row.uid in data.stderr:
                break


def _rp_base_uid(rp_uid: str) -> str:
    """The engine uid of an RP task uid (``task.000012``, ``.2`` for attempt 2,
    ``.rN`` when RP knew the name already; see radical_pilot/tasks.py)."""
    parts = rp_uid.split('.')
    return '.'.join(parts[:2]) if len(parts) > 2 and parts[0] == 'task' else rp_uid


def _read_rp_tasks(data: RunData) -> Dict[str, int]:
    """Fill ``data.task_pilot`` from the task manager's ``tmgr.*.json``; return the
    cores each RP task held (RP uid -> cores)."""
    cores: Dict[str, int] = {}
    for path in sorted(glob.glob(os.path.join(data.rp_session or '', 'tmgr.*.json'))):
        try:
            if os.path.getsize(path) > MAX_TMGR_JSON:
                continue
        except OSError:
            continue
        tasks = _read_summary(path).get('tasks') or {}
        for rp_uid, task in (tasks.items() if isinstance(tasks, dict) else ()):
            if not isinstance(task, dict):
                continue
            if task.get('pilot'):
                data.task_pilot[_rp_base_uid(rp_uid)] = str(task['pilot'])
            held = sum(len(slot.get('cores') or ()) for slot in task.get('slots') or ()
                       if isinstance(slot, dict))
            if held:
                cores[rp_uid] = held
    return cores


def read_core_use(pilots: List[Pilot], t0: float,
                  cores: Dict[str, int]) -> List[Tuple[float, float, int]]:
    """When each RP task held its cores: from its pilot scheduler's ``schedule_ok``
    to ``unschedule_stop`` (what radical.analytics counts as a task's core use)."""
    use = []
    for pilot in pilots:
        if not pilot.sandbox:
            continue
        for path in sorted(glob.glob(os.path.join(pilot.sandbox, 'agent_scheduling.*.prof'))):
            start: Dict[str, float] = {}
            try:
                handle = open(path, encoding='utf-8', errors='replace')
            except OSError:
                continue
            with handle:
                for line in handle:
                    parts = line.split(',', 6)
                    if len(parts) < 6 or parts[1] not in ('schedule_ok', 'unschedule_stop'):
                        continue
                    try:
                        ts = float(parts[0]) - t0
                    except ValueError:
                        continue
                    uid = parts[4]
                    if parts[1] == 'schedule_ok':
                        start[uid] = ts
                    elif uid in start:
                        use.append((start.pop(uid), ts, cores.get(uid, 1)))
    return use
