"""What every engine of a process shares: task uids, signal handlers, fork hooks.

One owner per process-wide resource, the way ``asyncio.Runner`` owns SIGINT:

* :func:`next_uid` hands out ``task.000001``, ``block.000001``... from one
  counter per kind for the whole process, so no two engines ever use the
  same uid and a backend serving several engines cannot confuse their tasks.
* :class:`SignalHub` installs the shutdown signal handlers once per event
  loop and tells every live engine of that loop; an engine that shuts down
  leaves, and the handlers go only with the last engine.
* :func:`at_fork_in_child` collects what a forked child must undo (one
  ``os.register_at_fork`` hook for the whole package).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional

#: Signals that trigger an orderly shutdown; exit status is 128 + signal.
#: SIGUSR1 is what SLURM --signal and PBS send ahead of the walltime.
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)

_uid_lock = threading.Lock()
_uid_counters: Dict[str, Any] = {}


def next_uid(kind: str) -> str:
    """A uid for a new component of ``kind`` ('task', 'block'), unique in the process."""
    counter = _uid_counters.get(kind)
    if counter is None:
        with _uid_lock:
            counter = _uid_counters.setdefault(kind, itertools.count(1))
    return f'{kind}.{next(counter):06d}'      # next() on a count is atomic under the GIL


def uid_counter(kind: str) -> Callable[[], int]:
    """The process-wide number source of ``kind`` (for code that formats uids itself)."""
    counter = _uid_counters.get(kind)
    if counter is None:
        with _uid_lock:
            counter = _uid_counters.setdefault(kind, itertools.count(1))
    return counter.__next__


_warned: set = set()


def warn_once(message: str) -> None:
    """Print ``message`` on stderr, once per process."""
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ fork

_fork_callbacks: List[Callable[[], None]] = []
_fork_hook_installed = False


def at_fork_in_child(callback: Callable[[], None]) -> None:
    """Run ``callback`` in every child forked from now on (once per callback)."""
    global _fork_hook_installed
    if callback in _fork_callbacks:
        return
    _fork_callbacks.append(callback)
    if not _fork_hook_installed and hasattr(os, 'register_at_fork'):
        os.register_at_fork(after_in_child=_run_fork_callbacks)
        _fork_hook_installed = True


def _run_fork_callbacks() -> None:
    for callback in list(_fork_callbacks):
        try:
            callback()
        except Exception:           # a child must start whatever happens here
            pass


def _reset_signals_in_child() -> None:
    """A forked worker must not share the engines' signal handling.

    Without this, a forked pool worker ignores SIGTERM and writes signals it
    receives into the parent loop's wake-up pipe.
    """
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        return
    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    SignalHub._hubs.clear()


# --------------------------------------------------------------- signals

class SignalHub:
    """The shutdown signal handlers of one event loop, shared by its engines.

    An engine joins when it is created and leaves when it shuts down.  A
    signal tells every engine present (``engine._on_signal(sig)``); once
    all of them stopped, the hub ends the process with 128 + the signal.
    """

    _hubs: 'weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SignalHub]' = \
        weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.engines: List[Any] = []
        self.installed: List[int] = []
        self.signal: Optional[int] = None
        self._stopping: List[asyncio.Future] = []

    @classmethod
    def join(cls, loop: asyncio.AbstractEventLoop, engine: Any) -> Optional['SignalHub']:
        """Add ``engine`` to its loop's hub (None when not in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return None          # only the main thread may own signal handlers
        at_fork_in_child(_reset_signals_in_child)
        hub = cls._hubs.get(loop)
        if hub is None:
            hub = cls._hubs[loop] = cls(loop)
        if not hub.installed:
            hub._install()
        hub.engines.append(engine)
        return hub

    def leave(self, engine: Any) -> None:
        """Remove ``engine``; the handlers go with the last one (unless a signal is handled)."""
        if engine in self.engines:
            self.engines.remove(engine)
        if not self.engines and self.signal is None:
            self._remove()

    def _install(self) -> None:
        for sig in SHUTDOWN_SIGNALS:
            try:
                self.loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            self.installed.append(sig)

    def _remove(self) -> None:
        for sig in self.installed:
            try:
                self.loop.remove_signal_handler(sig)
            except (RuntimeError, ValueError):
                pass
        self.installed = []
        if self._hubs.get(self.loop) is self:
            del self._hubs[self.loop]

    def _on_signal(self, sig: int) -> None:
        if self.signal is not None:
            return
        self.signal = sig
        print(f'radical.asyncflow: received {signal.Signals(sig).name}, cancelling '
              f'pending tasks and shutting down', file=sys.stderr, flush=True)
        engines = list(self.engines)
        stops = [engine._on_signal(sig) for engine in engines]
        self.loop.create_task(self._exit_when_stopped(
            engines, [s for s in stops if s is not None], sig))

    async def _exit_when_stopped(self, engines: List[Any], stops: List[asyncio.Future],
                                 sig: int) -> None:
        """Wait for every engine's orderly stop, then end the process."""
        if stops:
            await asyncio.wait(stops)
        finals = [getattr(engine, '_signal_finish', None) for engine in engines]
        self._remove()
        # The futures are cancelled last, in the same loop step that raises
        # SystemExit: the driver does not wake up to a cancelled future first,
        # asyncio.run() ends with the exit status and without a traceback.
        self.loop.call_soon(_exit_process, 128 + sig, [f for f in finals if f is not None])


def _exit_process(status: int, finals: List[Callable[[], None]]) -> None:
    for final in finals:
        try:
            final()
        except Exception:
            pass
    raise SystemExit(status)
