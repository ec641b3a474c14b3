"""Is a pilot still launching tasks?  What the client can see of its agent (issue 25).

RADICAL-Pilot 1.103 does not supervise its agent's components: when
``agent_executing`` dies (killed, or aborted inside libzmq: see
:mod:`.agent_fix`) or hangs, agent_0 goes on, the pilot stays
``PMGR_ACTIVE`` and the tasks it holds never change state again.  Each
component runs as a process titled ``rp.<component uid>`` whose working
directory is the pilot sandbox, and writes ``<uid>.err`` (its stderr: empty
while it is healthy; an abort leaves glibc's or libzmq's message there, and
with ``PYTHONFAULTHANDLER`` every thread's Python stack) and ``<uid>.prof``
(one line per event; ``END`` last when it stops cleanly) in that sandbox.

:class:`PilotHealth` judges one pilot from three sources, in this order:

1. the component's process, where the client sees it (``local.*``
   resources: same host): gone or a zombie for :data:`DEAD_GRACE` seconds
   while the pilot's agent_0 lives -> ``COMPONENT_DEAD``; stopped
   (``T``, e.g. SIGSTOP) in two checks in a row -> ``COMPONENT_STOPPED``;
2. its ``.err`` in the sandbox, where the client can read it (local, or a
   file system the cluster shares): a fatal line -> ``COMPONENT_FAILED``;
3. the flow of state reports (any resource): the pilot holds tasks not yet
   running and sent no state report for ``stall_after`` seconds, and either
   it has cores the client does not count as busy, or a task it reported
   running has ended on the node (its ``<uid>.prof`` in the task sandbox,
   written by RP's launch script when RP's profiling is on, has
   ``launch_stop``) -> ``STALLED``.  Otherwise the silence may be long tasks
   legitimately running: their own timeouts govern them.

:class:`HealthWatch` runs the checks of every active pilot of a backend in
one loop and reports each pilot's first finding once.  What to do then (fail
the pilot's tasks, cancel it, start a replacement) is the backend's business.
"""

from __future__ import annotations

import enum
import glob
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from .tasks import Phase

if TYPE_CHECKING:
    from .tasks import SubmittedTasks

log = logging.getLogger('radical.asyncflow.radical')

#: The component that launches tasks (the one issue 25 saw die).  RP numbers
#: components per session: ``agent_executing.0000`` in its first pilot,
#: ``.0001`` in the next (a replacement), ...
EXECUTING = 'agent_executing'
#: Default seconds without a state report before a pilot that holds tasks
#: waiting for free cores is stalled: the longest silence of a healthy pilot
#: holding tasks was 0.7-1.2 s (load 25-81); see docs/backends/radical_pilot.md.
STALL_AFTER = 120.0
#: Default seconds between checks.
CHECK_EVERY = 2.0
#: Seconds a component must stay gone, with its pilot's agent_0 alive, before the
#: pilot is lost: a pilot that ends (cancelled, at its runtime) stops its
#: components first and agent_0 after them, and RP reports its end itself.
DEAD_GRACE = 10.0
#: agent_0's process title (``bin/radical-pilot-agent_0``).
AGENT = 'agent.0'
#: Lines in a component's .err that mean it is dead or dying.
FATAL = re.compile(r'double free|corruption|Segmentation fault|Fatal Python error|'
                   r'Assertion failed|Aborted|core dumped|malloc\(\)|free\(\)|Killed')


class Verdict(enum.Enum):
    """What was seen of the pilot's launching component."""
    COMPONENT_DEAD = 'component dead'
    COMPONENT_STOPPED = 'component stopped'
    COMPONENT_FAILED = 'component failed'
    STALLED = 'stalled'


@dataclass(frozen=True)
class Finding:
    """Why a pilot is taken for lost: one line of ``detail`` for messages."""
    verdict: Verdict
    pilot: str
    component: str
    detail: str
    at: float                   # time.monotonic() of the check that found it

    def message(self) -> str:
        """``pilot P: <component> <verdict>: <detail>``, for logs and task errors."""
        return f'pilot {self.pilot}: {self.component} {self.verdict.value}: {self.detail}'


