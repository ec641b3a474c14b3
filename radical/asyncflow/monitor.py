"""What a run did: live state counts, the task profile, the run summary.

A :class:`RunMonitor` is the observer the engine puts on every component
record: :func:`~.graph.transition` calls it after each state change.  Per
change it adjusts two list counters, tracks the peak number of tasks in the
backend, and (with profiling on) extends a flat list by the time
(``perf_counter_ns``), uid and state: ints and strs only, nothing for the
garbage collector to track.  The buffers are written out in bulk, in the CSV format of
``radical.utils.Profiler`` that radical.analytics reads (event ``advance``,
the state in the ``state`` column, as RADICAL-Pilot records its states),
into the engine Profiler's own file.  Large batches are formatted by a helper
process (:mod:`._profile_writer`) on another core, so the event loop pays
about a hundred nanoseconds per state change.

Profiling follows radical.utils: it is on unless ``RADICAL_ASYNCFLOW_PROFILE``
or ``RADICAL_PROFILE`` is ``False``/``0``/``off``.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import sys
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from . import _profile_writer
from .errors import DependencyFailure
from .graph import NodeState

#: The summary file written into the engine's work_dir at shutdown.
SUMMARY_FILE = 'asyncflow_summary.json'
#: The profile file the engine's Profiler writes into its work_dir.
PROFILE_FILE = 'radical.asyncflow.prof'
#: The profile event of a state change (the state is in the ``state`` column).
STATE_EVENT = 'advance'
#: Buffered profile events written out at once when the buffer holds this many.
FLUSH_EVENTS = 32768
#: Seconds between writes of the profile buffer while the loop runs.
FLUSH_INTERVAL = 1.0
#: Events formatted in-process before the helper process takes over: below this
#: a run's whole profile costs some tens of ms, less than starting a process.
HELPER_AFTER = 50_000
#: Seconds shutdown waits for the helper process to write what it was given.
HELPER_WAIT = 30.0
#: Tasks named per failure cause in the summary.
NAMES_PER_CAUSE = 5

STATES: Tuple[NodeState, ...] = tuple(NodeState)
STATE_NAMES: Tuple[str, ...] = tuple(s.name for s in STATES)
_WAITING = NodeState.WAITING.index
_SUBMITTED = NodeState.SUBMITTED.index
_RUNNING = NodeState.RUNNING.index
_DONE = NodeState.DONE.index
_FAILED = NodeState.FAILED.index
_CANCELED = NodeState.CANCELED.index



def make_profiler(path: str) -> Any:
    """The engine's ``radical.utils.Profiler``, writing into ``path``.

    Its clock is the host's: radical.utils would first ask an NTP server,
    which on a compute node without network stalls ``create()`` for seconds.
    """
    import radical.utils as ru

    class LocalClockProfiler(ru.Profiler):
        def _timestamp_init(self):
            now = time.time()
            return [now, now, 'sys']

    return LocalClockProfiler(name='radical.asyncflow', ns='radical.asyncflow', path=path)


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


def _csv_safe(text: str) -> str:
    return text.replace(',', ';').replace('\n', ' ').replace('\r', ' ')


class RunMonitor:
    """Counts, profiles and summarises the components of one engine.

    ``created(record)`` is called once per new record (and attaches the
    monitor as the record's observer); every later state change reaches it
    through :func:`~.graph.transition`.
    """

    def __init__(self, engine: Any) -> None:
        from .workflow_manager import BLOCK      # the engine module imports this one
        self._block_kind = BLOCK
        self._engine = engine
        self._task_counts = [0] * len(STATES)
        self._block_counts = [0] * len(STATES)
        self._peak = [0]                     # the most tasks SUBMITTED or RUNNING at once
        self._failures: Dict[str, List[Any]] = {}      # cause -> [count, names]
        self.started = time.time()
        self.stopped: Optional[float] = None
        self.summary: Optional[Dict[str, Any]] = None
        self._events: List[Any] = []         # perf_counter_ns, uid, state index, ...
        self._msgs: List[str] = []           # names of created, causes of FAILED events
        self._writer: Optional[_WriterProcess] = None
        self._written = 0                    # events flushed so far
        self._writer_failed = False
        self._prof = engine.prof
        self._profiling = profiling_enabled(engine.prof)
        self._add = self._events.extend
        self._add_msg = self._msgs.append
        self._thread = threading.current_thread().name
        self._timer: Any = None
        self.display: Any = None
        # The observers records call: closures, as their lookups are the cheapest.
        self.on_task = self._task_observer(self._profiling)
        self.on_block = self._on_block

    # ------------------------------------------------------------ hot path

    def created(self, record: Any) -> None:
        """Count a new record (state WAITING) and observe its changes from now on."""
        if record.spec.kind is self._block_kind:
            record.observer = self.on_block
            self._block_counts[_WAITING] += 1
        else:
            record.observer = self.on_task
            self._task_counts[_WAITING] += 1
        if self._profiling:
            self._add((time.perf_counter_ns(), record.uid, _WAITING))
            self._add_msg(record.spec.name)
            if len(self._events) >= 3 * FLUSH_EVENTS:
                self.flush()

    def _task_observer(self, traced: bool) -> Callable[[Any, NodeState, NodeState], None]:
        """The observer of task records: counts, peak concurrency and (traced) the profile."""
        counts = self._task_counts
        peak = self._peak
        failed = self._failed
        if not traced:
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

        add, events = self._add, self._events
        now, flush, limit = time.perf_counter_ns, self.flush, 3 * FLUSH_EVENTS

        def on_task_traced(node: Any, old: NodeState, new: NodeState) -> None:
            counts[old.index] -= 1
            index = new.index
            counts[index] += 1
            add((now(), node.uid, index))
            if index == _SUBMITTED:
                active = counts[_SUBMITTED] + counts[_RUNNING]
                if active > peak[0]:
                    peak[0] = active
                if len(events) >= limit:              # bounds the buffer while tasks run
                    flush()
            elif index == _FAILED:
                failed(node)
        return on_task_traced

    def _on_block(self, node: Any, old: NodeState, new: NodeState) -> None:
        counts = self._block_counts
        counts[old.index] -= 1
        index = new.index
        counts[index] += 1
        if self._profiling:
            self._add((time.perf_counter_ns(), node.uid, index))
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
        if self._profiling:
            self._add_msg(_csv_safe(cause))     # the msg of its FAILED event, just added

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
    def finished(self) -> int:
        """Components that reached DONE, FAILED or CANCELED."""
        t, b = self._task_counts, self._block_counts
        return (t[_DONE] + t[_FAILED] + t[_CANCELED]
                + b[_DONE] + b[_FAILED] + b[_CANCELED])

    def failures(self) -> List[Dict[str, Any]]:
        """Failures grouped by cause, most frequent first."""
        groups = [{'cause': cause, 'count': count, 'tasks': list(names)}
                  for cause, (count, names) in self._failures.items()]
        groups.sort(key=lambda g: -g['count'])
        return groups

    # ------------------------------------------------------------- profile

    def flush(self) -> None:
        """Hand the buffered profile events to the writer; empties the buffers."""
        events, msgs = self._events, self._msgs
        count = len(events) // 3
        if not count:
            return
        # perf_counter_ns to epoch ns, measured now: the clocks cannot drift within a batch.
        offset = time.time_ns() - time.perf_counter_ns()
        times, uids, states = events[0::3], events[1::3], events[2::3]
        try:
            self._written += count
            if self._writer is None and self._written >= HELPER_AFTER \
                    and not self._writer_failed:
                self._writer = self._start_writer()
            writer = self._writer
            if writer is not None:
                try:
                    writer.send(_profile_writer.encode_frame(times, uids, states, msgs, offset))
                    return
                except OSError as exc:           # the helper died: write here from now on
                    self._engine.log.warning('profile writer process failed: %s', exc)
                    self._writer, self._writer_failed = None, True
                    writer.kill()
            self._write_here(times, uids, states, list(msgs), offset)
        finally:
            del events[:], msgs[:]

    def _profile_args(self) -> Tuple[str, str, str, str]:
        prof = self._prof
        name = getattr(prof, '_name', 'radical.asyncflow')
        return (os.path.join(prof.path, f'{name}.prof'), name, self._thread,
                _csv_safe(type(self._engine.backend).__name__))

    def _start_writer(self) -> Optional['_WriterProcess']:
        try:
            self._prof._open()       # the file and its header exist before the helper appends
        except Exception:
            pass
        try:
            return _WriterProcess(self._profile_args(), self._engine.loop, self._engine.log)
        except (OSError, ValueError, AttributeError) as exc:
            self._engine.log.warning('no profile writer process (%s): formatting in-process',
                                     exc)
            self._writer_failed = True
            return None

    def _write_here(self, times: list, uids: list, states: list, msgs: list,
                    offset: int) -> None:
        path, comp, thread, backend = self._profile_args()
        text = _profile_writer.format_events(times, uids, states, msgs, offset,
                                             comp, thread, backend)
        prof = self._prof
        try:
            prof._open()                 # opens the file and writes its header once
            handle = prof._handle
        except Exception:
            handle = None
        if handle is None:               # not the Profiler we know: one call per event
            for line in text.splitlines():
                ts, event, _comp, _tid, uid, state, msg = line.split(',', 6)
                prof.prof(event, uid=uid, state=state, msg=msg, ts=float(ts))
            return
        handle.write(text)
        handle.flush()

    # ------------------------------------------------------------ lifetime

    def start(self, progress: Optional[bool]) -> None:
        """Start the live display (unless switched off) and the periodic profile writes."""
        from .progress import ProgressDisplay, progress_enabled
        if progress_enabled(progress):
            self.display = ProgressDisplay(self)
        if self.display is not None or self._profiling:
            self._schedule()

    def _schedule(self) -> None:
        interval = self.display.interval if self.display is not None else FLUSH_INTERVAL
        self._timer = self._engine.loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            if self._profiling:
                self.flush()
            if self.display is not None:
                self.display.update()
        except Exception as exc:          # display/profile trouble must not stop the run
            self._engine.log.warning('progress/profile update failed: %s', exc)
        self._schedule()

    def stop(self, exit_signal: Optional[int] = None) -> Dict[str, Any]:
        """Stop the display, write the profile and the summary; return the summary."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.stopped = time.time()
        if self._profiling:
            try:
                self.flush()
            except Exception as exc:
                self._engine.log.warning('writing the profile failed: %s', exc)
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.close(HELPER_WAIT)
        display, self.display = self.display, None
        if display is not None:
            display.close()
        self.summary = self.build_summary(exit_signal)
        path = os.path.join(self._engine.work_dir, SUMMARY_FILE)
        try:
            with open(path, 'w', encoding='utf-8') as handle:
                json.dump(self.summary, handle, indent=1)
                handle.write('\n')
            self.summary['summary_file'] = path
        except OSError as exc:
            self._engine.log.warning('could not write %s: %s', path, exc)
        if display is not None:
            print_summary(self.summary, file=sys.stderr)
        return self.summary

    # ------------------------------------------------------------- summary

    def build_summary(self, exit_signal: Optional[int] = None) -> Dict[str, Any]:
        """The run summary as a JSON-ready dict."""
        stopped = self.stopped or time.time()
        wall = max(stopped - self.started, 0.0)
        states = self.state_counts()
        finished = self.finished
        summary = {
            'backend': type(self._engine.backend).__name__,
            'work_dir': self._engine.work_dir,
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
            'profile': (os.path.join(self._prof.path, PROFILE_FILE)
                        if self._profiling else None),
            'interrupted_by': _signal_name(exit_signal),
        }
        return summary


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec='seconds')


