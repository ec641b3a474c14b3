"""Resuming a campaign after its code changed: what re-runs, what is replayed, and why.

A driver is run with ``radical-asyncflow-run --resume`` and edited between
runs as a user would: a bug fixed in a function task, a comment and a
docstring added, a call inserted, a command changed.  Each task appends a
line to ``ran.log`` when it runs, so the test counts real executions.
"""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from helpers import enter_tmp_dir

DRIVER = '''
import asyncio
from radical.asyncflow import WorkflowEngine

LOG = {log!r}


def ran(what):
    with open(LOG, 'a') as handle:
        handle.write(what + '\\n')


async def main():
    engine = await WorkflowEngine.create()

    @engine.function_task
    async def simulate(seed):
        ran(f'simulate {{seed}}')
        return seed + 1

    @engine.function_task
    async def analyze(x):{doc}
        ran(f'analyze {{x}}')
        return x * {factor}{comment}

    @engine.executable_task
    async def report(value):
        return f'echo {version} {{value}}; echo report >> {log}'

    seeds = {seeds}
    results = []
    for seed in seeds:
        results.append(report(analyze(simulate(seed))))
    print('RESULTS', [r.strip() for r in await asyncio.gather(*results)])
    await engine.shutdown()

asyncio.run(main())
'''


def write(tmp_path, factor=2, doc='', comment='', seeds=(1, 2, 3, 4), version='v1'):
    path = tmp_path / 'driver.py'
    path.write_text(textwrap.dedent(DRIVER).format(
        log=str(tmp_path / 'ran.log'), factor=factor, doc=doc, comment=comment,
        seeds=list(seeds), version=version))
    return path


def run(tmp_path, driver, *options):
    log = tmp_path / 'ran.log'
    if log.exists():
        log.unlink()
    env = dict(os.environ, RADICAL_ASYNCFLOW_PROFILE='False', RADICAL_ASYNCFLOW_PROGRESS='0')
    env.pop('RADICAL_ASYNCFLOW_JOURNAL', None)
    proc = subprocess.run([sys.executable, '-m', 'radical.asyncflow.cli', '--backend',
                           'concurrent', '--resume', str(tmp_path / 'campaign.db'), *options,
                           str(driver)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    executed = log.read_text().splitlines() if log.exists() else []
    results = next(line for line in proc.stdout.splitlines() if line.startswith('RESULTS'))
    journal_line = [line for line in proc.stderr.splitlines() if 'journal:' in line]
    return executed, results, journal_line


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    enter_tmp_dir(tmp_path, monkeypatch, 'RADICAL_ASYNCFLOW_JOURNAL')


def test_three_resumes_of_one_campaign_rerun_what_changed_and_say_why(tmp_path):
    """The campaign of the issue: a code fix, a comment-only change, an inserted
    call, then a changed command; each resume re-runs what changed and says why."""
    executed, results, line = run(tmp_path, write(tmp_path, factor=2))
    assert len(executed) == 12 and "'v1 4'" in results
    assert line == ['radical-asyncflow-run: journal: 0 replayed, 12 ran (12 new task)'], line

    # 1. a code fix in analyze: analyze and its dependents run, simulate is replayed
    executed, results, line = run(tmp_path, write(tmp_path, factor=3))
    assert sorted(executed) == sorted([f'analyze {s + 1}' for s in (1, 2, 3, 4)] +
                                      ['report'] * 4)
    assert "'v1 6'" in results
    assert line == ["radical-asyncflow-run: journal: 4 replayed, 8 ran (4 code of 'analyze' "
                    "changed, 4 dependency 'analyze' re-ran)"], line
    summaries = sorted(tmp_path.glob('asyncflow.*/asyncflow_summary.json'))
    assert json.loads(summaries[-1].read_text())['journal'] == {
        'replayed': 4, 'ran': 8, 'causes': {"code of 'analyze' changed": 4,
                                            "dependency 'analyze' re-ran": 4}}

    # 2. a comment and a docstring: nothing runs
    executed, results, line = run(tmp_path, write(tmp_path, factor=3,
                                                  doc='\n        """Triples."""',
                                                  comment='  # the factor'))
    assert executed == [] and "'v1 6'" in results
    assert line == ['radical-asyncflow-run: journal: 12 replayed, 0 ran'], line

    # 3. a call inserted before the others: only its own chain runs
    executed, _, line = run(tmp_path, write(tmp_path, factor=3, seeds=(1, 9, 2, 3, 4)))
    assert sorted(executed) == ['analyze 10', 'report', 'simulate 9']
    assert '12 replayed, 3 ran' in line[0], line

    # 4. the executable's command changed: only the executables run
    executed, results, line = run(tmp_path, write(tmp_path, factor=3, seeds=(1, 9, 2, 3, 4),
                                                  version='v2'))
    assert executed == ['report'] * 5 and "'v2 6'" in results
    assert '10 replayed, 5 ran (5 command changed)' in line[0], line


def test_a_format_1_journal_runs_again_and_says_so_in_one_line(tmp_path):
    db = sqlite3.connect(tmp_path / 'campaign.db')
    db.execute('CREATE TABLE tasks (identity TEXT PRIMARY KEY, name TEXT NOT NULL, '
               'kind TEXT NOT NULL, payload BLOB NOT NULL, output_files TEXT NOT NULL, '
               'finished REAL NOT NULL)')
    db.execute("INSERT INTO tasks VALUES ('ab', 'analyze', 'value', x'80', '[]', 0)")
    db.execute('PRAGMA application_id=1095125553')
    db.execute('PRAGMA user_version=1')
    db.commit()
    db.close()
    os.chmod(tmp_path / 'campaign.db', 0o600)
    env = dict(os.environ, RADICAL_ASYNCFLOW_PROFILE='False')
    proc = subprocess.run([sys.executable, '-m', 'radical.asyncflow.cli', '--backend',
                           'concurrent', '--resume', str(tmp_path / 'campaign.db'),
                           str(write(tmp_path))], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    notice = [line for line in proc.stderr.splitlines() if 'format 1' in line]
    assert len(notice) == 1 and 'its 1 tasks run again' in notice[0], proc.stderr
    assert len((tmp_path / 'ran.log').read_text().splitlines()) == 12


def test_rerun_forgets_a_function_and_its_dependents(tmp_path):
    driver = write(tmp_path)
    run(tmp_path, driver)
    executed, _, line = run(tmp_path, driver, '--rerun', 'analyze')
    assert sorted(executed) == sorted([f'analyze {s + 1}' for s in (1, 2, 3, 4)] +
                                      ['report'] * 4)
    assert '4 replayed, 8 ran (8 forgotten on purpose' in line[0], line
    executed, _, _ = run(tmp_path, driver)          # the flag is not needed again
    assert executed == []
