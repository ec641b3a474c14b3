"""The pilots of a RadicalExecutionBackend: start, watch, lose and replace them.

One backend may hold several pilots (a list of pilot descriptions): tasks are
spread over the pilots that run, round robin, or a task names one
(``task_description={'pilot': 1}``); either way each task goes to a pilot the
backend chose, since RP 1.103 does not tell the client which pilot runs a task
it placed itself, and a lost pilot's tasks must be known.  When a pilot ends while the backend
runs (its batch job was cancelled, it failed, or it reached its runtime),
the tasks it had not finished fail with a cause that names it (RP does that,
with :func:`~...radical_compat.fail_only_the_tasks_of_a_lost_pilot` keeping it
to that pilot's tasks), the TaskManager stops sending it tasks, and, with
``replace_pilots=True``, a new pilot of the same description takes its
place: tasks that wait, and retries of the failed ones, run there.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional

from ....errors import BackendError, UsageTypeError, UsageValueError
from ....radical_compat import fail_only_the_tasks_of_a_lost_pilot
from .session import pilot_description, pilot_diagnostics

log = logging.getLogger('radical.asyncflow.radical')

#: The last part of a pilot's runtime (this fraction, at most END_MARGIN_MAX
#: seconds): the pilot gets no new task while another pilot can take it (its
#: batch job may already be ending, and a task placed then fails at once:
#: "srun: Job/step already completing"), and with replace_pilots=True its
#: replacement starts then, so that it is up when the pilot ends.
END_MARGIN = 0.2
END_MARGIN_MAX = 600.0


class Pilots:
    """The pilots of one backend, as they come and go."""

    def __init__(self, rp: Any, ru: Any, descriptions: List[Dict[str, Any]],
                 replace: bool, startup_timeout: float) -> None:
        self._rp = rp
        self._ru = ru
        self._descriptions = descriptions
        self.replace = replace
        self.startup_timeout = startup_timeout
        # Never held while RP is called: RP calls _on_pilot_state holding its own
        # PilotManager lock, which submit_pilots takes too.
        self._lock = threading.RLock()
        #: Notified when a replacement pilot was submitted.
        self._changed = threading.Condition(self._lock)
        self._starting = 0                        # replacements being submitted
        self.all: List[Any] = []                  # every pilot started, in order
        self._description_of: Dict[str, Dict[str, Any]] = {}
        self._stopping = False
        self._turn = 0
        #: Pilots that ended while the backend ran, and the replacements started.
        self.lost: List[str] = []
        self.replacements = 0
        self._replaced: set = set()
        #: uid -> when (time.monotonic) the pilot enters the end of its runtime.
        self._ending_from: Dict[str, float] = {}
        #: pilot uid -> time.monotonic() when it was submitted
        self._submitted_at: Dict[str, float] = {}
        self.pmgr: Any = None
        self.tmgr: Any = None
        self.session: Any = None

    # -- start-up -----------------------------------------------------------

    def start(self, session: Any, pmgr: Any, tmgr: Any, deadline: float,
              abort: threading.Event) -> None:
        """Submit every pilot and wait until all are active (runs in a thread)."""
        self.session, self.pmgr, self.tmgr = session, pmgr, tmgr
        fail_only_the_tasks_of_a_lost_pilot(self._rp, tmgr)
        pilots = [self._submit(description) for description in self._descriptions]
        for pilot in pilots:
            self._wait_active(pilot, deadline, abort)
        pmgr.register_callback(self._on_pilot_state)

    def _submit(self, description: Dict[str, Any]) -> Any:
        full = pilot_description(description, self.session)
        log.info('submitting pilot %s', full)
        submitted = time.monotonic()
        pilot = self.pmgr.submit_pilots(self._rp.PilotDescription(full))
        self.tmgr.add_pilots(pilot)
        with self._lock:
            self.all.append(pilot)
            self._description_of[pilot.uid] = description
            self._submitted_at[pilot.uid] = submitted
        return pilot

    def _wait_active(self, pilot: Any, deadline: float, abort: threading.Event) -> None:
        rp = self._rp
        final = (rp.FAILED, rp.CANCELED, rp.DONE)
        while True:
            state = pilot.state
            if state == rp.PMGR_ACTIVE:
                self._note_active(pilot)
                return
            if state in final:
                raise BackendError(f'RadicalExecutionBackend: pilot {pilot.uid} on '
                                   f'{pilot.resource} ended {state} during start-up'
                                   f'{pilot_diagnostics(self._ru, pilot, self.session)}')
            if abort.is_set():
                raise BackendError('RadicalExecutionBackend: pilot start-up was aborted')
            if time.monotonic() > deadline:
                raise BackendError(f'RadicalExecutionBackend: pilot {pilot.uid} did not '
                                   f'become active within {self.startup_timeout:.0f} s '
                                   f'(state {state})'
                                   f'{pilot_diagnostics(self._ru, pilot, self.session)}')
            pilot.wait(state=[rp.PMGR_ACTIVE, *final], timeout=0.5)

    # -- while the backend runs -------------------------------------------------

    @property
    def alive(self) -> List[Any]:
        """The pilots not ended (active, or still starting)."""
        with self._lock:
            return [p for p in self.all if p.state not in self._rp.FINAL]

    def count(self, what: str) -> int:
        """Cores or GPUs of the pilots not ended, as their agents see them."""
        total = 0
        for pilot in self.alive:
            try:
                total += sum(len(node[what]) for node in pilot.resource_details['node_list'])
            except Exception:
                total += int(pilot.description.get(what) or 0)
        return total

    def uid_for(self, choice: Any, task_name: str) -> str:
        """The pilot a task runs on: the one it pins itself to (an index into the
        pilots given, 0 = the first, or a pilot uid), else the next that runs."""
        if choice is None:
            return self._next(task_name)
        with self._lock:
            uids = [p.uid for p in self.all]
            first = len(self._descriptions)
        if isinstance(choice, int) and not isinstance(choice, bool) and 0 <= choice < first:
            uid = uids[choice]
        elif isinstance(choice, str) and choice in uids:
            uid = choice
        else:
            raise UsageValueError(f"task '{task_name}': task_description 'pilot' must be the "
                                  f"index of one of the {first} pilots given (0 to {first - 1}) or "
                                  f"a pilot uid ({', '.join(uids)}), not {choice!r}")
        if uid in self.lost:
            raise BackendError(f"task '{task_name}' is pinned to pilot {uid}, which has "
                               f"ended: {self.describe()}")
        return uid

    def _next(self, task_name: str) -> str:
        for pilot in list(self.all):
            if pilot.uid in self.lost:
                continue
            if pilot.state in self._rp.FINAL:
                # RP fails a lost pilot's tasks before it calls the PilotManager's
                # callbacks: a retry can get here first, and must find the replacement
                self._on_pilot_state(pilot, pilot.state)
            elif self.replace and self._ending(pilot.uid):
                self._replace_early(pilot)
        with self._lock:
            # a replacement being submitted (by RP's callback thread) is waited for
            deadline = time.monotonic() + self.startup_timeout
            while True:
                running = [p.uid for p in self.all if p.uid not in self.lost
                           and p.state not in self._rp.FINAL]
                if running or not self._starting or time.monotonic() > deadline:
                    break
                self._changed.wait(0.5)
            fresh = [uid for uid in running if not self._ending(uid)] or running
            self._turn += 1
        if not running:
            raise BackendError(f"task '{task_name}': no pilot runs any more "
                               f"({self.describe()}); replace_pilots=True starts new ones")
        return fresh[self._turn % len(fresh)]

    def _note_active(self, pilot: Any) -> None:
        """A pilot is active: from when on it counts as ending (see END_MARGIN)."""
        try:
            runtime = float(pilot.description.get('runtime') or 0) * 60
        except (AttributeError, TypeError, ValueError):
            runtime = 0.0
        if runtime > 0:
            with self._lock:
                # Counted from the submission: the batch job's clock may start long
                # before we see the agent active (a slow bootstrap under load), and
                # a pilot taken for fresh then dies under the tasks sent to it.
                start = self._submitted_at.get(pilot.uid, time.monotonic())
                self._ending_from.setdefault(
                    pilot.uid, start + runtime - min(END_MARGIN * runtime, END_MARGIN_MAX))

    def _ending(self, uid: str) -> bool:
        return self._ending_from.get(uid, float('inf')) <= time.monotonic()

    def _replace_early(self, pilot: Any) -> None:
        if self._replace(pilot):
            log.warning('pilot %s nears the end of its runtime', pilot.uid)

    def stop(self) -> None:
        """The backend shuts down: pilots ending now are not lost, nor replaced."""
        self._stopping = True

    def _on_pilot_state(self, pilot: Any, state: str) -> Optional[bool]:
        try:
            if state == self._rp.PMGR_ACTIVE:
                self._note_active(pilot)
            if state not in self._rp.FINAL or self._stopping:
                return True
            self.lose(pilot, f'ended {state} while the backend runs')
        except Exception:               # never let an error kill RP's callback thread
            log.exception('handling state %s of pilot %s failed', state,
                          getattr(pilot, 'uid', '?'))
        return True

    def lose(self, pilot: Any, why: str) -> bool:
        """``pilot`` is lost (it ended, or the health watch saw its agent stop
        launching tasks while RP still calls it active): no new task goes to it,
        the task manager lets it go, and with ``replace`` a new pilot of its
        description starts.  Its unfinished tasks are failed by RP (it ended) or
        by the backend.  False if it was lost already, or the backend stops."""
        with self._lock:
            if self._stopping or pilot.uid not in self._description_of \
                    or pilot.uid in self.lost:
                return False
            self.lost.append(pilot.uid)
        log.warning('pilot %s on %s %s; its unfinished tasks fail', pilot.uid,
                    pilot.resource, why)
        if self.replace:
            self._replace(pilot)
        try:
            self.tmgr.remove_pilots(pilot.uid)
        except Exception as exc:
            log.warning('removing pilot %s from the task manager: %s', pilot.uid, exc)
        return True

    def watched(self) -> List[Any]:
        """The pilots the health watch checks: active, not lost."""
        with self._lock:
            return [p for p in self.all if p.uid not in self.lost
                    and p.state == self._rp.PMGR_ACTIVE]

    def _replace(self, pilot: Any) -> bool:
        """Start a pilot of the same description, once (it becomes active in the
        background); False if it was replaced already or the backend stops.

        RP is called without the lock held; a task that finds no pilot running
        meanwhile waits for the replacement (see :meth:`_next`).
        """
        with self._lock:
            if self._stopping or pilot.uid in self._replaced:
                return False
            self._replaced.add(pilot.uid)
            self._starting += 1
        replacement = None
        try:
            replacement = self._submit(self._description_of[pilot.uid])
        finally:
            with self._lock:
                self._starting -= 1
                self.replacements += replacement is not None
                self._changed.notify_all()
        log.warning('pilot %s replaces %s', replacement.uid, pilot.uid)
        return True

    def describe(self) -> str:
        """``pilot.0000 (ACTIVE), ...`` for messages."""
        with self._lock:
            return ', '.join(f'{p.uid} ({p.state})' for p in self.all)


def pilot_descriptions(resources: Any) -> List[Dict[str, Any]]:
    """``resources`` as a list of pilot descriptions (one dict, or a list of them)."""
    if isinstance(resources, dict):
        return [dict(resources)]
    if isinstance(resources, (list, tuple)) and resources and \
            all(isinstance(r, dict) for r in resources):
        return [dict(r) for r in resources]
    raise UsageTypeError(f'RadicalExecutionBackend needs a dict of PilotDescription keys, or a '
                         f'non-empty list of them (one per pilot), not {type(resources).__name__}')

