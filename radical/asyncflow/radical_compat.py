"""Every use of a private attribute of radical.pilot or radical.utils, in one place.

These are not part of either project's public API and may change in any
release; each accessor here says what it relies on, and
``tests/test_radical_compat.py`` checks all of them against the installed
releases, which must be among :data:`TESTED_VERSIONS`.  Nothing here imports
radical.pilot: the callers pass the modules or objects in.
"""

from __future__ import annotations

import codecs
import os
import pickle
import time
from typing import Any, Container, FrozenSet, Optional

#: The releases (major.minor) the accessors below were checked against.
TESTED_VERSIONS = {'radical.pilot': ('1.103',), 'radical.utils': ('1.103',)}


def is_tested(package: str, version: str) -> bool:
    """Whether ``version`` of ``package`` is one of :data:`TESTED_VERSIONS`."""
    return str(version).startswith(tuple(v + '.' for v in TESTED_VERSIONS[package]))


# ---------------------------------------------------------------- radical.pilot

def pilot_description_keys(rp: Any) -> FrozenSet[str]:
    """The keys ``rp.PilotDescription`` takes (its private ``_schema``)."""
    return frozenset(rp.PilotDescription._schema)


def task_description_keys(rp: Any) -> FrozenSet[str]:
    """The keys ``rp.TaskDescription`` takes (its private ``_schema``)."""
    return frozenset(rp.TaskDescription._schema)


def known_task_uids(tmgr: Any) -> Container[str]:
    """The task uids a TaskManager has seen (its private ``_known_uids``; empty if gone).

    RP refuses a second task with a uid it knows, RAPTOR's and its own included.
    """
    return getattr(tmgr, '_known_uids', None) or ()


def python_task(func_blob: bytes, args: tuple, kwargs: dict) -> str:
    """What ``rp.PythonTask(func, args, kwargs)`` returns, for a function already
    pickled (``func_blob = dill.dumps(func)``, as RP pickles it).

    RP's format: ``radical.pilot.utils.serialize_bson`` (base64 of a pickle)
    of ``{'func', 'args', 'kwargs'}``.  A function sent with every task is
    then pickled once, not once per task.
    """
    return codecs.encode(pickle.dumps({'func': func_blob, 'args': args, 'kwargs': kwargs}),
                         'base64').decode()


def cancel_pilots(pmgr: Any, timeout: float) -> None:
    """Cancel the manager's pilots, waiting at most ``timeout`` s (private ``_timeout``)."""
    pmgr.cancel_pilots(_timeout=timeout)


# ---------------------------------------------------------------- radical.utils

def local_clock_profiler(ru: Any, enabled: Optional[bool] = None, **kwargs: Any) -> Any:
    """A ``ru.Profiler`` on the host's clock whose ``flush`` does not ``fsync``.

    radical.utils first asks an NTP server for the time (its private
    ``_timestamp_init``), which on a compute node without network stalls for
    seconds; and syncing a profile of many MB at every flush stalls the loop.
    ``enabled`` overrides what radical.utils decides from the environment
    (by setting what its ``__init__`` sets: ``_enabled``, ``_handle``,
    ``_path``, ``_name`` and the time stamps).
    """
    class LocalClockProfiler(ru.Profiler):
        def _timestamp_init(self):
            now = time.time()
            return [now, now, 'sys']

        def flush(self, verbose=False):
            if self._enabled and self._handle is not None:
                self._handle.flush()

    prof = LocalClockProfiler(**kwargs)
    if enabled is not None and enabled != bool(prof._enabled):
        prof._enabled = enabled
        if enabled:
            prof._handle = None
            prof._path = kwargs.get('path') or os.getcwd()
            prof._name = kwargs['name']
            prof._ts_zero, prof._ts_abs, prof._ts_mode = prof._timestamp_init()
            os.makedirs(prof._path, exist_ok=True)
    return prof


def profiler_file(prof: Any) -> Optional[Any]:
    """The open file of a ``ru.Profiler``, its header written (private ``_open``, ``_handle``).

    None for a profiler that does not work that way.
    """
    try:
        prof._open()
        return prof._handle
    except Exception:
        return None
