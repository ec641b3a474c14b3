"""``radical-asyncflow-journal``: look into a campaign journal, forget tasks, check it.

::

    radical-asyncflow-journal list   JOURNAL [PATTERN ...]      recorded tasks, times, sizes
    radical-asyncflow-journal show   JOURNAL TASK               one task: its identity's parts
    radical-asyncflow-journal forget JOURNAL PATTERN ... [-n]   forget tasks and their dependents
    radical-asyncflow-journal check  JOURNAL                    is it ours, intact, private?

A PATTERN is a task name or a glob over names (``analyze``, ``sim*``), or a
qualified name (``driver.main.<locals>.analyze``); TASK is that or a key
prefix.  ``forget`` also forgets every recorded task that depends on a
forgotten one, transitively (the rows keep their dependencies' keys), so the
next resume runs them all again; ``radical-asyncflow-run --rerun PATTERN``
does the same before it runs the driver.

Only ``forget`` writes.  Errors are one line: a missing journal, a file that
is not one (another program's, damaged), one that its group or others can
write (its results are unpickled), one of the old format 1.  Exit status 0,
1 when ``check`` found a problem, 2 for an error.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import sqlite3
import sys
from typing import Iterable, List, Optional, Sequence, Tuple

from ..campaign.journal import APPLICATION_ID, JournalError, check_ownership, first_problem
from ..campaign.task_journal import COLUMNS, FORMAT, Row, TaskJournal, dependents_closure

PROG = 'radical-asyncflow-journal'
EXIT_OK, EXIT_PROBLEM, EXIT_ERROR = 0, 1, 2


def open_journal(path: str, write: bool = False, ownership: bool = True) -> sqlite3.Connection:
    """A connection to the format-2 journal at ``path``; JournalError in one line."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise JournalError(f'{path}: no such journal')
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise JournalError(f'{path} is not a radical.asyncflow journal (empty or not a file)')
    if ownership:
        check_ownership(path)
    probe = TaskJournal.__new__(TaskJournal)      # the header check alone, no SQLite
    probe.path = path
    probe._check_header()
    mode = 'rw' if write else 'ro'
    try:
        db = sqlite3.connect(f'file:{path}?mode={mode}', uri=True, isolation_level=None)
        (app_id,) = db.execute('PRAGMA application_id').fetchone()
        (version,) = db.execute('PRAGMA user_version').fetchone()
        (check,) = db.execute('PRAGMA quick_check').fetchone()
    except sqlite3.DatabaseError as exc:
        raise JournalError(f'{path} is damaged or not a journal ({exc})') from None
    if app_id != APPLICATION_ID:
        raise JournalError(f'{path} is an SQLite database of another program, not a '
                           f'radical.asyncflow journal')
    if check != 'ok':
        raise JournalError(f'{path} is damaged ({first_problem(check)}): restore it or '
                           f'start a new journal')
    if version == 1:
        raise JournalError(f'{path} is a journal of format 1 (radical.asyncflow 0.3), '
                           f'whose tasks cannot be listed by name; resuming from it with '
                           f'this version runs its tasks again')
    if version != FORMAT:
        raise JournalError(f'{path} has journal format {version}; this version reads {FORMAT}')
    return db


def rows(db: sqlite3.Connection, where: str = '', params: Sequence = ()) -> List[Row]:
    """The rows (optionally ``WHERE ...``), oldest first."""
    return [Row.from_db(r) for r in db.execute(
        f'SELECT {", ".join(COLUMNS)} FROM tasks {where} ORDER BY finished', params)]


def matching(db: sqlite3.Connection, patterns: Iterable[str]) -> List[Tuple[str, str]]:
    """(key, name) of the rows whose name or qualified name matches a pattern."""
    patterns = list(patterns)
    return [(key, name) for key, name, qualname in
            db.execute('SELECT key, name, qualname FROM tasks')
            if any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(qualname, p)
                   for p in patterns)]


