"""The engine's side of the campaign journal: what to replay, what to record.

A :class:`CampaignRecorder` gives each new task its identity (see
:mod:`.journal`), resolves a ready task from the journal when an earlier run
finished it, and records each task that finishes now.  Rows are committed
once per loop iteration, so a killed driver loses at most that iteration's.
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Any, Dict, Optional

from .journal import Journal, JournalEntry, task_identity
from ..core.records import EXECUTABLE, ComponentRecord, TaskFuture


class CampaignRecorder:
    """Replays and records the tasks of one engine in one journal."""

    def __init__(self, journal: Journal, loop: asyncio.AbstractEventLoop, log: Any,
                 work_dir: str, read_only: bool) -> None:
        self.journal = journal
        self._loop = loop
        self._log = log
        self._work_dir = work_dir
        #: A dry run's results are not real: never record them.
        self._read_only = read_only
        self._flush: Optional[asyncio.Handle] = None

    def identify(self, record: ComponentRecord) -> None:
        """Give a new component its journal identity (its arguments are still unresolved)."""
        spec = record.spec
        dependencies = set(record.dependencies or ())

        def identity_of(value: Any) -> Optional[str]:
            if type(value) is TaskFuture and value._af_record in dependencies:
                return value._af_record.identity      # a dependency in this engine
            return None

        qualname = f'{spec.func.__module__}.{spec.func.__qualname__}'
        record.identity = task_identity(qualname, spec.calls, record.args, record.kwargs,
                                        identity_of)

    def replay(self, record: ComponentRecord, command: Optional[str] = None) -> bool:
        """Resolve a ready task from the journal if it finished in an earlier run."""
        entry = self.journal.lookup(record.identity)
        if entry is None or not entry.outputs_exist(self._work_dir):
            return False
        try:
            result = entry.result()
        except Exception as exc:       # e.g. the result's class no longer exists
            self._log.warning('journal entry of %s unreadable (%s); running it again',
                              record.name, exc)
            return False
        record.future.set_result(result)
        return True

    def record_done(self, record: ComponentRecord, value: Any) -> None:
        """Add a task that succeeded now (its future's value) to the journal."""
        entry = self.entry(record, value)
        if entry is None:
            return
        full = self.journal.record(entry)
        if full:
            self.flush()
        elif self._flush is None:
            # Once per loop iteration: every completion of this iteration in one commit.
            self._flush = self._loop.call_soon(self.flush)

    def entry(self, record: ComponentRecord, value: Any) -> Optional[JournalEntry]:
        """The journal entry of a task that succeeded with ``value``; None: not recorded."""
        if self._read_only or record.identity is None:
            return None
        if record.spec.task_type is EXECUTABLE:
            kind, payload = 'stdout', str(value or '').encode()
        else:
            try:
                kind, payload = 'value', pickle.dumps(value, protocol=4)
            except Exception as exc:
                self._log.warning('result of %s cannot be pickled (%s): not journaled, '
                                  'it will run again on resume', record.name, exc)
                return None
        outputs = tuple(record.files[1]) if record.files else ()
        return JournalEntry(record.identity, record.name, kind, payload, outputs)

    def flush(self) -> None:
        """Commit what was recorded."""
        self._flush = None
        self.journal.flush()

    #: Executable tasks are replayed before their command is built (by the call).
    checks_command = False

    def bind(self, settle: Any) -> None:
        """Futures are settled at once: the engine's settle path is not needed."""

    def defer(self, record: ComponentRecord, spec: Any, value: Any) -> bool:
        """Never: the row is recorded after the future settled (:meth:`record_done`)."""
        return False

    def close(self) -> Optional[Dict[str, Any]]:
        """Commit and close the journal."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self.journal.close()
        return None
