"""What the engine asks of the layers above it.

The core defines these small interfaces and imports none of their
implementations: :mod:`radical.asyncflow.observability` provides the run
observer (counts, profile, progress, summary), :mod:`radical.asyncflow.campaign`
the task recorder (the journal).  :mod:`radical.asyncflow.workflow_manager`
puts them together when it creates an engine.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence

from .graph import NodeState
from .records import ComponentRecord


class RunWatcher(Protocol):
    """Hears of every component's life as it happens, next to the run observer
    (the telemetry of :mod:`radical.asyncflow.observability.telemetry`).

    Plugged in with :meth:`RunObserver.watch`; until then the engine pays
    nothing for it.  Its calls run on the engine's event loop.
    """

    def created(self, record: ComponentRecord) -> None:
        """A new component, WAITING or READY."""

    def changed(self, record: ComponentRecord, old: NodeState, new: NodeState) -> None:
        """``record`` went from ``old`` to ``new`` (SUBMITTED comes by ``submitted``)."""

    def submitted(self, records: List[ComponentRecord]) -> None:
        """These tasks, just made SUBMITTED, go to a backend now."""

    def run_ended(self, summary: Dict[str, Any]) -> None:
        """The run ended; ``summary`` is the run observer's summary."""


class RunObserver(Protocol):
    """Sees every component of one engine from creation to its outcome.

    ``created(record)`` is called once per new record, after the graph took
    it; the observer then sets ``record.observer``, which
    :func:`~.graph.transition` calls after every state change.
    """

    def created(self, record: ComponentRecord) -> None:
        """A new component, WAITING or READY."""

    def batch_submitted(self, records: List[ComponentRecord]) -> None:
        """These tasks, just made SUBMITTED, go to a backend now."""

    def placed(self, nodes: Sequence[str], late_uid: Optional[str] = None) -> None:
        """A task runs on ``nodes`` (``late_uid``: learned after it was reported running)."""

    def state_counts(self) -> Dict[str, int]:
        """Components per state name, now."""

    @property
    def peak_concurrency(self) -> int:
        """The most tasks in the backends at once."""

    @property
    def unfinished(self) -> int:
        """Components not finished yet."""

    def start(self) -> None:
        """The engine runs: start periodic work (progress, profile writes)."""

    def stop(self, exit_signal: Optional[int], outcome: Dict[str, Any],
             journal: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The run ended with ``outcome``: write what is kept, return the summary
        (``journal``: what the task recorder said of the run)."""

    def watch(self, watcher: Optional[RunWatcher]) -> None:
        """From now on tell ``watcher`` of every new component and change (None: stop)."""


class TaskRecorder(Protocol):
    """Remembers finished tasks across runs (a campaign journal).

    A recorder may keep its rows off the loop: :meth:`defer` then takes a
    finished task's result, and the recorder settles the task's future
    through the callable given to :meth:`bind` once the row is durable
    (durable before visible: nothing observes a result the journal could
    still lose).
    """

    #: True: an executable task is checked (:meth:`replay` with its command)
    #: once its command is built, not when it is ready.
    checks_command: bool

    def bind(self, settle: Callable[[Any, Any], None]) -> None:
        """``settle(task_spec, value)``: settles a deferred task (any thread)."""

    def identify(self, record: ComponentRecord) -> None:
        """Give a new task its identity (``record.identity``)."""

    def replay(self, record: ComponentRecord, command: Optional[str] = None) -> bool:
        """Settle a ready task from an earlier run's result; True if it did."""

    def defer(self, record: ComponentRecord, task_spec: Any, value: Any) -> bool:
        """A task succeeded with ``value``: True when the recorder settles its
        future later (through ``settle``), False when the engine settles it now."""

    def record_done(self, record: ComponentRecord, value: Any) -> None:
        """Keep the result of a task that succeeded now (not deferred)."""

    def close(self) -> Optional[Dict[str, Any]]:
        """Keep everything recorded; no call follows.  Returns what the run
        summary shows of the journal (None: nothing)."""
