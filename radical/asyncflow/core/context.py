"""The run a program belongs to: the settings it was started with, what its engines did.

``radical-asyncflow-run`` runs a driver inside a :class:`RunContext`: the
driver's ``WorkflowEngine.create()`` takes the backends, journal and display
settings from it (instead of from environment variables set for it), and
each engine reports there how it ended, which sets the command's exit
status.  A program run without the command has no run context: its engines
read the environment and the config file themselves.

The context is found through a context variable (set by
:meth:`RunContext.serve`), so it reaches the driver's ``asyncio.run()`` and
its tasks; an engine made on another thread's loop during the run finds it
too, because ``serve`` also makes it the run of the serving process until it
ends.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

_CURRENT: contextvars.ContextVar = contextvars.ContextVar('asyncflow_run', default=None)
_served: List['RunContext'] = []        # the runs being served by this process, innermost last


@dataclass(slots=True)
class BackendChoice:
    """A backend to build: a registry name, its resources, the name tasks route by."""

    kind: str
    resources: Dict[str, Any] = field(default_factory=dict)
    name: str = ''


@dataclass(slots=True)
class RunSettings:
    """What a run's engines are to use; None means "not decided here"."""

    #: The backends to build for ``create()`` without one (the first is the default).
    backends: Optional[List[BackendChoice]] = None
    #: The user chose the backends (a driver that makes its own is then warned).
    chosen: bool = False
    #: The campaign journal.
    journal: Optional[str] = None
    #: Show live progress and the summary (None: the engine's default).
    progress: Optional[bool] = None
    #: Record the task profile (None: the engine's default).
    profile: Optional[bool] = None


@dataclass(eq=False)
class RunContext:
    """One run of a driver: its settings in, its engines' outcomes out."""

    settings: RunSettings = field(default_factory=RunSettings)
    #: Engines created during the run.
    engines_created: int = 0
    #: The run summary of each engine, as it ended.
    summaries: List[Dict[str, Any]] = field(default_factory=list)
    #: The shutdown signal that stopped the run, if one did.
    signal: Optional[int] = None

    @staticmethod
    def current() -> Optional['RunContext']:
        """The run the caller belongs to, or None."""
        run = _CURRENT.get()
        if run is None and _served:
            run = _served[-1]
        return run

    @contextlib.contextmanager
    def serve(self) -> Iterator['RunContext']:
        """Make this the current run for the code inside the ``with`` block."""
        token = _CURRENT.set(self)
        _served.append(self)
        try:
            yield self
        finally:
            _served.remove(self)
            _CURRENT.reset(token)
