"""The campaign journal file: an SQLite file of ours, checked before it is used.

:class:`Journal` opens, checks (owner, header, application id, integrity,
format) and creates the file; it is also the reader and writer of format 1
(radical.asyncflow 0.3/0.4): one row per task keyed by a hash of its
function's qualified name, call position and arguments.  Engines now write
format 2 (:mod:`.task_journal`, identities that cover the tasks' code), which
subclasses it and sets format-1 files aside.

Format 1's rows were committed once per event-loop iteration; format 2's are
committed on a writer thread (:mod:`.journal_writer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sqlite3
import stat
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Optional, Tuple

from ..data import File
from ..errors import UsageError, UsageValueError

APPLICATION_ID = 0x41464A31     # 'AFJ1': marks the file as ours
SCHEMA_VERSION = 1
MAX_BATCH = 1000                # rows per commit at most
_SQLITE_MAGIC = b'SQLite format 3\x00'
_HEADER_SIZE = 100                # bytes of the SQLite file header


class JournalError(UsageError, RuntimeError):
    """The journal file cannot be used (corrupt, foreign, unwritable)."""


@dataclass(frozen=True)
class JournalEntry:
    """One finished task."""

    identity: str
    name: str
    kind: str                       # 'value' (pickled return value) or 'stdout'
    payload: bytes
    output_files: Tuple[str, ...] = ()

    def result(self) -> Any:
        """The recorded result: the function's value or the command's stdout."""
        if self.kind == 'value':
            return pickle.loads(self.payload)
        return self.payload.decode()

    def outputs_exist(self, base: str) -> bool:
        """True when every declared OutputFile is still there."""
        return all(os.path.exists(os.path.join(base, path)) for path in self.output_files)


class Journal:
    """Reads and appends finished tasks; never overwrites a file it did not make."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(os.fspath(path))
        if os.path.exists(self.path):
            check_ownership(self.path)
        existed = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        if existed:
            self._check_header()
        else:
            _create_private(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f'{self.path} cannot be opened as a journal: {exc}') from None
        try:
            if existed:
                self._check_existing()
            self._db.execute('PRAGMA journal_mode=WAL')
            self._db.execute('PRAGMA synchronous=NORMAL')
            self._create_schema()
            self._db.execute(f'PRAGMA application_id={APPLICATION_ID}')
            self._db.execute(f'PRAGMA user_version={self.schema_version}')
        except BaseException as exc:
            # Closing also removes the -wal/-shm files SQLite made on opening.
            self._db.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise JournalError(f'{self.path} cannot be used as a journal: {exc}; '
                                   f'it was left untouched') from None
            raise
        self._pending: List[Tuple[Any, ...]] = []

    def _check_header(self) -> None:
        """Refuse a file that is not ours from its header alone, without SQLite.

        A journal whose first transaction is still in its ``-wal`` file
        may not show the application id in the main file yet: such files
        are checked by SQLite in :meth:`_check_existing`.
        """
        with open(self.path, 'rb') as handle:
            header = handle.read(_HEADER_SIZE)
        if header[:len(_SQLITE_MAGIC)] != _SQLITE_MAGIC:
            raise JournalError(
                f'{self.path} is not a radical.asyncflow journal (not an SQLite '
                f'file); it was left untouched: pass another journal path')
        app_id = int.from_bytes(header[68:72], 'big') if len(header) >= 72 else None
        if app_id != APPLICATION_ID and not os.path.exists(self.path + '-wal'):
            raise JournalError(
                f'{self.path} is an SQLite database of another program (or a damaged '
                f'one), not a radical.asyncflow journal; it was left untouched: pass '
                f'another journal path')

    def _check_existing(self) -> None:
        (app_id,) = self._db.execute('PRAGMA application_id').fetchone()
        if app_id != APPLICATION_ID:
            raise JournalError(f'{self.path} is an SQLite database of another program, '
                               f'not a radical.asyncflow journal; it was left untouched')
        (check,) = self._db.execute('PRAGMA quick_check').fetchone()
        if check != 'ok':
            check = first_problem(check)
            raise JournalError(f'{self.path} is corrupted ({check}); it was left untouched: '
                               f'restore it or start a new journal')
        (version,) = self._db.execute('PRAGMA user_version').fetchone()
        self._check_version(version)

    #: The format this class reads and writes (``PRAGMA user_version``).
    schema_version = SCHEMA_VERSION

    def _check_version(self, version: int) -> None:
        if version != self.schema_version:
            raise JournalError(f'{self.path} has journal format {version}, this version '
                               f'reads format {self.schema_version}')

    def _create_schema(self) -> None:
        self._db.execute(
            'CREATE TABLE IF NOT EXISTS tasks (identity TEXT PRIMARY KEY, '
            'name TEXT NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL, '
            'output_files TEXT NOT NULL, finished REAL NOT NULL)')

    def __bool__(self) -> bool:
        # An open journal is "something" even when it holds no rows yet:
        # ``if journal:`` must not mistake a fresh journal for no journal.
        return True

    def __len__(self) -> int:
        (count,) = self._db.execute('SELECT COUNT(*) FROM tasks').fetchone()
        return count + len(self._pending)

    def lookup(self, identity: str) -> Optional[JournalEntry]:
        """The entry for ``identity``, or None."""
        row = self._db.execute('SELECT name, kind, payload, output_files FROM tasks '
                               'WHERE identity = ?', (identity,)).fetchone()
        if row is None:
            return None
        name, kind, payload, outputs = row
        return JournalEntry(identity, name, kind, bytes(payload), tuple(json.loads(outputs)))

    def record(self, entry: JournalEntry) -> bool:
        """Queue ``entry``; True when a batch is full and should be flushed now."""
        if not entry.identity:
            raise UsageValueError(f'journal entry of {entry.name!r} has no task identity')
        self._pending.append((entry.identity, entry.name, entry.kind, entry.payload,
                              json.dumps(list(entry.output_files)), time.time()))
        return len(self._pending) >= MAX_BATCH

    @property
    def has_pending(self) -> bool:
        """Whether entries are recorded but not yet committed."""
        return bool(self._pending)

    def flush(self) -> None:
        """Commit what was recorded since the last flush."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        with self._db:
            self._db.execute('BEGIN')
            self._db.executemany('INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?)', rows)

    def close(self) -> None:
        """Flush and close the file."""
        self.flush()
        self._db.close()


def check_ownership(path: str) -> None:
    """Refuse a journal someone else could have written: its results are unpickled,
    so whoever can write it can run code in the driver that resumes from it (the
    rule ssh applies to private keys)."""
    info = os.stat(path)
    if info.st_uid != os.getuid():
        raise JournalError(
            f'refusing to resume from {path}: it belongs to user {_user(info.st_uid)}, '
            f'not to you, and its results are unpickled (code could run); copy what you '
            f'trust into a journal of your own')
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise JournalError(
            f'refusing to resume from {path}: it is writable by '
            f'{"group and others" if info.st_mode & stat.S_IWOTH and info.st_mode & stat.S_IWGRP else "others" if info.st_mode & stat.S_IWOTH else "its group"}'
            f' (mode {stat.S_IMODE(info.st_mode):04o}), and its results are unpickled '
            f'(code could run): chmod 600 {path}')


def _create_private(path: str) -> None:
    """Create an empty journal file readable and writable by its owner only."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:     # an empty file left by an earlier try: make it ours
        pass
    os.chmod(path, 0o600)


