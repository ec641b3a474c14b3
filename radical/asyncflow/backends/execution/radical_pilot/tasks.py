"""The tasks a RadicalExecutionBackend submitted, and the one lock over their phases.

RP calls back from its own threads; shutdown, cancellation and the service
watchers act from others.  Every change of a task's :class:`Phase` is a
read-modify-write under :attr:`SubmittedTasks.lock`, and the report that
goes with it is made under the same lock, so a FINAL phase is never left
and each task is reported final exactly once, in order after its RUNNING.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Container, Dict, List, Optional

from ..spec import Reporter, TaskSpec
from .describe import SERVICE_STARTUP_TIMEOUT, TaskKind


class Phase(enum.Enum):
    """Where a submitted task is, as far as its engine was told."""

    SUBMITTED = 'submitted'
    RUNNING = 'running'
    FINAL = 'final'                 # DONE/FAILED/CANCELED reported (services: up)


@dataclass(eq=False)
class Submitted:
    """One attempt of an engine task and the RP task that runs it."""

    spec: TaskSpec
    reporter: Reporter
    kind: TaskKind
    rp_uid: str
    master: Optional[str] = None            # raptor function tasks
    startup_timeout: float = SERVICE_STARTUP_TIMEOUT
    phase: Phase = Phase.SUBMITTED
    placed: bool = False                    # its nodes were reported
    pilot: Optional[str] = None             # the pilot it was sent to (not RAPTOR's)
    cores: int = 1                          # ranks x cores per rank

    @classmethod
    def described(cls, spec: TaskSpec, reporter: Reporter, kind: TaskKind, rp_uid: str,
                  td: Any) -> 'Submitted':
        """The attempt ``rp_uid`` of ``spec``, as its RP TaskDescription ``td`` places it."""
        return cls(spec, reporter, kind, rp_uid, master=td.get('raptor_id') or None,
                   pilot=td.get('pilot') or None,
                   cores=int(td.get('ranks') or 1) * int(td.get('cores_per_rank') or 1))


class SubmittedTasks:
    """Every attempt submitted, by RP uid; the latest attempt and sandbox per engine uid."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._by_rp_uid: Dict[str, Submitted] = {}
        self._latest: Dict[str, Submitted] = {}         # engine uid -> latest attempt
        self._sandboxes: Dict[str, str] = {}            # engine uid -> sandbox path
        self._per_node: Dict[str, int] = {}             # node -> attempts placed there
        self._news: Dict[str, float] = {}               # pilot -> last submission or report

    def new_rp_uid(self, spec: TaskSpec, known: Container[str]) -> str:
        """The RP uid for an attempt: the engine uid, ``uid.N`` for attempt N, and a
        suffix more while RP knows that one already (its own ``task.NNNNNN`` ids)."""
        base = spec.uid if spec.attempt == 1 else f'{spec.uid}.{spec.attempt}'
        rp_uid, extra = base, 0
        with self.lock:
            while rp_uid in known or rp_uid in self._by_rp_uid:
                extra += 1
                rp_uid = f'{base}.r{extra}'
        return rp_uid

    def add(self, sub: Submitted) -> None:
        """Track ``sub`` (before RP can report on it)."""
        with self.lock:
            self._by_rp_uid[sub.rp_uid] = sub
            self._latest[sub.spec.uid] = sub
        self._heard(sub)

    def get(self, rp_uid: str) -> Optional[Submitted]:
        """The attempt RP knows as ``rp_uid``."""
        with self.lock:
            return self._by_rp_uid.get(rp_uid)

    def reported(self, rp_uid: str) -> Optional[Submitted]:
        """:meth:`get`, for a state report of ``rp_uid``: its pilot was heard from now."""
        sub = self.get(rp_uid)
        if sub is not None:
            self._heard(sub)
        return sub

    def _heard(self, sub: Submitted) -> None:
        if sub.pilot is not None:
            self._news[sub.pilot] = time.monotonic()

    def last_news(self, pilot: str) -> Optional[float]:
        """When (``time.monotonic()``) a task was last sent to ``pilot`` or reported on."""
        return self._news.get(pilot)

    def latest(self, uid: str) -> Optional[Submitted]:
        """The latest attempt of engine task ``uid``."""
        with self.lock:
            return self._latest.get(uid)

    def running(self, sub: Submitted, where: Optional[List[str]] = None) -> bool:
        """SUBMITTED -> RUNNING, reported (with the nodes ``where``); False (nothing
        reported) from any other phase."""
        with self.lock:
            if sub.phase is not Phase.SUBMITTED:
                return False
            sub.phase = Phase.RUNNING
            if where:
                self._count(sub, where)
                sub.reporter.running(sub.spec, where)
            else:               # as reporters written before ``where`` expect
                sub.reporter.running(sub.spec)
            return True

    def placed(self, sub: Submitted, where: List[str]) -> bool:
        """The nodes of a RUNNING attempt, learned after it was reported RUNNING
        without them (RP 1.103 sends a task's slots only when it comes back
        from the agent): counted here, and reported through the reporter's
        ``placed(spec, where)`` if it has one (the Reporter protocol has only
        ``running(spec, where)``, which must come once, at the start).  Once;
        False (nothing done) if ``where`` is empty, the nodes were counted
        already or the attempt is not RUNNING."""
        with self.lock:
            if not where or sub.placed or sub.phase is not Phase.RUNNING:
                return False
            self._count(sub, where)
            report = getattr(sub.reporter, 'placed', None)
            if report is not None:
                report(sub.spec, where)
            return True

    def _count(self, sub: Submitted, where: List[str]) -> None:
        sub.placed = True
        for node in where:
            self._per_node[node] = self._per_node.get(node, 0) + 1

    def tasks_per_node(self) -> Dict[str, int]:
        """``{node: attempts that ran there}`` (a task on several nodes counts on each)."""
        with self.lock:
            return dict(sorted(self._per_node.items()))

    def finish(self, sub: Submitted, report: Callable[[], None]) -> bool:
        """Make ``sub`` FINAL and ``report()`` it; False (nothing done) if it was FINAL."""
        with self.lock:
            if sub.phase is Phase.FINAL:
                return False
            sub.phase = Phase.FINAL
            report()
            return True

    def unfinished(self, master: Optional[str] = None) -> List[Submitted]:
        """The attempts not FINAL (those on RAPTOR ``master`` only, if given)."""
        with self.lock:
            return [s for s in self._by_rp_uid.values() if s.phase is not Phase.FINAL
                    and (master is None or s.master == master)]

    def set_sandbox(self, uid: str, path: str) -> None:
        """Where engine task ``uid`` ran (its latest attempt)."""
        with self.lock:
            self._sandboxes[uid] = path

    def sandbox(self, uid: str, pilot_sandbox: str) -> Optional[str]:
        """Where engine task ``uid`` ran or will run; None if it never ran here."""
        with self.lock:
            path = self._sandboxes.get(uid)
            if path is not None:
                return path
            latest = self._latest.get(uid)
        if latest is None:
            return None
        return os.path.join(pilot_sandbox, latest.rp_uid)

    def rp_uid_of(self, uid: str) -> Optional[str]:
        """The RP uid of the latest attempt of ``uid``."""
        latest = self.latest(uid)
        return latest.rp_uid if latest is not None else None
