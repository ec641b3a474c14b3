"""Journal format 2: a row per finished task with the parts of its identity.

Format 1 keyed a row by one hash of the function's name, call position and
arguments, and could not tell whether the code had changed since.  Format 2
keys a row by the call (:func:`.identity.task_key`) and keeps, beside the
result, what the task ran (code digest, command, run-changing description
keys), the digest of its dependencies' results when it ran, the keys of its
dependencies (so that forgetting a task forgets its dependents) and its
position (to say "new arguments" rather than "new task").  The digests of
each function a code digest covers are in the table ``codes``, so a resume
can name the helper that changed.

A format-1 journal is never read as format 2: on opening, its table is
renamed ``tasks_format1`` (kept, never read again) and :attr:`notice` says
in one line that its tasks run again.  Its identities cannot be migrated:
they do not say which code produced a result, and replaying them is the
stale-result bug this format exists to prevent.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .identity import Recorded
from ..errors import UsageTypeError
from .journal import Journal, JournalError

FORMAT = 2
COLUMNS = ('key', 'name', 'qualname', 'position', 'args', 'deps', 'code', 'command',
           'description', 'inputs', 'python', 'kind', 'payload', 'result', 'output_files',
           'finished', 'elapsed', 'run')
INSERT = (f'INSERT OR REPLACE INTO tasks ({", ".join(COLUMNS)}) '
          f'VALUES ({", ".join("?" * len(COLUMNS))})')


@dataclass(frozen=True)
class Row:
    """One finished task, as format 2 records it."""

    key: str
    name: str
    qualname: str
    position: int
    args: str
    deps: Tuple[str, ...]
    code: str
    command: str
    description: str
    inputs: str
    python: str
    kind: str
    payload: bytes
    result: str
    output_files: Tuple[str, ...]
    finished: float
    elapsed: Optional[float]
    run: str

    @classmethod
    def from_db(cls, values: Tuple[Any, ...]) -> 'Row':
        """The row as SQLite returns it (columns in COLUMNS order)."""
        data = dict(zip(COLUMNS, values))
        data['deps'] = tuple(json.loads(data['deps']))
        data['output_files'] = tuple(json.loads(data['output_files']))
        data['payload'] = bytes(data['payload'])
        return cls(**data)

    def value(self) -> Any:
        """The recorded result: the function's value or the command's stdout."""
        if self.kind == 'value':
            return pickle.loads(self.payload)
        return self.payload.decode()

    def outputs_exist(self, base: str) -> bool:
        """True when every declared OutputFile is still there."""
        return all(os.path.exists(os.path.join(base, path)) for path in self.output_files)

    def recorded(self, code_parts: Dict[str, str]) -> Recorded:
        """The parts :func:`.identity.why_again` compares."""
        return Recorded(self.code, code_parts, self.command, self.description, self.inputs,
                        self.python)


class TaskJournal(Journal):
    """A journal of format 2 (see the module docstring)."""

    schema_version = FORMAT
    insert_sql = INSERT

    def __init__(self, path: str) -> None:
        self._old_format: Optional[int] = None
        #: One line for the user when the file was converted, else None.
        self.notice: Optional[str] = None
        self._known: Optional[set] = None
        super().__init__(path)
        self._known = {name for (name,) in
                       self._db.execute('SELECT DISTINCT qualname FROM tasks')}

    def _check_version(self, version: int) -> None:
        if version == 1:
            self._old_format = version
        elif version != FORMAT:
            raise JournalError(f'{self.path} has journal format {version}, this version '
                               f'reads formats 1 and {FORMAT}: use the radical.asyncflow '
                               f'that wrote it, or start a new journal')

    def _create_schema(self) -> None:
        db = self._db
        if self._old_format is not None:
            (count,) = db.execute('SELECT COUNT(*) FROM tasks').fetchone()
            with db:
                db.execute('BEGIN')
                db.execute('DROP TABLE IF EXISTS tasks_format1')
                db.execute('ALTER TABLE tasks RENAME TO tasks_format1')
            self.notice = (f'journal {self.path} was written by radical.asyncflow 0.3 '
                           f'(format 1), whose identities do not cover the tasks\' code: '
                           f'its {count} tasks run again (the old rows are kept in table '
                           f'tasks_format1, never read)')
        db.execute('CREATE TABLE IF NOT EXISTS tasks (key TEXT PRIMARY KEY, '
                   'name TEXT NOT NULL, qualname TEXT NOT NULL, position INTEGER NOT NULL, '
                   'args TEXT NOT NULL, deps TEXT NOT NULL, code TEXT NOT NULL, '
                   'command TEXT NOT NULL, description TEXT NOT NULL, inputs TEXT NOT NULL, '
                   'python TEXT NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL, '
                   'result TEXT NOT NULL, output_files TEXT NOT NULL, finished REAL NOT NULL, '
                   'elapsed REAL, run TEXT NOT NULL)')
        db.execute('CREATE INDEX IF NOT EXISTS tasks_slot ON tasks (qualname, position)')
        db.execute('CREATE TABLE IF NOT EXISTS codes (digest TEXT PRIMARY KEY, '
                   'parts TEXT NOT NULL)')
        # Keys forgotten on purpose (--rerun, forget): their tasks say so when they run.
        db.execute('CREATE TABLE IF NOT EXISTS forgotten (key TEXT PRIMARY KEY)')

    def find(self, key: str) -> Optional[Row]:
        """The row of the call ``key``, or None."""
        values = self._db.execute(f'SELECT {", ".join(COLUMNS)} FROM tasks WHERE key = ?',
                                  (key,)).fetchone()
        return Row.from_db(values) if values is not None else None

    def at_position(self, qualname: str, position: int) -> Optional[Tuple[str, Tuple[str, ...]]]:
        """(args digest, dependency keys) of the row of that call position, if any."""
        found = self._db.execute('SELECT args, deps FROM tasks WHERE qualname = ? AND '
                                 'position = ? LIMIT 1', (qualname, position)).fetchone()
        return (found[0], tuple(json.loads(found[1]))) if found else None

    def was_forgotten(self, key: str) -> bool:
        """Whether the row of ``key`` was forgotten on purpose."""
        return self._db.execute('SELECT 1 FROM forgotten WHERE key = ?',
                                (key,)).fetchone() is not None

    def knows(self, qualname: str) -> bool:
        """Whether an earlier run recorded a call of ``qualname`` (rows of this run
        do not count: in a first run every task is a new one)."""
        if self._known is None:
            self._known = {name for (name,) in
                           self._db.execute('SELECT DISTINCT qualname FROM tasks')}
        return qualname in self._known

    def code_parts(self, digest: str) -> Dict[str, str]:
        """The digest of each function a code digest covered (empty if unknown)."""
        found = self._db.execute('SELECT parts FROM codes WHERE digest = ?',
                                 (digest,)).fetchone()
        return json.loads(found[0]) if found else {}

    def add_code(self, digest: str, parts: Dict[str, str]) -> None:
        """Remember what a code digest covers (once per function and run)."""
        self._db.execute('INSERT OR IGNORE INTO codes VALUES (?, ?)',
                         (digest, json.dumps(parts, sort_keys=True)))

    def lookup(self, identity: str) -> Any:
        raise UsageTypeError('a format-2 journal is read with find()')

    def record(self, entry: Any) -> bool:
        raise UsageTypeError('a format-2 journal is written by its JournalWriter')


def dependents_closure(rows: List[Tuple[str, Tuple[str, ...]]], keys: set) -> set:
    """``keys`` and every key whose row depends on one of them, transitively."""
    children: Dict[str, List[str]] = {}
    for key, deps in rows:
        for dep in deps:
            children.setdefault(dep, []).append(key)
    found, todo = set(keys), list(keys)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
