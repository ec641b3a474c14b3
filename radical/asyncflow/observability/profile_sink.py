"""Where the task profile goes: a flat event buffer, written out in bulk.

A state change is recorded as one ``extend`` of a flat list by the time
(``perf_counter_ns``), uid, state index and message (or None): a hundred
nanoseconds or so.  Tasks handed to the backend together share one
SUBMITTED event, whose uid is the list of their uids.  Turning
events into ``radical.utils.Profiler`` CSV lines costs a few hundred
nanoseconds each, as much as the engine spends on a no-op task, so a helper
process (:mod:`._profile_writer`), started with the engine, formats them on
another core: the buffer goes to it as one ``marshal`` frame per submitted
batch, at most every :data:`FLUSH_GAP_NS`, and at shutdown the engine formats
the last events itself while the helper finishes.  If the helper cannot
start or dies, events are formatted in-process.
"""

from __future__ import annotations

import collections
import os
import select
import subprocess
import sys
import time
import weakref
from typing import Any, List, Optional, Tuple

from . import profile_writer
from ..core.process_wide import at_fork_in_child
from ..radical_compat import profiler_file

SUBMITTED = profile_writer.STATE_NAMES.index('SUBMITTED')
#: A frame goes to the helper once this many events are buffered and
#: FLUSH_GAP_NS passed since the last: each frame wakes the helper, which
#: costs tens of microseconds on a virtual machine, and the events left for
#: shutdown (formatted while the helper finishes) stay a few ms' worth.
FLUSH_EVENTS = 1024
FLUSH_VALUES = FLUSH_EVENTS * profile_writer.FIELDS
FLUSH_GAP_NS = 10_000_000
#: Bytes the pipe to the helper should hold (Linux allows 1 MiB by default).
PIPE_SIZE = 1 << 20
#: Seconds closing waits for the helper to write what it was given.
HELPER_WAIT = 30.0


def csv_safe(text: str) -> str:
    """``text`` fit for one field of a profile line."""
    return text.replace(',', ';').replace('\n', ' ').replace('\r', ' ')