def forget(db: sqlite3.Connection, patterns: Sequence[str],
           dry_run: bool = False) -> Tuple[int, int, List[str]]:
    """Forget the tasks matching ``patterns`` and their dependents: (matched,
    dependents, names of the functions affected).  One transaction."""
    matched = {key for key, _ in matching(db, patterns)}
    if not matched:
        return 0, 0, []
    graph = [(key, tuple(json.loads(deps))) for key, deps in
             db.execute('SELECT key, deps FROM tasks')]
    doomed = dependents_closure(graph, matched)
    names = sorted({name for (name,) in db.execute(
        f'SELECT name FROM tasks WHERE key IN ({",".join("?" * len(doomed))})',
        tuple(doomed))}) if len(doomed) < 30000 else []
    if not dry_run:
        db.execute('BEGIN IMMEDIATE')
        try:
            db.executemany('DELETE FROM tasks WHERE key = ?', ((k,) for k in doomed))
            db.executemany('INSERT OR IGNORE INTO forgotten VALUES (?)', ((k,) for k in doomed))
            db.execute('COMMIT')
        except BaseException:
            db.execute('ROLLBACK')
            raise
    return len(matched), len(doomed) - len(matched), names


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime('%Y-%m-%d %H:%M:%S')


def _size(count: int) -> str:
    for unit in ('B', 'KB', 'MB', 'GB'):
        if count < 1024 or unit == 'GB':
            return f'{count:.0f} {unit}' if unit == 'B' else f'{count:.1f} {unit}'
        count /= 1024
    return f'{count} B'


def cmd_list(db: sqlite3.Connection, patterns: Sequence[str], out) -> int:
    """``list``: the recorded tasks (matching ``patterns``) with times and sizes."""
    selected = rows(db)
    if patterns:
        keys = {key for key, _ in matching(db, patterns)}
        selected = [r for r in selected if r.key in keys]
    print(f'{"finished":19s} {"took s":>8s} {"size":>9s}  {"key":12s} {"#":>4s}  task', file=out)
    total = 0
    for row in selected:
        took = f'{row.elapsed:.2f}' if row.elapsed is not None else '-'
        total += len(row.payload)
        print(f'{_when(row.finished)} {took:>8s} {_size(len(row.payload)):>9s}  '
              f'{row.key[:12]} {row.position:4d}  {row.name}', file=out)
    print(f'{len(selected)} tasks, results {_size(total)}', file=out)
    return EXIT_OK


def cmd_show(db: sqlite3.Connection, task: str, out) -> int:
    """``show``: one task (a name, glob or key prefix) with its identity's parts."""
    found = rows(db, 'WHERE key LIKE ?', (task + '%',)) if all(
        c in '0123456789abcdef' for c in task) else []
    if not found:
        keys = {key for key, _ in matching(db, [task])}
        found = [r for r in rows(db) if r.key in keys]
    if not found:
        raise JournalError(f'no recorded task matches {task!r} (list them with '
                           f'{PROG} list JOURNAL)')
    names = dict(db.execute('SELECT key, name FROM tasks'))
    for row in found[:20]:
        parts = db.execute('SELECT parts FROM codes WHERE digest = ?', (row.code,)).fetchone()
        deps = ', '.join(f'{names.get(d, "(not recorded)")} {d[:12]}' for d in row.deps)
        try:
            value = repr(row.value())
        except Exception as exc:            # its class may be gone
            value = f'(cannot be read: {exc})'
        lines = [
            ('task', f'{row.name} ({row.qualname}), call {row.position}'),
            ('key', row.key), ('arguments', row.args), ('dependencies', deps or '-'),
            ('code', f'{row.code or "-"}' + (f' covering {", ".join(json.loads(parts[0]))}'
                                              if parts else '')),
            ('command', row.command or '-'), ('description', row.description or '-'),
            ('inputs', row.inputs), ('python', row.python),
            ('result', f'{row.kind}, {_size(len(row.payload))}: {value[:200]}'),
            ('output files', ', '.join(row.output_files) or '-'),
            ('finished', f'{_when(row.finished)}' + (f', took {row.elapsed:.2f} s'
                                                     if row.elapsed is not None else '')),
            ('run', row.run)]
        for label, text in lines:
            print(f'{label + ":":14s}{text}', file=out)
        print(file=out)
    if len(found) > 20:
        print(f'... and {len(found) - 20} more', file=out)
    return EXIT_OK


