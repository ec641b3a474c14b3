"""What a RadicalExecutionBackend does about its pilots' health (issue 25).

:class:`PilotCare` runs the :class:`~.health.HealthWatch` of the backend's
active pilots in one of the backend's threads, and gives up a pilot the
watch finds lost while RP still calls it active: the pilot is lost for the
backend (no new task goes to it; with ``replace_pilots=True`` a new pilot of
its description starts, see :meth:`.Pilots.lose`), its unfinished tasks fail
with a cause naming it and what was seen (their retries run on another
pilot), and it is cancelled so that nothing keeps running on it.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Any, List

from ....errors import BackendError, UsageTypeError, UsageValueError
from ....radical_compat import cancel_pilots
from .health import STALL_AFTER, Finding, HealthWatch, Verdict
from .session import PILOT_CANCEL_TIMEOUT
from .tasks import SubmittedTasks

if TYPE_CHECKING:
    from .pilots import Pilots
    from .workers import DaemonPool

log = logging.getLogger('radical.asyncflow.radical')


class PilotCare:
    """The health watch of a backend's pilots, and what follows a finding."""

    def __init__(self, tasks: SubmittedTasks, pilots: 'Pilots', threads: 'DaemonPool', ru: Any,
                 watch: bool = True, stall_after: float = STALL_AFTER) -> None:
        if not isinstance(watch, bool):
            raise UsageTypeError(f'watch_pilots must be True or False, not {watch!r}')
        if isinstance(stall_after, bool) or not isinstance(stall_after, (int, float)) \
                or not stall_after > 0:
            raise UsageValueError(f'pilot_stall_after must be a number of seconds > 0, '
                                  f'not {stall_after!r}')
        self._tasks = tasks
        self._pilots = pilots
        self._threads = threads
        self._ru = ru
        self.enabled = watch
        self.watch = HealthWatch(tasks, pilots.watched, self._lost, self._sandbox,
                                 stall_after=float(stall_after))

    @property
    def findings(self) -> List[Finding]:
        """Every pilot found lost, with what was seen, in order."""
        return list(self.watch.findings)

    def start(self, session: Any, pmgr: Any, tmgr: Any, deadline: float,
              abort: Any) -> None:
        """Start the pilots (:meth:`.Pilots.start`, in a thread of the backend's), then
        watch them: the watch's loop holds one of the backend's threads."""
        self._pilots.start(session, pmgr, tmgr, deadline, abort)
        if self.enabled:
            self._threads.submit(self.watch.run)

    def stop(self) -> None:
        """The backend stops: pilots that end now are not lost, the watch ends."""
        self._pilots.stop()
        self.watch.stop()

    def _sandbox(self, pilot: Any) -> str:
        return self._ru.Url(pilot.pilot_sandbox).path.rstrip('/')

    def _lost(self, pilot: Any, finding: Finding) -> None:
        if not self._pilots.lose(pilot, finding.message()):
            return                      # lost already, or the backend stops
        stranded = [sub for sub in self._tasks.unfinished() if sub.pilot == pilot.uid]
        for sub in stranded:
            error = BackendError(f"task '{sub.spec.name}' ({sub.spec.uid}) did not finish: "
                                 f'{finding.message()}; the pilot is cancelled')
            self._tasks.finish(sub, lambda sub=sub, error=error:
                               sub.reporter.failed(sub.spec, error))
        self._threads.submit(self._cancel, pilot, finding, [s.rp_uid for s in stranded])

    def _cancel(self, pilot: Any, finding: Finding, rp_uids: List[str]) -> None:
        try:
            if rp_uids:
                self._pilots.tmgr.cancel_tasks(rp_uids)
            cancel_pilots(self._pilots.pmgr, PILOT_CANCEL_TIMEOUT, [pilot.uid])
        except Exception as exc:
            log.warning('cancelling lost pilot %s: %s', pilot.uid, exc)
        # a stopped component never sees the cancel, and RP's session cleanup
        # does not find it (setproctitle hides its session id): end it here
        if finding.verdict is Verdict.COMPONENT_STOPPED:
            pid = self.watch.pid_of(pilot.uid)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