def _user(uid: int) -> str:
    try:
        import pwd
        return f'{pwd.getpwuid(uid).pw_name} ({uid})'
    except (ImportError, KeyError):
        return str(uid)


def task_identity(qualname: str, position: int, args: Iterable[Any], kwargs: dict,
                  identity_of: Callable[[Any], Optional[str]]) -> str:
    """A stable hash of what makes a task the same task in another run.

    ``identity_of(value)`` returns the identity of a dependency future and
    None for any other value.  A value that cannot be pickled makes the
    identity unique to this run, so that task always runs again.
    """
    digest = hashlib.sha256()
    digest.update(f'{qualname}\x00{position}\x00'.encode())
    digest.update(_canonical(tuple(args), identity_of))
    digest.update(_canonical(sorted(kwargs.items()), identity_of))
    return digest.hexdigest()


def _canonical(value: Any, identity_of: Callable[[Any], Optional[str]]) -> bytes:
    identity = identity_of(value)
    if identity is not None:
        return b'D' + identity.encode()
    if isinstance(value, (list, tuple)):
        return b'L(' + b','.join(_canonical(v, identity_of) for v in value) + b')'
    if isinstance(value, (set, frozenset)):
        # Sets pickle in hash order, which differs between interpreters
        # (PYTHONHASHSEED): order the members' canonical forms instead.
        return b'S(' + b','.join(sorted(_canonical(v, identity_of) for v in value)) + b')'
    if type(value) is dict:
        return b'M(' + b','.join(_canonical(k, identity_of) + b':' + _canonical(v, identity_of)
                                 for k, v in value.items()) + b')'
    if isinstance(value, File):
        return f'F{type(value).__name__}:{value.filename}'.encode()
    try:
        return b'P' + hashlib.sha256(pickle.dumps(value, protocol=4)).digest()
    except Exception:
        return f'U{type(value).__qualname__}:{id(value)}:{time.time_ns()}'.encode()


def first_problem(report: str) -> str:
    """The first line of an SQLite check report that names a problem (reports span
    lines; an error of ours is one line)."""
    lines = [line for line in report.splitlines() if line and not line.startswith('***')]
    return lines[0] if lines else report.strip()