def cmd_forget(db: sqlite3.Connection, patterns: Sequence[str], dry_run: bool, out) -> int:
    """``forget``: the matching tasks and their dependents (``-n``: only say which)."""
    matched, dependents, names = forget(db, patterns, dry_run)
    if not matched:
        raise JournalError(f'no recorded task matches {" ".join(patterns)!r}: nothing forgotten')
    verb = 'would forget' if dry_run else 'forgot'
    print(f'{verb} {matched + dependents} tasks ({matched} matching, {dependents} dependents'
          f'{": " + ", ".join(names) if names else ""}); they run again on resume', file=out)
    return EXIT_OK


def cmd_check(path: str, out) -> int:
    """``check``: is the journal ours, intact and private?  Exit status 1 if not."""
    try:
        check_ownership(os.path.abspath(path)) if os.path.exists(path) else None
    except JournalError as exc:
        print(f'{PROG}: problem: {exc}', file=out)
        return EXIT_PROBLEM
    db = open_journal(path, ownership=False)
    try:
        problems = [line for (line,) in db.execute('PRAGMA integrity_check') if line != 'ok']
        (count,) = db.execute('SELECT COUNT(*) FROM tasks').fetchone()
        (codes,) = db.execute('SELECT COUNT(*) FROM codes').fetchone()
        known = {key for (key,) in db.execute('SELECT key FROM tasks')}
        missing = sum(1 for (deps,) in db.execute('SELECT deps FROM tasks')
                      for dep in json.loads(deps) if dep not in known)
    finally:
        db.close()
    if problems:
        print(f'{PROG}: problem: {path} is damaged: {first_problem(problems[0])}', file=out)
        return EXIT_PROBLEM
    size = sum(os.path.getsize(p) for p in (path, path + '-wal') if os.path.exists(p))
    print(f'{path}: ok, format {FORMAT}, {count} tasks, {codes} code digests, {_size(size)}'
          + (f'; {missing} dependencies are not recorded (their results could not be '
             f'pickled, or were forgotten): their dependents run again' if missing else ''),
          file=out)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``radical-asyncflow-journal``."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    p = sub.add_parser('list', help='recorded tasks with times and sizes')
    p.add_argument('journal')
    p.add_argument('patterns', nargs='*', metavar='PATTERN')
    p = sub.add_parser('show', help='one task: the parts of its identity, its result')
    p.add_argument('journal')
    p.add_argument('task', metavar='TASK', help='a key prefix, a name or a glob')
    p = sub.add_parser('forget', help='forget tasks and their dependents: they run again')
    p.add_argument('journal')
    p.add_argument('patterns', nargs='+', metavar='PATTERN')
    p.add_argument('-n', '--dry-run', action='store_true', help='say what, forget nothing')
    p = sub.add_parser('check', help='whether it is a journal, intact and private')
    p.add_argument('journal')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``radical-asyncflow-journal``; returns the exit status."""
    args = build_parser().parse_args(argv)
    out = sys.stdout
    try:
        if args.command == 'check':
            return cmd_check(args.journal, out)
        db = open_journal(args.journal, write=args.command == 'forget' and not args.dry_run)
        try:
            if args.command == 'list':
                return cmd_list(db, args.patterns, out)
            if args.command == 'show':
                return cmd_show(db, args.task, out)
            return cmd_forget(db, args.patterns, args.dry_run, out)
        finally:
            db.close()
    except JournalError as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return EXIT_ERROR
    except sqlite3.OperationalError as exc:     # e.g. locked by a running driver
        print(f'{PROG}: error: {args.journal}: {exc}', file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:                     # `| head`: the reader has enough
        sys.stderr.close()
        return EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
