"""Every use of a private attribute of radical.pilot or radical.utils, in one place.

These are not part of either project's public API and may change in any
release; each accessor here says what it relies on, and
``tests/backends/test_radical_compat.py`` checks all of them against the installed
releases, which must be among :data:`TESTED_VERSIONS`.  Nothing here imports
radical.pilot: the callers pass the modules or objects in.
"""

from __future__ import annotations

import codecs
import os
import pickle
import time
from typing import Any, Container, FrozenSet, List, Optional

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


def cancel_pilots(pmgr: Any, timeout: float, uids: Optional[List[str]] = None) -> None:
    """Cancel the manager's pilots (those of ``uids`` only, if given), waiting at most
    ``timeout`` s (private ``_timeout``)."""
    pmgr.cancel_pilots(uids=uids, _timeout=timeout)


def fail_only_the_tasks_of_a_lost_pilot(rp: Any, tmgr: Any) -> None:
    """Make a TaskManager fail only the tasks of a pilot that ended.

    RP 1.103's TaskManager, when one of its pilots ends, marks *every* task it
    holds FAILED ("pilot died"): the tasks running on its other pilots too,
    which would then be run again by a retry while they still run; and it sets
    the state on the task objects before publishing it, so the TaskManager's
    callbacks never hear of those failures.  Installed before ``add_pilots``
    (which registers ``tmgr._pilot_state_cb`` with each pilot), this callback
    publishes a failure for the tasks that pilot had not finished, with a
    message naming it.  Relies on the private ``_pilot_state_cb``, ``_tasks``,
    ``_closed``, ``_terminate`` and ``advance``.
    """
    def pilot_state_cb(pilots: Any, state: Any = None) -> bool:
        if tmgr._terminate.is_set():
            return False
        if tmgr._closed:
            return True
        for pilot in pilots if isinstance(pilots, list) else [pilots]:
            if pilot.state not in rp.FINAL:
                continue
            stranded = []
            for task in list(tmgr._tasks.values()):
                if task.pilot != pilot.uid or task.state in rp.FINAL or \
                        str(task.state).startswith('TMGR_STAGING_OUTPUT'):
                    continue
                # published, not set on the task: the TaskManager then applies the
                # change itself and calls its callbacks (RP's own code set it
                # first, and the callbacks never heard of the failure)
                update = task.as_dict()
                update.update({'state': rp.FAILED,
                               'exception': f'RuntimeError("pilot {pilot.uid} on '
                                            f'{pilot.resource} ended {pilot.state}")',
                               'exception_detail': f'its pilot {pilot.uid} ended '
                                                   f'{pilot.state} before the task did'})
                stranded.append(update)
            if stranded:
                tmgr.advance(stranded, publish=True, push=False)
        return True

    tmgr._pilot_state_cb = pilot_state_cb


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
