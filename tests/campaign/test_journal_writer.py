"""The journal off the event loop (campaign/journal_writer.py): durable before visible.

A recorded task's future settles only once its row is committed, so
whatever saw a result (the program, a dependent) finds it in the journal
after the driver is killed at any moment.
"""

import asyncio
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import enter_tmp_dir
from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

WAIT = 60


def driver_env():
    env = dict(os.environ, RADICAL_ASYNCFLOW_PROFILE='False', PYTHONUNBUFFERED='1')
    env.pop('RADICAL_ASYNCFLOW_JOURNAL', None)
    return env


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    enter_tmp_dir(tmp_path, monkeypatch, 'RADICAL_ASYNCFLOW_JOURNAL')


def committed_values(path):
    """The results of the rows another connection sees committed."""
    db = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
    try:
        return {pickle.loads(payload) for (payload,) in
                db.execute("SELECT payload FROM tasks WHERE kind = 'value'")}
    finally:
        db.close()


async def test_a_future_settles_only_after_its_row_is_committed(tmp_path):
    """Failed before the writer: the done-callbacks ran a loop turn before the commit."""
    journal = tmp_path / 'campaign.db'
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(4))
    engine = await WorkflowEngine.create(backend=backend, journal=str(journal),
                                         progress=False)
    missing = []

    @engine.function_task
    async def square(i):
        return i * i

    def seen(future):
        if future.result() not in committed_values(journal):
            missing.append(future.result())

    try:
        futures = [square(i) for i in range(200)]
        for future in futures:
            future.add_done_callback(seen)
        await asyncio.wait_for(asyncio.gather(*futures), WAIT)
    finally:
        await engine.shutdown()
    assert missing == [], f'{len(missing)} results were seen before their row was committed'


async def test_a_dependent_starts_only_after_its_dependencys_row_is_committed(tmp_path):
    journal = tmp_path / 'campaign.db'
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(2))
    engine = await WorkflowEngine.create(backend=backend, journal=str(journal),
                                         progress=False)
    started_with = []

    @engine.function_task
    async def produce(i):
        return 1000 + i

    @engine.function_task
    async def consume(value):
        started_with.append(value in committed_values(journal))
        return value

    try:
        await asyncio.wait_for(asyncio.gather(*[consume(produce(i)) for i in range(50)]), WAIT)
    finally:
        await engine.shutdown()
    assert started_with == [True] * 50


BURST_DRIVER = '''
import asyncio, os, sys
from concurrent.futures import ThreadPoolExecutor
from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

async def main(journal, seen, n):
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(4))
    engine = await WorkflowEngine.create(backend=backend, journal=journal, progress=False)

    @engine.function_task
    async def quick(i):
        return i

    fd = os.open(seen, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def observed(future):               # what the driver saw, outside the process at once
        os.write(fd, b'%d\\n' % future.result())

    futures = [quick(i) for i in range(n)]
    for future in futures:
        future.add_done_callback(observed)
    await asyncio.gather(*futures)
    await engine.shutdown()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
'''


def test_kill_9_during_a_burst_of_commits_loses_no_observed_task(tmp_path):
    journal, seen = tmp_path / 'campaign.db', tmp_path / 'seen.txt'
    driver = tmp_path / 'burst.py'
    driver.write_text(textwrap.dedent(BURST_DRIVER))
    n = 4_000
    proc = subprocess.Popen([sys.executable, str(driver), str(journal), str(seen), str(n)],
                            cwd=tmp_path, env=driver_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT
        # kill in the middle of the burst: hundreds observed, not all
        while time.monotonic() < deadline and proc.poll() is None:
            if seen.exists() and seen.stat().st_size > 4 * 500:
                break
            time.sleep(0.005)
        assert proc.poll() is None, f'the driver ended before the kill:\n{proc.communicate()}'
        proc.send_signal(signal.SIGKILL)
        proc.wait(WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    observed = {int(line) for line in seen.read_text().split()}
    journaled = committed_values(journal)
    assert 0 < len(observed) < n
    lost = observed - journaled
    assert not lost, f'{len(lost)} of {len(observed)} observed results are not in the journal'