@dataclass(frozen=True)
class Flow:
    """What the client knows of the tasks it sent to one pilot."""
    waiting: int                # sent, no AGENT_EXECUTING report yet
    busy_cores: int             # cores of the tasks reported running, not final
    cores: int                  # the pilot's cores
    last_report: float          # time.monotonic() of the last state report of its tasks
    #: (task sandbox path, task uid) of tasks reported running, oldest first
    running: Sequence[Tuple[str, str]] = ()


class SandboxProbe:
    """One component of one pilot, as its sandbox (and, when local, /proc) show it."""

    def __init__(self, sandbox: str, component: Optional[str] = None,
                 local: bool = True) -> None:
        self.sandbox = sandbox
        #: Its uid (``agent_executing.0001``); None until found in /proc or the sandbox.
        self.component = component
        self.local = local
        self._pid: Optional[int] = None
        self._agent: Optional[int] = None       # agent_0's PID, once seen
        self._err_seen = 0

    def agent_gone(self) -> bool:
        """Whether the pilot's agent_0, seen alive before, is gone (local pilots)."""
        if self._agent is None and self.local:
            self._agent = find_component_pid(self.sandbox, AGENT)
            return False
        return self._agent is not None and _state(self._agent) in ('gone', 'Z', 'X')

    def resolve(self) -> Optional[str]:
        """The component's uid: given, else the ``agent_executing.*`` process working
        in the sandbox (local), else the ``agent_executing.*.err`` file there."""
        if self.component is None:
            self.pid()
        if self.component is None:
            names = sorted(glob.glob(os.path.join(glob.escape(self.sandbox),
                                                  f'{EXECUTING}.*.err')))
            if names:
                self.component = os.path.basename(names[0])[:-len('.err')]
        return self.component

    def pid(self) -> Optional[int]:
        """The component's PID (local pilots only; None until found)."""
        if self._pid is None and self.local:
            found = find_component(self.sandbox, self.component)
            if found is not None:
                self._pid, self.component = found
        return self._pid

    def process_state(self) -> Optional[str]:
        """``/proc`` state letter of the component (``R``, ``S``, ``T``, ``Z``...),
        ``'gone'`` once a process seen before is gone, None when unknown."""
        pid = self.pid()
        return None if pid is None else _state(pid)

    def new_err(self) -> str:
        """What the component wrote to its ``.err`` since the last call."""
        if self.resolve() is None:
            return ''
        path = os.path.join(self.sandbox, f'{self.component}.err')
        try:
            with open(path, 'rb') as f:
                f.seek(self._err_seen)
                data = f.read(65536)
        except OSError:
            return ''
        self._err_seen += len(data)
        return data.decode(errors='replace')

    def err_text(self, limit: int = 4000) -> str:
        """The first ``limit`` characters of the component's ``.err``."""
        try:
            if self.resolve() is None:
                return ''
            with open(os.path.join(self.sandbox, f"{self.component}.err"),
                      errors='replace') as f:
                return f.read(limit)
        except OSError:
            return ''