class ProfileSink:
    """Buffers a run's state-change events and appends them to the profile.

    The recording side extends :attr:`events` by ``(perf_counter_ns, uid,
    state index, message or None)`` per event (see :mod:`._profile_writer`);
    :meth:`flush` hands them to the writer and empties the list in place, so
    its bound methods stay valid.
    """

    def __init__(self, prof: Any, thread: str, backend: str, loop: Any, log: Any) -> None:
        self.events: List[Any] = []
        self._prof = prof
        name = getattr(prof, '_name', 'radical.asyncflow')
        self._args = (os.path.join(prof.path, f'{name}.prof'), name, thread, csv_safe(backend))
        self._loop = loop
        self._log = log
        self._writer: Optional[_WriterProcess] = None
        self._flushed = time.perf_counter_ns()     # when the last frame went out

    @property
    def path(self) -> str:
        """The profile file."""
        return self._args[0]

    @property
    def writer_pid(self) -> Optional[int]:
        """The helper process's pid (None: events are formatted in-process)."""
        return self._writer.pid if self._writer is not None else None

    def start(self) -> None:
        """Start the helper process; without it, :meth:`flush` formats in-process."""
        profiler_file(self._prof)     # the file and its header exist before the helper appends
        try:
            self._writer = _WriterProcess(self._args, self._loop, self._log)
        except (OSError, ValueError, AttributeError) as exc:
            self._log.warning('no profile writer process (%s): formatting in-process', exc)

    def batch_submitted(self, records: List[Any]) -> None:
        """Record the tasks being handed to the backend together as SUBMITTED now.

        They share one event, a clock reading per batch.  This also hands a
        frame's worth of events to the writer: once per batch, as a check
        per state change would cost more than recording it.
        """
        events, now = self.events, time.perf_counter_ns()
        if len(records) == 1:
            events.extend((now, records[0].uid, SUBMITTED, None))
        else:
            events.extend((now, [r.uid for r in records], SUBMITTED, None))
        if len(events) >= FLUSH_VALUES and now - self._flushed >= FLUSH_GAP_NS:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered events to the writer; empties the buffer."""
        events = self.events
        if not events:
            return
        # perf_counter_ns to epoch ns, measured now: the clocks cannot drift within a batch.
        self._flushed = time.perf_counter_ns()
        offset = time.time_ns() - self._flushed
        try:
            writer = self._writer
            if writer is not None:
                try:
                    writer.send(profile_writer.encode_frame(events, offset))
                    return
                except OSError as exc:           # the helper died: write here from now on
                    self._log.warning('profile writer process failed: %s', exc)
                    self._writer = None
                    writer.kill()
            self._append(self._format(events, offset))
        finally:
            del events[:]

    def close(self) -> None:
        """Write everything out; returns once the profile file is complete."""
        writer, self._writer = self._writer, None
        if writer is not None and not writer.sent and not writer.started():
            # A short run: formatting the few events here is quicker than
            # waiting for the helper to start.
            writer.kill()
            writer = None
        if writer is not None:
            writer.end()
        # The last events are formatted here while the helper finishes what
        # it was given (both cores work), and appended once it has.
        text = self._format(self.events) if self.events else ''
        del self.events[:]
        if writer is not None:
            writer.wait(HELPER_WAIT)
        if text:
            self._append(text)

    def _format(self, events: list, offset: Optional[int] = None) -> str:
        if offset is None:
            offset = time.time_ns() - time.perf_counter_ns()
        _path, comp, thread, backend = self._args
        return profile_writer.format_events(events, offset, comp, thread, backend)

    def _append(self, text: str) -> None:
        prof = self._prof
        handle = profiler_file(prof)     # opens the file and writes its header once
        if handle is None:               # not the Profiler we know: one call per event
            for line in text.splitlines():
                ts, event, _comp, _tid, uid, state, msg = line.split(',', 6)
                prof.prof(event, uid=uid, state=state, msg=msg, ts=float(ts))
            return
        handle.write(text)
        handle.flush()


#: The helpers of this process, for the fork hook below.
_LIVE_WRITERS: 'weakref.WeakSet[_WriterProcess]' = weakref.WeakSet()


def _detach_writers_in_child() -> None:
    """After fork: the child lets go of the helpers' pipes.

    Else a forked pool worker would hold the helper's stdin open, and a
    helper whose engine was killed would wait for that worker to end.  The
    fds point at /dev/null instead of being closed, so the child's copies of
    the pipe objects still close cleanly.
    """
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for writer in list(_LIVE_WRITERS):
            for fd in (writer._fd, writer._replies):
                try:
                    os.dup2(null, fd)
                except OSError:
                    pass
        _LIVE_WRITERS.clear()
    finally:
        os.close(null)


def _widen_pipe(fd: int) -> None:
    """Let the pipe hold whole frames: the loop may not come back to it for a while."""
    try:
        import fcntl
        with open('/proc/sys/fs/pipe-max-size') as handle:
            size = min(int(handle.read()), PIPE_SIZE)
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError, ValueError):
        pass                          # not Linux: frames wait for the loop, as they may


class _WriterProcess:
    """The helper process that formats profile frames (see :mod:`._profile_writer`).

    Frames go down a non-blocking pipe; what the pipe does not take at once
    is written when the event loop finds it writable, so the loop never
    waits for the helper.  Only :meth:`close` blocks, to let it finish.
    """

    def __init__(self, args: Tuple[str, str, str, str], loop: Any, log: Any) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, '-I', '-S', profile_writer.__file__, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = self._proc.pid
        self._fd = self._proc.stdin.fileno()
        self._replies = self._proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        _widen_pipe(self._fd)
        self._loop = loop
        self._log = log
        self._pending: collections.deque = collections.deque()
        self._watching = False
        self._started = False
        self._failure: Optional[OSError] = None
        at_fork_in_child(_detach_writers_in_child)
        _LIVE_WRITERS.add(self)
        #: Whether a frame was given to the helper.
        self.sent = False

    def started(self) -> bool:
        """Whether the helper is up and reading (it says so on stdout)."""
        if not self._started and select.select([self._replies], [], [], 0)[0]:
            self._started = os.read(self._replies, 1) == profile_writer.STARTED
        return self._started

    def send(self, frame: bytes) -> None:
        """Queue one frame and write as much as the pipe takes now.

        Raises OSError if the helper died: this frame is not taken, and the
        frames it had not written yet are lost.
        """
        if self._failure is not None:
            raise self._failure
        self.sent = True
        self._pending.append(memoryview(frame))
        if not self._watching:
            self._drain()
        if self._failure is not None:
            raise self._failure

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
        except OSError as exc:               # the helper died; what it had not written is lost
            self._failure = exc
            pending.clear()
        self._unwatch()

    def _unwatch(self) -> None:
        if self._watching:
            self._loop.remove_writer(self._fd)
            self._watching = False

    def end(self) -> None:
        """Write what is queued and end the stream (blocking until the pipe took it)."""
        self._unwatch()
        _LIVE_WRITERS.discard(self)          # its stdin fd is closed below, and may be reused
        proc = self._proc
        try:
            os.set_blocking(self._fd, True)
            for chunk in self._pending:
                proc.stdin.write(chunk)
            self._pending.clear()
            proc.stdin.write(profile_writer.END_FRAME)
            proc.stdin.close()
        except OSError as exc:
            self._log.warning('profile writer process failed: %s', exc)

    def wait(self, timeout: float) -> None:
        """Wait until the helper wrote everything it was given, and exited."""
        proc = self._proc
        deadline = time.monotonic() + timeout
        reply = b''
        while profile_writer.FINISHED not in reply:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                self._log.warning('profile writer process did not finish in %ss: stopped',
                                  timeout)
                self.kill()
                return
            chunk = os.read(self._replies, 2)
            if not chunk:                    # it died; what it had not written is lost
                self._log.warning('profile writer process ended early (exit %s)', proc.wait())
                break
            reply += chunk
        proc.stdout.close()
        proc.wait()           # it calls os._exit right after FINISHED (or died)

    def kill(self) -> None:
        """Stop the helper at once (it failed, is not needed, or did not finish in time)."""
        self._unwatch()
        _LIVE_WRITERS.discard(self)
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._proc.kill()
        self._proc.wait()
