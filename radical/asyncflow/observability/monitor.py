"""What a run did: live state counts, the task profile, the run summary.

A :class:`RunMonitor` is the observer the engine puts on every component
record: :func:`~.graph.transition` calls it after each state change.  Per
change it adjusts two list counters, tracks the peak number of tasks in the
backend, and (with profiling on) appends the time, uid and state to the
buffers of a :class:`~.profile_sink.ProfileSink`, which writes them in the
CSV format of ``radical.utils.Profiler`` that radical.analytics reads (event
``advance``, the state in the ``state`` column, as RADICAL-Pilot records its
states) into the engine Profiler's own file, formatted on another core.

Profiling follows the RADICAL convention, off unless asked for:
``WorkflowEngine.create(profile=True)``, ``RADICAL_ASYNCFLOW_PROFILE`` or
``RADICAL_PROFILE`` set to ``True``/``1``/``on`` (the first of the three that
is given decides); ``radical-asyncflow-run`` turns it on for its drivers.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from . import profile_writer
from .profile_sink import ProfileSink, csv_safe
from ..errors import DependencyFailure, UsageTypeError
from ..core.graph import NodeState
from ..radical_compat import local_clock_profiler
from .progress import ProgressDisplay, format_duration
from ..core.records import BLOCK
from ..core.shutdown import signal_name

#: The summary file written into the engine's work_dir at shutdown.
SUMMARY_FILE = 'asyncflow_summary.json'
#: The profile file the engine's Profiler writes into its work_dir.
PROFILE_FILE = 'radical.asyncflow.prof'
#: The profile event of a state change (the state is in the ``state`` column).
STATE_EVENT = 'advance'
#: Seconds between writes of the profile buffer while the loop runs.
FLUSH_INTERVAL = 1.0
#: Tasks named per failure cause in the summary.
NAMES_PER_CAUSE = 5
#: Workflows listed in the printed summary (the file has all).
WORKFLOWS_SHOWN = 10
#: In the profile, the message of a component's first event is its name, then
#: `` workflow=<id>`` if it belongs to a workflow.
WORKFLOW_MARK = 'workflow='

STATES: Tuple[NodeState, ...] = tuple(NodeState)
STATE_NAMES: Tuple[str, ...] = tuple(s.name for s in STATES)
_WAITING = NodeState.WAITING.index
_READY = NodeState.READY.index
_SUBMITTED = NodeState.SUBMITTED.index
_RUNNING = NodeState.RUNNING.index
_DONE = NodeState.DONE.index
_FAILED = NodeState.FAILED.index
_CANCELED = NodeState.CANCELED.index



#: Environment variables that switch the profile on or off, the first given wins.
PROFILE_VARIABLES = ('RADICAL_ASYNCFLOW_PROFILE', 'RADICAL_PROFILE')


def profiling_wanted(profile: Optional[bool] = None) -> bool:
    """``profile`` if given, else what the environment says; off by default."""
    if profile is not None:
        if not isinstance(profile, bool):
            raise UsageTypeError(f'profile must be True, False or None, not {profile!r}')
        return profile
    for name in PROFILE_VARIABLES:
        value = os.environ.get(name, '').strip().lower()
        if value:
            return value not in ('0', 'false', 'off', 'no')
    return False


def make_profiler(path: str, enabled: bool) -> Any:
    """The engine's ``radical.utils.Profiler``, writing into ``path`` if ``enabled``.

    Its clock is the host's: radical.utils would first ask an NTP server,
    which on a compute node without network stalls ``create()`` for seconds.
    Its ``flush`` does not ``fsync`` the file.
    """
    import radical.utils as ru
    return local_clock_profiler(ru, enabled=enabled, name='radical.asyncflow',
                                ns='radical.asyncflow', path=path)


def _nothing(*args: Any) -> None:
    pass


def profiling_enabled(prof: Any) -> bool:
    """Whether a radical.utils Profiler records anything."""
    return bool(getattr(prof, 'enabled', False))


def describe_error(error: Optional[BaseException]) -> str:
    """``Type: first line of the message`` (at most 200 characters)."""
    if error is None:
        return 'unknown error'
    lines = str(error).strip().splitlines()
    first = lines[0].strip() if lines else ''
    text = f'{type(error).__name__}: {first}' if first else type(error).__name__
    return text if len(text) <= 200 else text[:197] + '...'


def failure_cause(error: Optional[BaseException]) -> str:
    """The group a failure is counted in: its own error, or the root cause upstream."""
    if isinstance(error, DependencyFailure):
        return f'DependencyFailure (upstream {describe_error(error.root_cause)})'
    return describe_error(error)


class RunMonitor:
    """Counts, profiles and summarises the components of one engine.

    ``created(record)`` is called once per new record, after the graph took
    it (it attaches the monitor as the record's observer); every later state
    change reaches it through :func:`~.graph.transition`, except that the
    engine reports a submitted batch once, with ``batch_submitted(records)``.
    """

    def __init__(self, loop: Any, log: Any, profiler: Any, backend_name: str,
                 work_dir: str, run_dir: Optional[str] = None, progress: bool = False,
                 keepers: Sequence[Callable[[str], Any]] = ()) -> None:
        self._block_kind = BLOCK
        self._loop = loop
        self._log = log
        self.backend_name = backend_name
        self.work_dir = work_dir
        #: Where the summary goes (the engine's run directory).
        self.run_dir = run_dir or work_dir
        self._task_counts = [0] * len(STATES)
        self._block_counts = [0] * len(STATES)
        self._peak = [0]                     # the most tasks SUBMITTED or RUNNING at once
        self._failures: Dict[str, List[Any]] = {}      # cause -> [count, names]
        #: Components per state of each workflow (workflow_id= and workflow scopes).
        self._workflows: Dict[str, List[int]] = {}
        #: Tasks that ran on each node, as their backends reported (RADICAL-Pilot does).
        self.tasks_per_node: Dict[str, int] = {}
        self.started = time.time()
        self.stopped: Optional[float] = None
        self.summary: Optional[Dict[str, Any]] = None
        self.profile: Optional[ProfileSink] = None
        if profiling_enabled(profiler):
            self.profile = ProfileSink(profiler, threading.current_thread().name,
                                       backend_name, loop, log)
        self._timer: Any = None
        self._progress = progress
        #: Called with the run directory once the summary is written (the
        #: report page): each may fail without failing the others or the run.
        self._keepers = tuple(keepers)
        self.display: Any = None
        # The observers records call: closures, as their lookups are the cheapest.
        self.on_task = self._task_observer(self.profile)
        self.on_block = self._on_block
        # Records of a workflow get an observer that counts for it too: the
        # others pay nothing for workflows.
        self._in_workflow = {self.on_task: self._workflow_observer(self.on_task),
                             self.on_block: self._workflow_observer(self.on_block)}
        self.created = self._creation_observer(self.profile)
        #: ``batch_submitted(records)``: the engine hands these tasks, just
        #: made SUBMITTED, to the backend now.  They share one profile event.
        self._profile_batch: Callable[[List[Any]], None] = (
            self.profile.batch_submitted if self.profile is not None else _nothing)
        self.batch_submitted: Callable[[List[Any]], None] = self._batch_submitted
        #: The run watcher (telemetry), if one was plugged in (see :meth:`watch`).
        self._watcher: Any = None
        self._plain_created = self.created

    def _batch_submitted(self, records: List[Any]) -> None:
        self._profile_batch(records)
        if self._watcher is not None:          # once per batch, not per task
            self._watcher.submitted(records)

    def watch(self, watcher: Any) -> None:
        """Tell ``watcher`` (a :class:`~radical.asyncflow.core.interfaces.RunWatcher`)
        of every component created from now on and of its changes; None: stop.

        Records made since get an observer that calls the watcher after the
        monitor's own; without a watcher nothing changes on the hot path.
        """
        self._watcher = watcher
        plain = self._plain_created
        if watcher is None:
            self.created = plain
            return
        wrapped: Dict[Any, Callable[[Any, NodeState, NodeState], None]] = {}
        changed, told = watcher.changed, watcher.created

        def wrap(observe: Callable[[Any, NodeState, NodeState], None]
                 ) -> Callable[[Any, NodeState, NodeState], None]:
            def observe_and_tell(node: Any, old: NodeState, new: NodeState) -> None:
                observe(node, old, new)
                changed(node, old, new)
            return observe_and_tell

        def created(record: Any) -> None:
            plain(record)
            observe = record.observer     # one of four: wrapped once each
            record.observer = wrapped.get(observe) or wrapped.setdefault(observe, wrap(observe))
            told(record)
        self.created = created

    # ------------------------------------------------------------ hot path

    def _creation_observer(self, sink: Optional[ProfileSink]) -> Callable[[Any], None]:
        """``created(record)``: count a new record and observe it from now on.

        Called once the record is in the graph: WAITING, or READY at once.
        """
        block_kind, on_task, on_block = self._block_kind, self.on_task, self.on_block
        tasks, blocks = self._task_counts, self._block_counts

        join = self._join_workflow

        def created(record: Any) -> None:
            if record.spec.kind is block_kind:
                record.observer = on_block
                blocks[record.state.index] += 1
            else:
                record.observer = on_task
                tasks[record.state.index] += 1
            if record.workflow_id is not None:
                join(record)
        if sink is None:
            return created

        add, now = sink.events.extend, time.perf_counter_ns
        # The state recorded at creation: READY at once is one event for two lines.
        code = [NodeState.WAITING.index, profile_writer.READY_AT_ONCE]

        def created_traced(record: Any) -> None:
            spec = record.spec
            index = record.state.index
            if spec.kind is block_kind:
                record.observer = on_block
                blocks[index] += 1
            else:
                record.observer = on_task
                tasks[index] += 1
            if record.workflow_id is None:
                add((now(), record.uid, code[index], spec.name))
            else:
                join(record)
                add((now(), record.uid, code[index],
                     f'{spec.name} {WORKFLOW_MARK}{csv_safe(record.workflow_id)}'))
        return created_traced

    def placed(self, nodes: Any, late_uid: Optional[str] = None) -> None:
        """A task runs on ``nodes``: counted per node, and in the profile: the
        message of the RUNNING event just recorded (the nodes, ``;``-separated),
        or, learned later (``late_uid``), a PLACED event of its own."""
        per_node = self.tasks_per_node
        for node in nodes:
            per_node[node] = per_node.get(node, 0) + 1
        sink = self.profile
        if sink is None:
            return
        where = csv_safe(';'.join(nodes))
        if late_uid is not None:
            sink.events.extend((time.perf_counter_ns(), late_uid, profile_writer.PLACED, where))
        elif sink.events:
            sink.events[-1] = where

    def _join_workflow(self, record: Any) -> None:
        """Count a new record in its workflow and observe it for the workflow too."""
        counts = self._workflows.get(record.workflow_id)
        if counts is None:
            counts = self._workflows[record.workflow_id] = [0] * len(STATES)
        counts[record.state.index] += 1
        record.observer = self._in_workflow[record.observer]

    def _workflow_observer(self, observe: Callable[[Any, NodeState, NodeState], None]
                           ) -> Callable[[Any, NodeState, NodeState], None]:
        workflows = self._workflows

        def observe_in_workflow(node: Any, old: NodeState, new: NodeState) -> None:
            observe(node, old, new)
            counts = workflows[node.workflow_id]
            counts[old.index] -= 1
            counts[new.index] += 1
        return observe_in_workflow

    def _task_observer(self, sink: Optional[ProfileSink]
                       ) -> Callable[[Any, NodeState, NodeState], None]:
        """The observer of task records: counts, peak concurrency and (traced) the profile."""
        counts = self._task_counts
        peak = self._peak
        failed = self._failed
        if sink is None:
            def on_task(node: Any, old: NodeState, new: NodeState) -> None:
                counts[old.index] -= 1
                index = new.index
                counts[index] += 1
                if index == _SUBMITTED:
                    active = counts[_SUBMITTED] + counts[_RUNNING]
                    if active > peak[0]:
                        peak[0] = active
                elif index == _FAILED:
                    failed(node)
            return on_task

        events, add, now = sink.events, sink.events.extend, time.perf_counter_ns
        waiting = NodeState.WAITING

        def on_task_traced(node: Any, old: NodeState, new: NodeState) -> None:
            counts[old.index] -= 1
            index = new.index
            counts[index] += 1
            if index == _SUBMITTED:      # recorded with its batch: see batch_submitted
                active = counts[_SUBMITTED] + counts[_RUNNING]
                if active > peak[0]:
                    peak[0] = active
            elif index == _READY and old is waiting and events:
                # READY: released by the DONE of its last dependency, recorded
                # just before in this same step.  That event's time is this one's.
                add((events[-4], node.uid, index, None))
            else:
                add((now(), node.uid, index, None))
                if index == _FAILED:
                    failed(node)
        return on_task_traced

    def _on_block(self, node: Any, old: NodeState, new: NodeState) -> None:
        counts = self._block_counts
        counts[old.index] -= 1
        index = new.index
        counts[index] += 1
        sink = self.profile
        if sink is not None:
            sink.events.extend((time.perf_counter_ns(), node.uid, index, None))
        if index == _FAILED:
            self._failed(node)

    def _failed(self, node: Any) -> None:
        future = node.future
        error = future.exception() if future.done() and not future.cancelled() else None
        cause = failure_cause(error)
        entry = self._failures.get(cause)
        if entry is None:
            entry = self._failures[cause] = [0, []]
        entry[0] += 1
        if len(entry[1]) < NAMES_PER_CAUSE:
            entry[1].append(f'{node.spec.name} ({node.uid})')
        if self.profile is not None:
            self.profile.events[-1] = csv_safe(cause)    # the msg of its FAILED event, just added

    # ------------------------------------------------------------- queries

    @property
    def peak_concurrency(self) -> int:
        """The most tasks that were SUBMITTED or RUNNING at once."""
        return self._peak[0]

    def state_counts(self) -> Dict[str, int]:
        """Components (tasks and blocks) per state, by state name."""
        tasks, blocks = self._task_counts, self._block_counts
        return {name: tasks[i] + blocks[i] for i, name in enumerate(STATE_NAMES)}

    def task_counts(self) -> Dict[str, int]:
        """Tasks only (no blocks) per state, by state name."""
        return dict(zip(STATE_NAMES, self._task_counts))

    @property
    def total(self) -> int:
        """Components created so far."""
        return sum(self._task_counts) + sum(self._block_counts)

    @property
    def unfinished(self) -> int:
        """Components not finished yet."""
        return self.total - self.finished

    @property
    def finished(self) -> int:
        """Components that reached DONE, FAILED or CANCELED."""
        t, b = self._task_counts, self._block_counts
        return (t[_DONE] + t[_FAILED] + t[_CANCELED]
                + b[_DONE] + b[_FAILED] + b[_CANCELED])

    def workflow_counts(self) -> Dict[str, Dict[str, int]]:
        """Per workflow: its components and how many of them are in each state."""
        return {wid: {'components': sum(counts),
                      **{name: counts[i] for i, name in enumerate(STATE_NAMES) if counts[i]}}
                for wid, counts in self._workflows.items()}

    def failures(self) -> List[Dict[str, Any]]:
        """Failures grouped by cause, most frequent first."""
        groups = [{'cause': cause, 'count': count, 'tasks': list(names)}
                  for cause, (count, names) in self._failures.items()]
        groups.sort(key=lambda g: -g['count'])
        return groups

    # ------------------------------------------------------------ lifetime

    def start(self) -> None:
        """Start the live display (unless switched off) and the periodic profile writes."""
        if self._progress:
            self.display = ProgressDisplay(self)
        if self.profile is not None:
            self.profile.start()
        if self.display is not None or self.profile is not None:
            self._schedule()

    def _schedule(self) -> None:
        interval = self.display.interval if self.display is not None else FLUSH_INTERVAL
        self._timer = self._loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            if self.profile is not None:
                self.profile.flush()
            if self.display is not None:
                self.display.update()
        except Exception as exc:          # display/profile trouble must not stop the run
            self._log.warning('progress/profile update failed: %s', exc)
        self._schedule()

    def stop(self, exit_signal: Optional[int] = None,
             outcome: Optional[Dict[str, Any]] = None,
             journal: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Stop the display, write the profile and the summary; return the summary.

        ``outcome`` says how the run ended (see :func:`outcome_of`); ``journal``
        what the campaign journal replayed and why the other tasks ran.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.stopped = time.time()
        if self.profile is not None:
            try:
                self.profile.close()
            except Exception as exc:
                self._log.warning('writing the profile failed: %s', exc)
        display, self.display = self.display, None
        if display is not None:
            display.close()
        self.summary = self.build_summary(exit_signal)
        self.summary['outcome'] = outcome or {'status': 'completed'}
        if journal is not None:
            self.summary['journal'] = journal
        self.write_summary()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            try:
                watcher.run_ended(self.summary)
            except Exception as exc:
                self._log.warning('stopping the telemetry failed: %s: %s',
                                  type(exc).__name__, exc)
        for keep in self._keepers:
            try:
                keep(self.run_dir)
            except Exception as exc:
                self._log.warning('writing the run record failed: %s: %s',
                                  type(exc).__name__, exc)
        if display is not None:
            print_summary(self.summary, file=sys.stderr)
        return self.summary

    # ------------------------------------------------------------- summary

    def write_summary(self) -> None:
        """(Re)write the summary file of the run."""
        path = os.path.join(self.run_dir, SUMMARY_FILE)
        record = {k: v for k, v in self.summary.items() if k != 'summary_file'}
        try:
            with open(path, 'w', encoding='utf-8') as handle:
                json.dump(record, handle, indent=1)
                handle.write('\n')
            self.summary['summary_file'] = path
        except OSError as exc:
            self._log.warning('could not write %s: %s', path, exc)

    def build_summary(self, exit_signal: Optional[int] = None) -> Dict[str, Any]:
        """The run summary as a JSON-ready dict."""
        stopped = self.stopped or time.time()
        wall = max(stopped - self.started, 0.0)
        states = self.state_counts()
        finished = self.finished
        summary = {
            'backend': self.backend_name,
            'work_dir': self.work_dir,
            'run_dir': self.run_dir,
            'started': _iso(self.started),
            'stopped': _iso(stopped),
            'wall_time_s': round(wall, 6),
            'components': self.total,
            'tasks': sum(self._task_counts),
            'blocks': sum(self._block_counts),
            'states': states,
            'task_states': self.task_counts(),
            'peak_concurrency': self.peak_concurrency,
            'throughput_per_s': round(finished / wall, 3) if wall > 0 else None,
            'failures': self.failures(),
            'workflows': self.workflow_counts(),
            'tasks_per_node': dict(sorted(self.tasks_per_node.items())),
            'profile': self.profile.path if self.profile is not None else None,
            'interrupted_by': signal_name(exit_signal),
        }
        return summary


def describe_outcome(outcome: Dict[str, Any]) -> str:
    """One line for an outcome of :func:`outcome_of`."""
    status = outcome.get('status')
    if status == 'failed':
        message = (outcome.get('message') or '').strip().splitlines()
        return f"the driver failed: {outcome.get('exception')}" + \
            (f': {message[0][:200]}' if message else '')
    if status == 'interrupted':
        return f"interrupted by {outcome.get('signal')}"
    if status == 'abandoned':
        return f"ended without engine.shutdown(): {outcome.get('reason')}"
    return str(status)


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec='seconds')


def format_summary(summary: Dict[str, Any]) -> str:
    """The run summary as a few lines of text."""
    states = summary['states']
    lines = [
        f"radical.asyncflow run summary ({summary['backend']}, "
        f"{format_duration(summary['wall_time_s'])} wall time)",
        f"  {summary['tasks']} tasks, {summary['blocks']} blocks: "
        f"{states['DONE']} done, {states['FAILED']} failed, {states['CANCELED']} cancelled"
        + (f", {summary['components'] - states['DONE'] - states['FAILED'] - states['CANCELED']}"
           f" unfinished" if summary['components'] > states['DONE'] + states['FAILED']
           + states['CANCELED'] else ''),
        f"  peak concurrency {summary['peak_concurrency']} tasks"
        + (f", {summary['throughput_per_s']:.1f} components/s"
           if summary.get('throughput_per_s') else ''),
    ]
    outcome = summary.get('outcome') or {}
    if summary.get('interrupted_by'):
        lines.append(f"  interrupted by {summary['interrupted_by']}")
    elif outcome.get('status') not in (None, 'completed'):
        lines.append(f"  {describe_outcome(outcome)}")
    per_node = summary.get('tasks_per_node') or {}
    if per_node:
        shown = ', '.join(f'{node} {count}' for node, count in
                          list(per_node.items())[:WORKFLOWS_SHOWN])
        more = f' and {len(per_node) - WORKFLOWS_SHOWN} more' \
            if len(per_node) > WORKFLOWS_SHOWN else ''
        lines.append(f"  tasks per node: {shown}{more}")
    workflows = summary.get('workflows') or {}
    for wid, counts in list(workflows.items())[:WORKFLOWS_SHOWN]:
        lines.append(f"  workflow {wid}: {counts['components']} components, "
                     f"{counts.get('DONE', 0)} done, {counts.get('FAILED', 0)} failed, "
                     f"{counts.get('CANCELED', 0)} cancelled")
    if len(workflows) > WORKFLOWS_SHOWN:
        lines.append(f"  ... and {len(workflows) - WORKFLOWS_SHOWN} more workflows "
                     f"(see the summary file)")
    for group in summary['failures']:
        more = group['count'] - len(group['tasks'])
        names = ', '.join(group['tasks']) + (f' and {more} more' if more > 0 else '')
        lines.append(f"  {group['count']} x {group['cause']}")
        lines.append(f"      {names}")
    if summary.get('summary_file'):
        lines.append(f"  summary: {summary['summary_file']}")
    if summary.get('run_dir'):
        lines.append(f"  run directory: {summary['run_dir']}")
    return '\n'.join(lines)


def print_summary(summary: Dict[str, Any], file: Optional[TextIO] = None) -> None:
    """Print :func:`format_summary` (to stderr by default)."""
    print(format_summary(summary), file=file or sys.stderr, flush=True)
