"""Live progress of a run: a rich display on terminals, log lines otherwise.

The display reads the engine's state counters (:class:`~.monitor.RunMonitor`)
from a loop timer; it never touches the scheduler.  On a terminal (stderr is
a tty) it redraws one status line twice a second with ``rich``, fitted to the
terminal's width: the least important fields go first as it narrows
(:data:`FIELD_PRIORITY`), the bar shrinks, and it never wraps; in a batch
job (stderr is a file) it prints a plain line every
``RADICAL_ASYNCFLOW_PROGRESS_INTERVAL`` seconds (default 30).  Switch it off
with ``WorkflowEngine.create(..., progress=False)`` or
``RADICAL_ASYNCFLOW_PROGRESS=0``; that also suppresses the printed summary.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from typing import Any, Optional
from ..errors import UsageTypeError


ENV_PROGRESS = 'RADICAL_ASYNCFLOW_PROGRESS'
ENV_INTERVAL = 'RADICAL_ASYNCFLOW_PROGRESS_INTERVAL'
#: Seconds between redraws on a terminal.
TERMINAL_REFRESH = 0.5
#: Seconds between plain progress lines when stderr is not a terminal.
PLAIN_INTERVAL = 30.0
#: Seconds of history the rate (and so the ETA) is computed over.
RATE_WINDOW = 10.0
#: The status line's fields, most important first: a narrow terminal drops them
#: from the end of this list.  ('bar' shrinks from BAR_WIDTH to BAR_MIN first.)
FIELD_PRIORITY = ('count', 'failed', 'done', 'running', 'eta', 'rate', 'bar', 'waiting',
                  'label', 'cancelled', 'elapsed', 'submitted', 'ready')
BAR_WIDTH, BAR_MIN = 30, 8


def progress_enabled(progress: Optional[bool] = None) -> bool:
    """``progress`` if given, else whether ``RADICAL_ASYNCFLOW_PROGRESS`` allows it."""
    if progress is not None:
        if not isinstance(progress, bool):
            raise UsageTypeError(f'progress must be True, False or None, not {progress!r}')
        return progress
    value = os.environ.get(ENV_PROGRESS, '').strip().lower()
    return value not in ('0', 'false', 'off', 'no')


def plain_interval() -> float:
    """Seconds between plain progress lines (``RADICAL_ASYNCFLOW_PROGRESS_INTERVAL``)."""
    try:
        value = float(os.environ.get(ENV_INTERVAL, PLAIN_INTERVAL))
    except ValueError:
        return PLAIN_INTERVAL
    return value if value > 0 else PLAIN_INTERVAL


def format_duration(seconds: Optional[float]) -> str:
    """``H:MM:SS`` (or ``-`` for an unknown duration)."""
    if seconds is None or seconds != seconds or seconds == float('inf'):
        return '-'
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


def _is_terminal(stream: Any) -> bool:
    try:
        return stream.isatty() and os.environ.get('TERM', '') != 'dumb'
    except (AttributeError, ValueError):
        return False


class ProgressDisplay:
    """Shows a monitor's counts, rate and ETA; ``update()`` is called periodically."""

    def __init__(self, monitor: Any, stream: Any = None) -> None:
        self._monitor = monitor
        self._stream = stream if stream is not None else sys.stderr
        self._history: collections.deque = collections.deque()
        self._live: Any = None
        self._console: Any = None
        self.terminal = _is_terminal(self._stream)
        if self.terminal:
            self.interval = TERMINAL_REFRESH
            self._every = TERMINAL_REFRESH
            self._start_live()
        else:
            self._every = plain_interval()
            self.interval = min(self._every, 1.0)
        self._last_line = time.monotonic()

    def _start_live(self) -> None:
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError:             # rich is a dependency, but degrade gracefully
            self.terminal = False
            return
        console = self._console = Console(file=self._stream)
        self._live = Live(self._render(), console=console, auto_refresh=False,
                          transient=False, redirect_stdout=True, redirect_stderr=True)
        self._live.start()

    # ----------------------------------------------------------- figures

    def figures(self) -> dict:
        """Counts by state plus total, finished, rate (per s) and ETA (s) of the run."""
        monitor = self._monitor
        counts = monitor.state_counts()
        total, finished = monitor.total, monitor.finished
        now = time.monotonic()
        history = self._history
        history.append((now, finished))
        while len(history) > 2 and now - history[1][0] > RATE_WINDOW:
            history.popleft()
        then, before = history[0]
        if now > then and finished > before:
            rate = (finished - before) / (now - then)
        else:
            elapsed = time.time() - monitor.started
            rate = finished / elapsed if elapsed > 0 and finished else 0.0
        eta = (total - finished) / rate if rate > 0 else None
        return {'counts': counts, 'total': total, 'finished': finished, 'rate': rate,
                'eta': eta, 'elapsed': time.time() - monitor.started,
                'peak': monitor.peak_concurrency}

    def line(self) -> str:
        """One plain-text progress line."""
        f = self.figures()
        c = f['counts']
        return (f"radical.asyncflow: {format_duration(f['elapsed'])} elapsed, "
                f"{f['finished']}/{f['total']} finished ({c['DONE']} done, "
                f"{c['FAILED']} failed, {c['CANCELED']} cancelled), {c['RUNNING']} running, "
                f"{c['SUBMITTED']} submitted, {c['READY']} ready, {c['WAITING']} waiting, "
                f"{f['rate']:.1f}/s, ETA {format_duration(f['eta'])}")

    def _render(self) -> Any:
        width = self._console.width if self._console is not None else 80
        return self.status_line(self.figures(), width)

    @staticmethod
    def status_line(f: dict, width: int) -> Any:
        """The status line of figures ``f`` (see :meth:`figures`) in ``width`` columns:
        a ``rich.text.Text`` of one line, the least important fields dropped to fit."""
        from rich.text import Text
        c = f['counts']
        fields = {   # name: (label, value, style of the value), in display order
            'label': ('', 'asyncflow', 'bold'),
            'bar': None,
            'count': ('', f"{f['finished']}/{f['total']}", ''),
            'done': ('done ', str(c['DONE']), 'green'),
            'failed': ('failed ', str(c['FAILED']), 'red' if c['FAILED'] else ''),
            'cancelled': ('cancelled ', str(c['CANCELED']), 'yellow' if c['CANCELED'] else ''),
            'running': ('running ', str(c['RUNNING']), 'cyan'),
            'submitted': ('submitted ', str(c['SUBMITTED']), ''),
            'ready': ('ready ', str(c['READY']), ''),
            'waiting': ('waiting ', str(c['WAITING']), ''),
            'rate': ('', f"{f['rate']:.1f}/s", 'dim'),
            'eta': ('ETA ', format_duration(f['eta']), 'dim'),
            'elapsed': ('elapsed ', format_duration(f['elapsed']), 'dim'),
        }
        keep = list(FIELD_PRIORITY)
        bar = BAR_WIDTH

        def length() -> int:
            parts = [len(fields[n][0]) + len(fields[n][1]) for n in fields
                     if n in keep and n != 'bar']
            return sum(parts) + len(parts) - 1 + (bar + 1 if 'bar' in keep else 0)

        limit = max(width - 1, 1)        # the last column would wrap on some terminals
        while length() > limit and len(keep) > 1:
            if 'bar' in keep and bar > BAR_MIN:
                bar = max(BAR_MIN, bar - (length() - limit))
                continue
            keep.pop()
        text = Text(no_wrap=True, overflow='crop')
        for name in fields:
            if name not in keep:
                continue
            if len(text):
                text.append(' ')
            if name == 'bar':
                done = round(bar * f['finished'] / max(f['total'], 1))
                text.append('━' * done, 'green')
                text.append('━' * (bar - done), 'grey37')
                continue
            label, value, style = fields[name]
            if label:
                text.append(label, 'dim')
            text.append(value, style)
        text.truncate(limit)
        return text

    # ----------------------------------------------------------- lifetime

    def update(self) -> None:
        """Redraw (terminal) or print a line if one is due (plain)."""
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            return
        now = time.monotonic()
        if now - self._last_line >= self._every:
            self._last_line = now
            print(self.line(), file=self._stream, flush=True)

    def close(self) -> None:
        """Draw the final state and give the terminal back."""
        live, self._live = self._live, None
        if live is not None:
            try:
                live.update(self._render(), refresh=True)
            finally:
                live.stop()
