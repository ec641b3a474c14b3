"""What every engine of a process shares: task uids, signal handlers, fork hooks.

One owner per process-wide resource, the way ``asyncio.Runner`` owns SIGINT:

* :func:`uid_counter` hands out the numbers of ``task.000001``,
  ``block.000001``... from one counter per kind for the whole process, so no
  two engines ever use the same uid and a backend serving several engines
  cannot confuse their tasks.
* :class:`SignalHub` installs the shutdown signal handlers of one event
  loop, only over the default handlers, and restores them when the last
  engine of that loop leaves.  A signal stops every engine in order, then
  cancels the tasks that created them (the program unwinds through its own
  ``finally`` blocks).  Under ``radical-asyncflow-run`` the command then
  exits with 128 + the signal; a program run on its own ends as the signal
  would have ended it without handlers (shell status 128 + N).
* :func:`at_fork_in_child` collects what a forked child must undo (one
  ``os.register_at_fork`` hook for the whole package).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from .context import RunContext

#: Signals that trigger an orderly shutdown; exit status is 128 + signal.
#: SIGUSR1 is what SLURM --signal and PBS send ahead of the walltime.
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)

_uid_lock = threading.Lock()
_uid_counters: Dict[str, Any] = {}


def uid_counter(kind: str) -> Callable[[], int]:
    """The process-wide number source of ``kind`` ('task', 'block', 'workflow', 'engine')."""
    counter = _uid_counters.get(kind)
    if counter is None:
        with _uid_lock:
            counter = _uid_counters.setdefault(kind, itertools.count(1))
    return counter.__next__      # next() on a count is atomic under the GIL


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
    hubs = list(SignalHub._hubs.values())
    SignalHub._hubs.clear()
    if not hubs:
        return
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        return
    for hub in hubs:
        for sig, previous in hub.installed.items():
            signal.signal(sig, previous)


# --------------------------------------------------------------- signals

def _is_default(handler: Any, sig: int) -> bool:
    return handler is signal.SIG_DFL or (sig == signal.SIGINT
                                         and handler is signal.default_int_handler)


@dataclass(eq=False)
class SignalMember:
    """An engine in its loop's :class:`SignalHub`."""

    #: Starts the engine's orderly stop for a signal; returns the stop's task (or None).
    on_signal: Callable[[int], Optional[asyncio.Future]]
    #: The task that created the engine: cancelled once the engines stopped.
    creator: Optional[asyncio.Task]
    #: Cancels the engine's unfinished futures; called for every engine only once
    #: all have stopped, so the program unwinds after every record is kept.
    cancel_pending: Callable[[], None]
    hub: Optional['SignalHub'] = None

    def leave(self) -> None:
        """The engine shut down: it hears no more signals."""
        if self.hub is not None:
            self.hub.leave(self)
            self.hub = None


class SignalHub:
    """The shutdown signal handlers of one event loop, shared by its engines.

    An engine joins when it is created and leaves when it shuts down.  A
    signal tells every engine present (its ``on_signal`` returns the task of
    its orderly stop); once all of them stopped, the tasks that created them
    are cancelled.
    """

    _hubs: 'weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SignalHub]' = \
        weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.members: List[SignalMember] = []
        #: signal -> the handler it had before (restored when the hub goes)
        self.installed: Dict[int, Any] = {}
        self.signal: Optional[int] = None

    @classmethod
    def join(cls, loop: asyncio.AbstractEventLoop, member: SignalMember) -> SignalMember:
        """Add an engine to its loop's hub (not in a thread other than the main
        one: only the main thread may own signal handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return member
        at_fork_in_child(_reset_signals_in_child)
        hub = cls._hubs.get(loop)
        if hub is None:
            hub = cls._hubs[loop] = cls(loop)
            hub._install()
        hub.members.append(member)
        member.hub = hub
        return member

    def leave(self, member: SignalMember) -> None:
        """Remove an engine; the handlers go with the last one (unless a signal is handled)."""
        if member in self.members:
            self.members.remove(member)
        if not self.members and self.signal is None:
            self._remove()

    def _install(self) -> None:
        """Handle the shutdown signals that still have their default handler."""
        for sig in SHUTDOWN_SIGNALS:
            previous = signal.getsignal(sig)
            if not _is_default(previous, sig):
                continue        # the program (or asyncio.run, for SIGINT) handles it
            try:
                self.loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            self.installed[sig] = previous

    def _remove(self) -> None:
        for sig, previous in self.installed.items():
            try:
                self.loop.remove_signal_handler(sig)
                signal.signal(sig, previous)
            except (RuntimeError, ValueError):
                pass
        self.installed = {}
        if self._hubs.get(self.loop) is self:
            del self._hubs[self.loop]

    def _on_signal(self, sig: int) -> None:
        if self.signal is not None:
            return
        self.signal = sig
        run = RunContext.current()
        if run is not None:
            run.signal = sig        # radical-asyncflow-run ends with 128 + sig
        print(f'radical.asyncflow: received {signal.Signals(sig).name}, cancelling '
              f'pending tasks and shutting down', file=sys.stderr, flush=True)
        members = list(self.members)
        stops = [member.on_signal(sig) for member in members]
        self.loop.create_task(self._end_run(members, [s for s in stops if s is not None], sig))

    async def _end_run(self, members: List[SignalMember], stops: List[asyncio.Future],
                       sig: int) -> None:
        """Wait for every engine's orderly stop, then cancel what created them.

        Under radical-asyncflow-run the command sets the exit status.  A
        program run on its own ends once it has unwound (or when asyncio.run()
        tears down this task), as the signal would have ended it without our
        handler: a shell sees 128 + the signal.
        """
        own = RunContext.current() is None
        try:
            if stops:
                await asyncio.wait(stops)
            for member in members:
                member.cancel_pending()
            self._remove()
            creators = {member.creator for member in members
                        if member.creator is not None and not member.creator.done()}
            creators.discard(asyncio.current_task())
            for creator in creators:
                creator.cancel(f'radical.asyncflow: stopped by {signal.Signals(sig).name}')
            if not own:
                return
            if creators:
                await asyncio.wait(creators)
        except asyncio.CancelledError:
            if own:
                _end_by_signal(sig)
            raise
        _end_by_signal(sig)


def _end_by_signal(sig: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    logging.shutdown()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
