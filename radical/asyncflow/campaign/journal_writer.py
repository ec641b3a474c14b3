"""The journal off the event loop: rows are committed on a writer thread.

The rule that makes an asynchronous commit safe is **durable before
visible**: a task recorded in the journal settles its future (and so
releases its dependents, wakes the program's ``await``, runs its
done-callbacks) only *after* its row is committed.  Whatever anybody could
have observed of a task's result (the program, a dependent, a file the
driver wrote from it) is therefore in the journal when the driver dies, by
SIGKILL or otherwise; what is lost is only completions nobody saw yet,
which run again on resume (as a task still running at the kill does).
A dependent's row can thus never be durable without its dependencies'.

The loop's part per task: pickle the result (the program may change the
object later, so not on another thread), append the row to a list under a
lock.  The writer thread takes everything queued, commits it in one
transaction (SQLite releases the GIL while it writes), and hands the
settlements back through the engine's reporter, which handles them in the
loop's 5 ms slices like any other report (the engine hands the recorder
that path with :meth:`DeferredRecorder.bind`).  While a commit is running the
next rows queue up, so the batch grows with the load (group commit): a
task waits one commit, a few ms when idle.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .journal import Journal, JournalError
from .recorder import CampaignRecorder

#: Rows per transaction at most (a larger backlog takes several commits).
WRITER_BATCH = 20_000
#: Rows per INSERT statement (SQLite allows 32766 parameters per statement).
ROWS_PER_STATEMENT = 500
#: Page cache of the writer's connection (KiB): the primary-key index of
#: 10^6 rows stays in memory, so an insert does not read pages back.
WRITER_CACHE_KIB = 65_536


class JournalWriter:
    """Commits queued rows on its own thread and connection; calls back when durable."""

    def __init__(self, path: str, on_durable: Callable[[List[Any]], None],
                 insert_sql: str = 'INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?)'
                 ) -> None:
        self._path = path
        self._insert = insert_sql
        self._statements: dict = {}
        self._on_durable = on_durable
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._rows: List[Tuple[Any, ...]] = []
        self._tokens: List[Any] = []
        self._closing = False
        self._busy = False
        self.error: Optional[BaseException] = None
        #: Seconds spent inside transactions, and rows committed (benchmarks).
        self.commit_seconds = 0.0
        self.committed = 0
        self.commits = 0
        self._thread = threading.Thread(target=self._run, name='asyncflow-journal',
                                        daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            raise JournalError(f'{path}: the journal writer could not start: {self.error}')

    def put(self, row: Tuple[Any, ...], token: Any) -> None:
        """Queue ``row``; ``token`` is handed to ``on_durable`` once it is committed."""
        with self._lock:
            self._rows.append(row)
            self._tokens.append(token)
            if not self._busy:
                self._wake.notify()

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued is committed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._rows or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._wake.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued and stop the thread."""
        with self._lock:
            self._closing = True
            self._wake.notify_all()
        self._thread.join(timeout)

    def _insert_rows(self, db: sqlite3.Connection, rows: List[Tuple[Any, ...]]) -> None:
        """Insert ``rows`` with one statement per ROWS_PER_STATEMENT rows.

        Not ``executemany``: Python's sqlite3 releases the GIL around each
        row's step and must take it back after each, which costs up to a
        switch interval (5 ms) per row while the loop and the backend's
        threads are busy: 2.5x slower even on an idle interpreter here.
        """
        prefix = self._insert.split(' VALUES ', 1)[0]
        width = len(rows[0])
        one = '(' + ','.join('?' * width) + ')'
        per = max(1, min(ROWS_PER_STATEMENT, 30_000 // width))
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            sql = self._statements.get(len(chunk))
            if sql is None:
                sql = self._statements[len(chunk)] = \
                    f'{prefix} VALUES {",".join([one] * len(chunk))}'
            db.execute(sql, [value for row in chunk for value in row])

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
            db.execute('PRAGMA journal_mode=WAL')
            # NORMAL in WAL mode: a commit survives the process being killed
            # (it is in the OS's cache); a power loss may take the last ones.
            db.execute('PRAGMA synchronous=NORMAL')
            db.execute(f'PRAGMA cache_size=-{WRITER_CACHE_KIB}')
            db.execute('PRAGMA busy_timeout=10000')
        except sqlite3.Error as exc:
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                with self._lock:
                    while not self._rows and not self._closing:
                        self._wake.wait()
                    if not self._rows:
                        return
                    rows, tokens = self._rows[:WRITER_BATCH], self._tokens[:WRITER_BATCH]
                    del self._rows[:WRITER_BATCH], self._tokens[:WRITER_BATCH]
                    self._busy = True
                start = time.perf_counter()
                try:
                    db.execute('BEGIN')
                    self._insert_rows(db, rows)
                    db.execute('COMMIT')
                except sqlite3.Error as exc:
                    # Not durable: the futures stay pending until shutdown
                    # cancels them, and the tasks run again on resume.
                    self.error = exc
                    try:
                        db.execute('ROLLBACK')
                    except sqlite3.Error:
                        pass
                    with self._lock:
                        self._busy = False
                        self._wake.notify_all()
                    continue
                self.commit_seconds += time.perf_counter() - start
                self.committed += len(rows)
                self.commits += 1
                self._on_durable(tokens)
                with self._lock:
                    self._busy = False
                    self._wake.notify_all()
        finally:
            db.close()


class DeferredRecorder(CampaignRecorder):
    """A CampaignRecorder whose rows are committed by a :class:`JournalWriter`; a
    recorded task's future is settled once its row is durable, by the ``settle``
    callable the engine gives :meth:`bind` (safe to call from the writer thread)."""

    def __init__(self, journal: Journal, loop: Any, log: Any, work_dir: str,
                 read_only: bool) -> None:
        super().__init__(journal, loop, log, work_dir, read_only)
        self._settle: Optional[Callable[[Any, Any], None]] = None
        self.writer = JournalWriter(journal.path, self._durable,
                                    *filter(None, [getattr(journal, 'insert_sql', None)]))

    def bind(self, settle: Callable[[Any, Any], None]) -> None:
        """``settle(spec, value)`` settles a task's future on the engine's loop."""
        self._settle = settle

    def defer(self, record: Any, spec: Any, value: Any) -> bool:
        """Queue the row of a task that succeeded with ``value``; True when its
        future will be settled after the commit (False: settle it now)."""
        if self._settle is None:
            return False
        row = self.row(record, value)
        if row is None:
            return False
        self.writer.put(row, (spec, value))
        return True

    def row(self, record: Any, value: Any) -> Optional[Tuple[Any, ...]]:
        """The journal row of a task that succeeded now, or None if it is not recorded."""
        entry = self.entry(record, value)
        if entry is None:
            return None
        return (entry.identity, entry.name, entry.kind, entry.payload,
                json.dumps(list(entry.output_files)), time.time())

    def _durable(self, tokens: List[Any]) -> None:
        """Writer thread: these rows are committed; settle their futures on the loop."""
        settle = self._settle
        for token in tokens:
            if token is not None and settle is not None:
                settle(*token)

    def record_done(self, record: Any, value: Any) -> None:
        """A task settled without :meth:`defer` (a custom success handler): queue its row."""
        row = self.row(record, value)
        if row is not None:
            self.writer.put(row, None)

    def flush(self) -> None:
        """Nothing to do on the loop: the writer commits."""

    def drain(self, timeout: float) -> bool:
        """Wait (blocking) until every queued row is committed; False on timeout."""
        return self.writer.drain(timeout)

    def close(self) -> Optional[Dict[str, Any]]:
        """Commit what is queued, stop the writer, close the journal."""
        self.writer.close()
        if self.writer.error is not None:
            self._log.warning('journal %s: a commit failed (%s); those tasks run again on '
                              'resume', self.journal.path, self.writer.error)
        self.journal.close()
        return None
