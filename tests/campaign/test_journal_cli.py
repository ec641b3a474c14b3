"""radical-asyncflow-journal: list, show, forget, check, and its one-line errors."""

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import enter_tmp_dir
from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine
from radical.asyncflow.cli.journal import main

WAIT = 60


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    enter_tmp_dir(tmp_path, monkeypatch, 'RADICAL_ASYNCFLOW_JOURNAL')


async def campaign(journal):
    """simulate(i) -> analyze -> summarize(all analyses), and an unrelated lonely()."""
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(2))
    engine = await WorkflowEngine.create(backend=backend, journal=str(journal), progress=False)

    @engine.function_task
    async def simulate(i):
        return i + 1

    @engine.function_task
    async def analyze(x):
        return x * 2

    @engine.function_task
    async def summarize(*values):
        return sum(values)

    @engine.function_task
    async def lonely():
        return 'alone'

    try:
        analyses = [analyze(simulate(i)) for i in range(3)]
        await asyncio.wait_for(asyncio.gather(summarize(*analyses), lonely()), WAIT)
    finally:
        await engine.shutdown()


@pytest.fixture
def journal(tmp_path):
    path = tmp_path / 'campaign.db'
    asyncio.run(campaign(path))
    return path


def names(db_path):
    db = sqlite3.connect(db_path)
    try:
        return sorted(name for (name,) in db.execute('SELECT name FROM tasks'))
    finally:
        db.close()


def test_list_shows_every_task_with_time_and_size(journal, capsys):
    assert main(['list', str(journal)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith('8 tasks, results ')
    assert sorted(line.split()[-1] for line in out[1:-1]) == \
        sorted(['analyze'] * 3 + ['lonely', 'summarize'] + ['simulate'] * 3)
    assert main(['list', str(journal), 'sim*']) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith('3 tasks')


def test_show_gives_the_parts_of_a_tasks_identity(journal, capsys):
    assert main(['show', str(journal), 'summarize']) == 0
    out = capsys.readouterr().out
    assert 'summarize' in out and 'dependencies: analyze' in out and "value" in out
    assert 'result:' in out and ': 12' in out        # (1 + 2 + 3) * 2


def test_forget_takes_the_dependents_along(journal, capsys):
    before = names(journal)
    assert main(['forget', str(journal), 'analyze', '--dry-run']) == 0
    assert 'would forget 4 tasks (3 matching, 1 dependents: analyze, summarize)' in \
        capsys.readouterr().out
    assert names(journal) == before
    assert main(['forget', str(journal), 'analyze']) == 0
    assert names(journal) == ['lonely', 'simulate', 'simulate', 'simulate']


def test_check_says_ok_or_names_the_problem(journal, capsys):
    assert main(['check', str(journal)]) == 0
    assert ': ok, format 2, 8 tasks' in capsys.readouterr().out
    os.chmod(journal, 0o660)
    assert main(['check', str(journal)]) == 1
    assert 'writable by its group' in capsys.readouterr().out


def damage(path):
    db = sqlite3.connect(path)
    db.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    db.close()
    with open(path, 'r+b') as handle:       # scribble over the table's pages
        handle.seek(4096 + 100)
        handle.write(os.urandom(3000))


@pytest.mark.parametrize('setup, expected', [
    ('missing', 'no such journal'),
    ('foreign', 'not a radical.asyncflow journal'),
    ('other-sqlite', 'another program'),
    ('group-writable', 'writable by its group'),
    ('damaged', 'damaged'),
])
@pytest.mark.parametrize('command', ['list', 'show', 'forget'])
def test_errors_are_one_line(journal, tmp_path, capsys, setup, expected, command):
    path = journal
    if setup == 'missing':
        path = tmp_path / 'nope.db'
    elif setup == 'foreign':
        path = tmp_path / 'notes.txt'
        path.write_text('my notes\n' * 100)
        os.chmod(path, 0o600)
    elif setup == 'other-sqlite':
        path = tmp_path / 'other.db'
        db = sqlite3.connect(path)
        db.execute('CREATE TABLE tasks (x)')
        db.commit()
        db.close()
        os.chmod(path, 0o600)
    elif setup == 'group-writable':
        os.chmod(path, 0o620)
    elif setup == 'damaged':
        damage(path)
    argv = [command, str(path)] + ([] if command == 'list' else ['analyze'])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('radical-asyncflow-journal: error: '), err
    assert expected in err[0], err[0]