def _state(pid: int) -> str:
    """``/proc`` state letter of ``pid``, ``'gone'`` if there is no such process."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return 'gone'


def find_component(sandbox: str, component: Optional[str] = None) -> Optional[Tuple[int, str]]:
    """(PID, uid) of a pilot's component on this host (``component``, default the
    executing one of any number): RP titles it ``rp.<uid>`` (setproctitle) and
    starts it in the pilot sandbox."""
    sandbox = os.path.realpath(sandbox)
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as f:
                title = f.read().split(b'\0')[0].strip().decode(errors='replace')
            if not (title == f'rp.{component}' if component
                    else title.startswith(f'rp.{EXECUTING}.')):
                continue
            if os.path.realpath(os.readlink(f'/proc/{entry}/cwd')) == sandbox:
                return int(entry), title[len('rp.'):]
        except OSError:
            continue
    return None


def find_component_pid(sandbox: str, component: Optional[str] = None) -> Optional[int]:
    """The PID of :func:`find_component`, or None."""
    found = find_component(sandbox, component)
    return found[0] if found is not None else None


class PilotHealth:
    """The checks of one pilot (see the module docstring); not thread safe."""

    def __init__(self, pilot: str, sandbox: str, *, local: bool,
                 stall_after: float = STALL_AFTER, component: Optional[str] = None) -> None:
        self.pilot = pilot
        self.stall_after = stall_after
        self.probe = SandboxProbe(sandbox, component, local)
        self._stopped_checks = 0
        self._dead_since: Optional[float] = None
        self._err = ''

    def check(self, flow: Optional[Flow], now: Optional[float] = None) -> Optional[Finding]:
        """The first rule that holds (module docstring), or None: the pilot looks alive."""
        now = time.monotonic() if now is None else now
        state = self.probe.process_state()
        self._err += self.probe.new_err()
        name = self.probe.component or f'{EXECUTING}.*'
        first_line = next((line for line in self._err.splitlines() if line.strip()), '')
        self.probe.agent_gone()                 # agent_0 is seen while it lives
        if state in ('gone', 'Z', 'X'):
            self._dead_since = now if self._dead_since is None else self._dead_since
            if self.probe.agent_gone() or now - self._dead_since < DEAD_GRACE:
                return None                     # the pilot ends: RP reports it
            return Finding(Verdict.COMPONENT_DEAD, self.pilot, name,
                           f'process {self.probe.pid()} is gone'
                           + (f'; its .err: {first_line!r}' if first_line else ''), now)
        self._stopped_checks = self._stopped_checks + 1 if state in ('T', 't') else 0
        if self._stopped_checks >= 2:
            return Finding(Verdict.COMPONENT_STOPPED, self.pilot, name,
                           f'process {self.probe.pid()} is stopped (state {state})', now)
        fatal = next((line for line in self._err.splitlines() if FATAL.search(line)), None)
        if fatal is not None:
            return Finding(Verdict.COMPONENT_FAILED, self.pilot, name,
                           f'its .err in {self.probe.sandbox}: {fatal.strip()[:200]!r}', now)
        if flow is None or flow.waiting == 0 or now - flow.last_report <= self.stall_after:
            return None
        silent = f'no task changed state for {now - flow.last_report:.0f} s'
        if flow.busy_cores < flow.cores:
            return Finding(Verdict.STALLED, self.pilot, name,
                           f'{flow.waiting} tasks wait to run with {flow.cores - flow.busy_cores}'
                           f' of {flow.cores} cores free, and {silent}', now)
        for sandbox, uid in list(flow.running)[:self.ENDED_CHECKS]:
            if task_ended(sandbox, uid):
                return Finding(Verdict.STALLED, self.pilot, name,
                               f'task {uid} ended on the node but was never reported; '
                               f'{flow.waiting} tasks wait to run, and {silent}', now)
        return None

    #: Running tasks (oldest first) whose sandbox is read when the pilot is silent.
    ENDED_CHECKS = 8


def task_ended(sandbox: str, uid: str) -> bool:
    """Whether RP's launch script of task ``uid`` finished (``launch_stop`` in its
    ``<uid>.prof``: written when RP's profiling is on)."""
    try:
        with open(os.path.join(sandbox, f'{uid}.prof'), 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 512))
            return b',launch_stop,' in f.read()
    except OSError:
        return False