def _signal_name(sig: Optional[int]) -> Optional[str]:
    if sig is None:
        return None
    import signal
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def format_duration(seconds: Optional[float]) -> str:
    """``H:MM:SS`` (or ``-`` for an unknown duration)."""
    if seconds is None or seconds != seconds or seconds == float('inf'):
        return '-'
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


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
    if summary.get('interrupted_by'):
        lines.append(f"  interrupted by {summary['interrupted_by']}")
    for group in summary['failures']:
        more = group['count'] - len(group['tasks'])
        names = ', '.join(group['tasks']) + (f' and {more} more' if more > 0 else '')
        lines.append(f"  {group['count']} x {group['cause']}")
        lines.append(f"      {names}")
    if summary.get('summary_file'):
        lines.append(f"  summary: {summary['summary_file']}")
    return '\n'.join(lines)


def print_summary(summary: Dict[str, Any], file: Optional[TextIO] = None) -> None:
    """Print :func:`format_summary` (to stderr by default)."""
    print(format_summary(summary), file=file or sys.stderr, flush=True)


class _WriterProcess:
    """The helper process that formats profile frames (see :mod:`._profile_writer`).

    Frames go down a non-blocking pipe; what the pipe does not take at once
    is written when the event loop finds it writable, so the loop never
    waits for the helper.  Only :meth:`close` blocks, to let it finish.
    """

    def __init__(self, args: Tuple[str, str, str, str], loop: Any, log: Any) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, '-I', '-S', _profile_writer.__file__, *args],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        self._fd = self._proc.stdin.fileno()
        os.set_blocking(self._fd, False)
        self._loop = loop
        self._log = log
        self._pending: collections.deque = collections.deque()
        self._watching = False

    def send(self, frame: bytes) -> None:
        """Queue one frame and write as much as the pipe takes now."""
        self._pending.append(memoryview(frame))
        if not self._watching:
            self._drain()

    def _drain(self) -> None:
        pending = self._pending
        try:
            while pending:
                head = pending[0]
                try:
                    written = os.write(self._fd, head)
                except BlockingIOError:
                    written = 0
                if written < len(head):
                    pending[0] = head[written:]
                    if not self._watching:
                        self._loop.add_writer(self._fd, self._drain)
                        self._watching = True
                    return
                pending.popleft()
        except OSError as exc:               # the helper died; its part of the profile is lost
            self._log.warning('profile writer process failed: %s', exc)
            pending.clear()
        if self._watching:
            self._loop.remove_writer(self._fd)
            self._watching = False

    def close(self, timeout: float) -> None:
        """Write what is queued, end the stream, and wait for the helper to finish."""
        if self._watching:
            self._loop.remove_writer(self._fd)
            self._watching = False
        try:
            os.set_blocking(self._fd, True)
            for chunk in self._pending:
                self._proc.stdin.write(chunk)
            self._pending.clear()
            self._proc.stdin.write(_profile_writer.END_FRAME)
            self._proc.stdin.close()
        except OSError as exc:
            self._log.warning('profile writer process failed: %s', exc)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._log.warning('profile writer process did not finish in %ss: stopped', timeout)
            self.kill()

    def kill(self) -> None:
        """Stop the helper at once (it was not needed, or it failed)."""
        if self._watching:
            self._loop.remove_writer(self._fd)
            self._watching = False
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._proc.kill()
        self._proc.wait()
