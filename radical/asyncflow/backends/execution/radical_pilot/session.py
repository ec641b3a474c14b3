"""The RADICAL-Pilot session around RadicalExecutionBackend's pilot.

Prepares the environment RP starts its helpers from, describes the pilot,
explains a pilot that did not start (the tails of its logs), and closes the
session so that none of its processes is left running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, List

from ....errors import BackendError
from ....radical_compat import cancel_pilots
from .._command import read_tail
from . import agent_fix

#: Pilot walltime in minutes when ``resources`` gives none (RP's own default is 10).
DEFAULT_RUNTIME = 60
#: Seconds allowed for closing the session, then for its processes to exit.
CLOSE_TIMEOUT = 120.0
PROCESS_EXIT_TIMEOUT = 10.0
TASK_STOP_TIMEOUT = 10.0
PILOT_CANCEL_TIMEOUT = 30.0

log = logging.getLogger('radical.asyncflow.radical')


class RPEnvironment:
    """The environment RP starts its helpers from, while a backend needs it.

    RP runs its helper programs and Python by name: when this interpreter's
    venv is not activated, its ``bin`` goes on ``PATH`` and ``VIRTUAL_ENV``
    names it.  The pilots started meanwhile load :mod:`.agent_fix` (their RP
    programs find its ``sitecustomize`` first on ``PYTHONPATH``).  The first
    backend that starts makes the change, the last one that closes undoes it
    (where nobody changed the variables since).
    """

    _lock = threading.Lock()
    _users = 0
    _saved: Dict[str, Any] = {}       # variable -> (value before, value set)

    @classmethod
    def acquire(cls) -> None:
        """A backend starts: make the change if it is the first."""
        with cls._lock:
            cls._users += 1
            if cls._users > 1:
                return
            wanted = {}
            bindir = os.path.dirname(sys.executable)
            path = os.environ.get('PATH', '')
            if bindir not in path.split(os.pathsep):
                wanted['PATH'] = bindir + os.pathsep + path if path else bindir
            if sys.prefix != sys.base_prefix and not os.environ.get('VIRTUAL_ENV') \
                    and not os.environ.get('CONDA_PREFIX'):
                wanted['VIRTUAL_ENV'] = sys.prefix
            # the pilots inherit PYTHONPATH: their RP programs load the agent fix
            wanted.update(agent_fix.changes(os.environ))
            for name, value in wanted.items():
                cls._saved[name] = (os.environ.get(name), value)
                os.environ[name] = value

    @classmethod
    def release(cls) -> None:
        """A backend closed: undo the change if it was the last."""
        with cls._lock:
            cls._users = max(cls._users - 1, 0)
            if cls._users:
                return
            for name, (before, value) in cls._saved.items():
                if os.environ.get(name) != value:
                    continue            # changed by someone else since: theirs now
                if before is None:
                    del os.environ[name]
                else:
                    os.environ[name] = before
            cls._saved = {}


def pilot_description(resources: Dict[str, Any], rp_session: Any) -> Dict[str, Any]:
    """``resources`` with explicit cores, gpus and runtime."""
    pd = dict(resources)
    resource = pd.setdefault('resource', 'local.localhost')
    pd.setdefault('runtime', DEFAULT_RUNTIME)
    # RP's default kills this very process when the pilot fails; the
    # engine reports the failure instead
    pd.setdefault('exit_on_error', False)
    try:
        rcfg = rp_session.get_resource_config(resource, pd.get('access_schema'))
    except Exception as exc:
        raise BackendError(f"RadicalExecutionBackend: unknown resource {resource!r}: {exc}. "
                           f"Known: {', '.join(rp_session.list_resources())}") from exc
    cores_per_node = int(rcfg.get('cores_per_node') or 0)
    gpus_per_node = int(rcfg.get('gpus_per_node') or 0)
    if resource.startswith('local.'):       # the config's numbers are made up
        cores_per_node = os.cpu_count() or 1
        gpus_per_node = 0
    nodes = int(pd.get('nodes') or 0)
    if not pd.get('cores'):
        if not cores_per_node:
            raise BackendError(f"RadicalExecutionBackend: resource {resource!r} does not "
                               f"say how many cores a node has: give 'cores' in resources")
        pd['cores'] = (nodes or 1) * cores_per_node
    if pd.get('gpus') is None:
        pd['gpus'] = (nodes or 1) * gpus_per_node
    return pd


def pilot_diagnostics(ru: Any, pilot: Any, rp_session: Any) -> str:
    """The tails of the pilot's bootstrap output, when they can be read."""
    parts = []
    try:
        sandbox = ru.Url(pilot.pilot_sandbox).path
    except Exception:
        sandbox = ''
    for name in ('bootstrap_0.out', 'bootstrap_0.err', 'agent_0.err'):
        text = read_tail(os.path.join(sandbox, name), 1500) if sandbox else ''
        if text.strip():
            parts.append(f'--- {name} (tail):\n{text.rstrip()}')
    # A pilot refused by the launcher never gets a sandbox: its reason is
    # in the client session's launcher log.
    session_dir = getattr(rp_session, 'path', None) or ''
    launcher_log = os.path.join(session_dir, 'pmgr_launching.0000.log')
    errors = [line for line in read_tail(launcher_log, 20000).splitlines()
              if 'ERROR' in line or 'Error' in line or 'xception' in line]
    if errors:
        parts.append('--- pmgr_launching.0000.log (errors):\n' + '\n'.join(errors[-8:]))
    where = ''
    if sandbox:
        missing = '' if os.path.isdir(sandbox) else ' (never created: the pilot was not launched)'
        where = f'\npilot sandbox: {sandbox}{missing}'
    return where + ('\n' + '\n'.join(parts) if parts else '')


