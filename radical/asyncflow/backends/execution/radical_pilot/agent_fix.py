"""A fix for RADICAL-Pilot's agent, applied to the pilots this backend starts (issue 25).

radical.utils 1.103.1 (with radical.pilot 1.103.2, the newest releases)
sends on a ZeroMQ PUB socket from several threads of one process without a
lock: ``radical.utils.zmq.Publisher.put`` (``zmq/pubsub.py:227-240``) calls
``self._socket.send`` without taking the lock the publisher creates at
``:172``, and RP's ``agent_executing`` publishes state updates from its work
thread (``agent/executing/popen.py:133``, ``advance_tasks(..., publish=True)``)
and from its watcher thread (``popen.py:417-421``) on the same publisher.
ZeroMQ sockets are not thread safe, and pyzmq releases the GIL while it
sends: two sends that overlap corrupt libzmq's heap, the component dies
("double free or corruption (out)", "Assertion failed: refs_ >= 0
(src/msg.cpp:563)", or a SIGSEGV in libzmq's I/O thread with nothing
written), and the pilot stays ACTIVE with nobody launching its tasks.

The fix serialises ``Publisher.put`` with a lock per publisher in RP's own
programs (``radical-pilot-*``), through the ``sitecustomize`` in
``agent_site/``: :func:`changes` puts that directory first on the client's
``PYTHONPATH`` before the RP session starts, the pilot's bootstrapper keeps
the client's ``PYTHONPATH`` (``bootstrap_0.sh``: ``VE_PYTHONPATH``), and the
agent's Pythons load it.  In a pilot whose radical.utils takes the lock in
``put`` itself, the ``sitecustomize`` changes nothing.  Each RP program that
loads it appends one line to ``asyncflow_agent_fix.log`` in its working
directory (the pilot sandbox): PID, program, component and what was done.
"""

from __future__ import annotations

import os
from typing import Dict, Mapping

from ....errors import UsageValueError

#: The directory holding the ``sitecustomize`` the pilot's processes load.
AGENT_SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'agent_site')
#: The radical.utils releases (major.minor) whose ``Publisher.put`` the fix was
#: measured to need (1.103.1, the newest at the time).  Other releases get the
#: same ``sitecustomize``: it locks only where ``put`` does not lock itself.
FIXES_RU_VERSIONS = ('1.103',)
#: Chooses what the pilot's ``sitecustomize`` does: ``lock`` (the fix, default),
#: ``off`` (nothing), ``probe`` (research: log overlapping sends, no lock).
MODE_VARIABLE = 'RADICAL_ASYNCFLOW_RP_PUBLISH'
MODES = ('lock', 'probe', 'off')


def changes(environ: Mapping[str, str], mode: str = 'lock') -> Dict[str, str]:
    """The variables to set in ``environ`` so that pilots started from it load the
    fix: :data:`AGENT_SITE` first on ``PYTHONPATH`` (once), and the mode
    (a mode already in ``environ`` is kept: the user's or a benchmark's choice)."""
    if mode not in MODES:
        raise UsageValueError(f"agent fix mode must be one of {', '.join(MODES)}, not {mode!r}")
    parts = [p for p in environ.get('PYTHONPATH', '').split(os.pathsep)
             if p and p != AGENT_SITE]
    wanted = {'PYTHONPATH': os.pathsep.join([AGENT_SITE, *parts])}
    if environ.get(MODE_VARIABLE) not in MODES:
        wanted[MODE_VARIABLE] = mode
    return {k: v for k, v in wanted.items() if environ.get(k) != v}


def install(environ: Dict[str, str], mode: str = 'lock') -> None:
    """Apply :func:`changes` to ``environ`` with ``mode`` forced (benchmarks, tests)."""
    environ.pop(MODE_VARIABLE, None)
    environ.update(changes(environ, mode))
