"""The engine's side of a format-2 journal: code-aware replays, and why a task runs again.

Each task gets a :class:`TaskIdent` when it is called (its key: see
:mod:`.identity`).  When it is ready (its dependencies finished), the
recorder looks its row up and compares what it runs now with what the row
says it ran: the code of a function task, the command of an executable
task (so those are checked after the command is built), the run-changing
``task_description`` keys, and its dependencies.  A dependency that ran in
this run makes its dependents run (conservative: a re-run dependency may
write other files, even with the same return value).  Blocks are not
recorded; a dependency on a block counts as unchanged.

Every task that runs again gets one log line with its causes; the counts by
cause are logged and printed when the journal closes, and kept in
:attr:`IdentityRecorder.causes` for the run summary.
"""

from __future__ import annotations

import collections
import hashlib
import json
import sys
import time
from typing import Any, Callable, Dict, Optional, Tuple

from .identity import (Causes, Occurrences, _Fingerprinter, call_digest, command_fingerprint,
                       description_fingerprint, inputs_digest, python_version, task_key,
                       why_again)
from .task_journal import TaskJournal
from .journal_writer import DeferredRecorder
from ..core.context import RunContext
from ..core.records import EXECUTABLE, TASK, ComponentRecord, TaskFuture

#: Causes logged per task at debug level only (the first run of a campaign has one per task).
_QUIET_CAUSES = ('new task',)


class TaskIdent:
    """The identity parts of one task of this run."""

    __slots__ = ('key', 'args', 'deps', 'position', 'ran', 'result', 'checked', 'started')

    def __init__(self, key: str, args: str, deps: Tuple[str, ...], position: int) -> None:
        self.key = key
        self.args = args
        self.deps = deps
        self.position = position
        #: True once it runs in this run (not replayed): its dependents run too.
        self.ran = False
        #: Digest of its result (recorded or replayed): its dependents' inputs.
        self.result = ''
        #: (code, command, description, inputs) as compared when it was ready.
        self.checked: Tuple[str, str, str, str] = ('', '', '', '')
        self.started = 0.0