class HealthWatch:
    """Checks every active pilot of a backend each ``every`` seconds, in one loop
    (:meth:`run`, in one of the backend's pool threads), and calls
    ``on_lost(pilot, finding)`` once per pilot, for its first finding.

    The flow of each pilot comes from the backend's submitted tasks: those
    placed on it and not final, and when a task was last sent to it or
    reported on (:meth:`.SubmittedTasks.last_news`).
    """

    def __init__(self, tasks: 'SubmittedTasks', pilots: Callable[[], List[Any]],
                 on_lost: Callable[[Any, Finding], None], sandbox_of: Callable[[Any], str],
                 stall_after: float = STALL_AFTER, every: float = CHECK_EVERY) -> None:
        self._tasks = tasks
        self._pilots = pilots                   # the pilots to watch (active, not lost)
        self._on_lost = on_lost
        self._sandbox_of = sandbox_of
        self.stall_after = stall_after
        self.every = every
        self._health: Dict[str, PilotHealth] = {}
        self._since: Dict[str, float] = {}      # pilot uid -> when it was first checked
        self._sandboxes: Dict[str, str] = {}    # pilot uid -> its sandbox
        self._stop = threading.Event()
        #: Every finding reported, in order.
        self.findings: List[Finding] = []

    def stop(self) -> None:
        """End :meth:`run` (within one interval)."""
        self._stop.set()

    def run(self) -> None:
        """Check until :meth:`stop`; a check that fails is logged, not fatal."""
        while not self._stop.wait(self.every):
            try:
                self.check_all()
            except Exception:
                log.exception('checking the pilots failed')

    def check_all(self, now: Optional[float] = None) -> List[Finding]:
        """One round over the pilots to watch; the findings of this round."""
        pilots = [p for p in self._pilots() if p.uid not in self._lost_uids()]
        flows = self._flows({p.uid: pilot_cores(p) for p in pilots})
        found = []
        for pilot in pilots:
            health = self._health.get(pilot.uid)
            if health is None:
                sandbox = self._sandboxes[pilot.uid] = self._sandbox_of(pilot)
                health = self._health[pilot.uid] = PilotHealth(
                    pilot.uid, sandbox, stall_after=self.stall_after,
                    local=str(getattr(pilot, 'resource', '')).startswith('local.'))
                health.probe.pid()          # seen now, a death later is not missed
                self._since[pilot.uid] = time.monotonic()
            finding = health.check(flows.get(pilot.uid), now)
            if finding is not None:
                self.findings.append(finding)
                found.append(finding)
                log.error('%s', finding.message())
                self._on_lost(pilot, finding)
        return found

    def pid_of(self, pilot: str) -> Optional[int]:
        """The PID of ``pilot``'s executing component, if it was seen (local pilots)."""
        health = self._health.get(pilot)
        return health.probe.pid() if health is not None else None

    def _lost_uids(self) -> set:
        return {f.pilot for f in self.findings}

    def _flows(self, cores: Dict[str, int]) -> Dict[str, Flow]:
        waiting: Dict[str, int] = {}
        busy: Dict[str, int] = {}
        running: Dict[str, List[Tuple[str, str]]] = {}
        for sub in self._tasks.unfinished():
            if sub.pilot not in cores:
                continue
            if sub.phase is Phase.SUBMITTED:
                waiting[sub.pilot] = waiting.get(sub.pilot, 0) + 1
            else:
                busy[sub.pilot] = busy.get(sub.pilot, 0) + sub.cores
                running.setdefault(sub.pilot, []).append(
                    (os.path.join(self._sandboxes.get(sub.pilot, ''), sub.rp_uid), sub.rp_uid))
        now = time.monotonic()
        return {uid: Flow(waiting=waiting.get(uid, 0), busy_cores=busy.get(uid, 0),
                          cores=n, last_report=max(self._tasks.last_news(uid) or 0.0,
                                                   self._since.get(uid, now)),
                          running=running.get(uid, ()))
                for uid, n in cores.items()}


def pilot_cores(pilot: Any) -> int:
    """The cores a pilot's agent schedules on (its description's, until it says)."""
    try:
        return sum(len(node['cores']) for node in pilot.resource_details['node_list'])
    except Exception:
        return int(pilot.description.get('cores') or 0)