def close_when_the_loop_ends(close: Callable[[], None]) -> 'asyncio.Task[None]':
    """A task that calls ``close`` when it is cancelled: ``asyncio.run`` cancels
    the tasks left when its coroutine ends, and a backend's shutdown() cancels
    it after it has begun to stop (``close`` then has nothing to do)."""
    async def wait_for_the_end() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            close()
            raise
    return asyncio.get_running_loop().create_task(wait_for_the_end(),
                                                  name='asyncflow-rp-loop-guard')


def stop_tasks(rp: Any, tmgr: Any) -> None:
    """Cancel every unfinished RP task (services, RAPTOR masters and workers
    included) and wait, bounded, until RP says they ended: the pilot's
    own shutdown leaves such processes behind."""
    if tmgr is None:
        return
    try:
        alive = [t for t in tmgr.get_tasks() if t.state not in rp.FINAL]
        if alive:
            tmgr.cancel_tasks([t.uid for t in alive])
            deadline = time.monotonic() + TASK_STOP_TIMEOUT
            while any(t.state not in rp.FINAL for t in alive) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
    except Exception as exc:
        log.warning('cancelling the remaining RP tasks: %s', exc)


def close_session(session: Any, pmgr: Any, threads: Any) -> None:
    """Close the session (bounded, in one of ``threads``), then make sure none of its
    processes is left."""
    sid = session.uid
    if not threads.call(_close_session, session, pmgr, timeout=CLOSE_TIMEOUT):
        log.warning('closing RP session %s took more than %.0f s', sid, CLOSE_TIMEOUT)
    _reap_session_processes(sid, PROCESS_EXIT_TIMEOUT)


def _close_session(session: Any, pmgr: Any) -> None:
    try:
        if pmgr is not None:
            # a pilot asked to stop reports CANCELED when it is gone; without
            # this, close() waits 10 s for a kill it does not need
            t0 = time.monotonic()
            cancel_pilots(pmgr, PILOT_CANCEL_TIMEOUT)
            log.debug('pilots cancelled in %.1f s', time.monotonic() - t0)
        session.close(terminate=True, download=False)
    except Exception as exc:
        log.warning('closing RP session %s: %s', getattr(session, 'uid', '?'), exc)


def _session_processes(sid: str) -> List[Any]:
    """Processes of RP session ``sid``: the pilot's bootstrap, agent and tasks.

    This process and its children (not RP's: its helpers detach) are not
    among them, even if they name the session directory.
    """
    import psutil
    me = psutil.Process()
    own = {me.pid, *(child.pid for child in me.children(recursive=True))}
    found = []
    for proc in psutil.process_iter(['pid', 'cmdline']):
        if proc.info['pid'] in own:
            continue
        try:
            if sid in ' '.join(proc.info['cmdline'] or ()) or \
                    proc.environ().get('RP_SESSION_ID') == sid:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _reap_session_processes(sid: str, timeout: float) -> None:
    """Wait for the session's processes to exit; terminate, then kill, the rest."""
    import psutil
    deadline = time.monotonic() + timeout
    procs = _session_processes(sid)
    while procs and time.monotonic() < deadline:
        time.sleep(0.25)
        procs = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        procs = [p for p in _session_processes(sid) if p.status() != psutil.STATUS_ZOMBIE]
        if not procs:
            return
        log.warning('RP session %s left %d processes; sending %s', sid, len(procs), sig.name)
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)