class IdentityRecorder(DeferredRecorder):
    """Replays and records tasks by code-aware identities (journal format 2)."""

    journal: TaskJournal
    #: Executable tasks are checked after their command is built.
    checks_command = True

    def __init__(self, journal: TaskJournal, *args: Any, run: str, **kwargs: Any) -> None:
        super().__init__(journal, *args, **kwargs)
        self._run = run
        self._fingerprints = _Fingerprinter()
        self._occurrences = Occurrences()
        self._codes_written: set = set()
        self._python = python_version()
        #: Why tasks ran again: cause -> tasks.
        self.causes: collections.Counter = collections.Counter()
        self.replayed = 0
        self.ran = 0
        if journal.notice:
            self._say(journal.notice)

    def _say(self, line: str, always: bool = True) -> None:
        self._log.warning('%s', line)
        # Under radical-asyncflow-run the counts are among its last lines instead.
        if always or RunContext.current() is None:
            print(f'radical.asyncflow: {line}', file=sys.stderr, flush=True)

    # --------------------------------------------------------- at the call
    def identify(self, record: ComponentRecord) -> None:
        """Give a new task its key (its arguments are still unresolved)."""
        spec = record.spec
        dependencies = set(record.dependencies or ())

        def key_of(value: Any) -> Optional[str]:
            if type(value) is TaskFuture and value._af_record in dependencies:
                ident = value._af_record.identity        # a dependency in this engine
                return ident.key if ident is not None else None
            return None

        qualname = f'{spec.func.__module__}.{spec.func.__qualname__}'
        plain, whole = call_digest(qualname, record.args, record.kwargs or {}, key_of)
        key = task_key(whole, self._occurrences.next(whole))
        deps = tuple(d.identity.key for d in record.dependencies or ()
                     if d.identity is not None)
        record.identity = TaskIdent(key, plain.hex()[:32], deps, spec.calls)

    # ------------------------------------------------------ when it is ready
    def replay(self, record: ComponentRecord, command: Optional[str] = None) -> bool:
        """Resolve a ready task from its row, unless something changed; say what did."""
        spec = record.spec
        if spec.task_type is EXECUTABLE and command is None:
            return False                # checked once its command is built
        ident: TaskIdent = record.identity
        ident.started = time.time()
        reran, results = [], []
        for dep in record.dependencies or ():
            dep_ident = dep.identity
            if dep.spec.kind is not TASK or dep_ident is None:
                results.append('block')
                continue
            if dep_ident.ran:
                reran.append(dep.name)
            results.append(dep_ident.result)
        inputs = inputs_digest(results)
        code = self._code(spec.func) if spec.task_type is not EXECUTABLE else None
        command_fp = command_fingerprint(command, record.options) if command is not None else ''
        description = description_fingerprint(record.options) if command is None else ''
        ident.checked = (code.digest if code else '', command_fp, description, inputs)
        row = self.journal.find(ident.key)
        miss = None if row is not None else self._why_missing(record, ident)
        causes = why_again(spec.name, row.recorded(self.journal.code_parts(row.code))
                           if row is not None else None, code,
                           command_fp if command is not None else None, description, inputs,
                           reran, self._python, miss)
        if not causes and row is not None:
            if not row.outputs_exist(self._work_dir):
                causes = Causes(('an OutputFile of it is missing',))
            else:
                try:
                    value = row.value()
                except Exception as exc:        # e.g. the result's class is gone
                    causes = Causes((f'its recorded result cannot be read ({exc})',))
                else:
                    ident.result = row.result
                    self.replayed += 1
                    record.future.set_result(value)
                    return True
        ident.ran = True
        self.ran += 1
        for cause in causes.items:
            self.causes[cause] += 1
        log = self._log.debug if causes.items[0] in _QUIET_CAUSES else self._log.info
        log('%s (%s) runs: %s', spec.name, record.uid, causes)
        return False

    def _code(self, func: Callable) -> Any:
        code = self._fingerprints.function(func)
        if code.digest not in self._codes_written:
            self._codes_written.add(code.digest)
            self.journal.add_code(code.digest, code.parts)
        return code

    def _why_missing(self, record: ComponentRecord, ident: TaskIdent) -> str:
        spec = record.spec
        qualname = f'{spec.func.__module__}.{spec.func.__qualname__}'
        if self.journal.was_forgotten(ident.key):
            return 'forgotten on purpose (--rerun or radical-asyncflow-journal forget)'
        if not self.journal.knows(qualname):
            return 'new task'
        same_place = self.journal.at_position(qualname, ident.position)
        if same_place is not None and same_place[0] == ident.args:
            changed = [dep.name for dep in record.dependencies or ()
                       if dep.identity is not None
                       and dep.identity.key not in same_place[1]]
            if changed:
                return f"dependency '{changed[0]}' has new arguments"
        return f"new arguments (no call of '{spec.name}' with them is recorded)"

    # ------------------------------------------------------- when it is done
    def row(self, record: ComponentRecord, value: Any) -> Optional[Tuple[Any, ...]]:
        """The format-2 row of a task that succeeded now, or None."""
        entry = self.entry(record, value)
        if entry is None:
            return None
        ident: TaskIdent = record.identity
        spec = record.spec
        code, command, description, inputs = ident.checked
        ident.result = hashlib.sha256(entry.payload).hexdigest()[:32]
        now = time.time()
        return (ident.key, spec.name, f'{spec.func.__module__}.{spec.func.__qualname__}',
                ident.position, ident.args, json.dumps(ident.deps), code, command, description,
                inputs, self._python, entry.kind, entry.payload, ident.result,
                json.dumps(list(entry.output_files)), now,
                now - ident.started if ident.started else None, self._run)

    def counts(self) -> Dict[str, Any]:
        """Replayed, ran, and why they ran (cause -> tasks), for the run summary."""
        return {'replayed': self.replayed, 'ran': self.ran, 'causes': dict(self.causes)}

    def close(self) -> Optional[Dict[str, Any]]:
        """Commit, close, and say how many tasks were replayed and why the others ran;
        return those counts."""
        super().close()
        if self.replayed or self.causes:
            self._say(summary_line(self.replayed, self.ran, self.causes), always=False)
        return self.counts()


def summary_line(replayed: int, ran: int, causes: Dict[str, int]) -> str:
    """``journal: 12 replayed, 4 ran (3 code of 'analyze' changed, 1 new task)``."""
    parts = ', '.join(f'{n} {cause}' for cause, n in
                      sorted(causes.items(), key=lambda item: (-item[1], item[0])))
    return f'journal: {replayed} replayed, {ran} ran' + (f' ({parts})' if parts else '')
