"""Fault suite: real failures, real processes, no mocks.

Every scenario checks that nothing is lost (each future ends done, failed
with a cause that names the task, or cancelled) and nothing is repeated
(executions are counted with side-effect files in ``tmp_path``, written as
a task's last statement).
"""

import asyncio
import collections
import ctypes
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

import fault_driver
from helpers import count, enter_tmp_dir, journal_rows, mark, wait_gone
from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine
from radical.asyncflow.errors import DependencyFailure
from radical.asyncflow.campaign.journal import Journal, JournalEntry, JournalError

WAIT = 20
DRIVER = Path(fault_driver.__file__)
DAG_SIZE = 2000
MIDDLE = DAG_SIZE // 2


# ------------------------------------ module-level task functions (picklable)

async def steady(marks, i):
    time.sleep(0.2)
    mark(os.path.join(marks, f'steady.{i}'))       # last: the task finished
    return i


async def exits_hard(marks):
    mark(os.path.join(marks, 'crash.start'), str(os.getpid()))
    time.sleep(0.1)                                 # the others are in flight now
    os._exit(3)


async def segfaults(marks):
    mark(os.path.join(marks, 'crash.start'), str(os.getpid()))
    time.sleep(0.1)
    ctypes.string_at(0)


async def hangs_in_worker(marks):
    mark(os.path.join(marks, 'hang.start'), str(os.getpid()))
    time.sleep(8)
    mark(os.path.join(marks, 'hang.done'))


# ------------------------------------------------------------------ helpers

def outcome(future):
    """'done', 'cancelled' or 'failed: <Type>: <message>'; fails the test if pending."""
    assert future.done(), f'lost: {future!r} never finished'
    if future.cancelled():
        return 'cancelled'
    if future.exception() is not None:
        error = future.exception()
        return f'failed: {type(error).__name__}: {error}'
    return 'done'


async def settle(futures, timeout=WAIT):
    """Wait until every future has finished, whatever its outcome."""
    await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout)
    return [outcome(f) for f in futures]


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    enter_tmp_dir(tmp_path, monkeypatch, 'RADICAL_ASYNCFLOW_JOURNAL')


async def make_engine(pool):
    return await WorkflowEngine.create(backend=await ConcurrentExecutionBackend(pool))


# ---------------------------------------------------------- a task raises

async def test_raising_task_fails_itself_and_its_dependents_only(tmp_path):
    eng = await make_engine(ThreadPoolExecutor(2))
    try:
        @eng.function_task
        async def work(i, *deps):
            if i == 3:
                raise ArithmeticError('task 3 cannot count')
            mark(tmp_path / f'work.{i}')
            return i

        first = [work(i) for i in range(6)]
        below_failure = work(10, first[3])
        two_below = work(11, below_failure)
        beside = work(12, first[0], first[1])
        futures = first + [below_failure, two_below, beside]
        outcomes = await settle(futures)
    finally:
        await eng.shutdown()

    assert outcomes[3] == 'failed: ArithmeticError: task 3 cannot count'
    for dependent in (below_failure, two_below):
        error = dependent.exception()
        assert isinstance(error, DependencyFailure) and "'work'" in str(error)
        assert isinstance(error.root_cause, ArithmeticError)
    assert [o for i, o in enumerate(outcomes) if i not in (3, 6, 7)] == ['done'] * 6
    ran = {i: count(tmp_path / f'work.{i}') for i in (*range(6), 10, 11, 12)}
    assert ran == {0: 1, 1: 1, 2: 1, 3: 0, 4: 1, 5: 1, 10: 0, 11: 0, 12: 1}


# ------------------------------------------- a worker process dies mid-task

@pytest.mark.parametrize('crasher', [exits_hard, segfaults], ids=['os._exit', 'segfault'])
async def test_dead_worker_fails_its_task_and_the_others_continue(tmp_path, crasher):
    marks = str(tmp_path)
    eng = await make_engine(ProcessPoolExecutor(2))
    try:
        steady_task = eng.function_task(steady)
        crash_task = eng.function_task(crasher)
        before = [steady_task(marks, i) for i in range(3)]
        crash = crash_task(marks)
        during = [steady_task(marks, i) for i in range(3, 8)]
        outcomes = await settle([*before, crash, *during], timeout=30)
        after = [steady_task(marks, i) for i in range(8, 11)]
        outcomes_after = await settle(after)
    finally:
        await eng.shutdown()

    error = crash.exception()
    assert isinstance(error, RuntimeError), outcomes
    assert crasher.__name__ in str(error) and 'died' in str(error)
    innocent = [o for o, f in zip(outcomes, [*before, crash, *during]) if f is not crash]
    assert innocent == ['done'] * 8, f'tasks that shared the pool with the crash: {innocent}'
    assert outcomes_after == ['done'] * 3, 'the pool was not replaced'
    assert count(tmp_path / 'crash.start') == 1, 'a task that kills its worker was run again'
    ran = {i: count(tmp_path / f'steady.{i}') for i in range(11)}
    assert ran == {i: 1 for i in range(11)}


# --------------------------------------------- a task hangs past its timeout

async def test_hung_command_is_killed_at_its_timeout_and_the_others_finish(tmp_path):
    eng = await make_engine(ThreadPoolExecutor(4))
    try:
        @eng.executable_task(timeout=1)
        async def hangs():
            return f'echo $$ > {tmp_path}/hang.pid; sleep 30; echo x >> {tmp_path}/hang.done'

        @eng.executable_task(timeout=5)
        async def quick(i):
            return f'sleep 0.3; echo x >> {tmp_path}/quick.{i}; echo {i}'

        hung = hangs()
        others = [quick(i) for i in range(4)]
        start = time.monotonic()
        outcomes = await settle([hung, *others])
        elapsed = time.monotonic() - start
        assert await wait_gone(int((tmp_path / 'hang.pid').read_text()), 2), \
            'the command still runs after its timeout'
    finally:
        await eng.shutdown()

    assert outcomes[0].startswith("failed: TimeoutError: task 'hangs'"), outcomes[0]
    assert outcomes[1:] == ['done'] * 4
    assert elapsed < 3
    assert count(tmp_path / 'hang.done') == 0
    assert [count(tmp_path / f'quick.{i}') for i in range(4)] == [1] * 4


async def test_function_hung_past_its_timeout_frees_its_worker_process(tmp_path):
    """A one-worker process pool: after the hung task times out, the next runs at once."""
    marks = str(tmp_path)
    eng = await make_engine(ProcessPoolExecutor(1))
    try:
        hang = eng.function_task(timeout=1)(hangs_in_worker)
        steady_task = eng.function_task(steady)
        hung = hang(marks)
        with pytest.raises(TimeoutError, match='hangs_in_worker'):
            await asyncio.wait_for(hung, 5)
        worker = int((tmp_path / 'hang.start').read_text())
        next_one = steady_task(marks, 0)
        outcomes = await settle([next_one], timeout=3)
        assert outcomes == ['done'], 'the next task waited for the hung one'
        assert await wait_gone(worker), 'the worker running the timed-out task still runs it'
    finally:
        await eng.shutdown()
    assert count(tmp_path / 'hang.done') == 0


# ---------------------------------------- non-zero exit with a huge stderr

class RssSampler:
    """Peak resident set size of this process while active, sampled every 2 ms."""

    def __init__(self):
        self.process = psutil.Process()
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth(self):
        return self.peak - self.baseline


async def test_huge_stderr_keeps_memory_bounded_and_the_message_short(tmp_path):
    size = 50 * 1024 * 1024
    eng = await make_engine(ThreadPoolExecutor(2))
    try:
        @eng.executable_task
        async def noisy():
            return (f"head -c {size} /dev/zero | tr '\\0' x >&2; echo THE-END >&2; "
                    f"echo x >> {tmp_path}/noisy.done; exit 3")

        with RssSampler() as rss:
            outcomes = await settle([noisy()], timeout=60)
    finally:
        await eng.shutdown()

    assert outcomes[0].startswith('failed: TaskExecutionError:')
    assert rss.growth < size / 5, f'the driver grew by {rss.growth / 2**20:.1f} MiB'
    message = outcomes[0]
    assert "'noisy'" in message and 'exited with code 3' in message
    assert 'truncated' in message and '50.0 MiB' in message
    assert message.rstrip().endswith('THE-END')
    assert len(message) < 20000
    assert count(tmp_path / 'noisy.done') == 1


# ----------------------------------- the driver dies and the campaign resumes

def driver_env(**extra):
    env = dict(os.environ, RADICAL_ASYNCFLOW_PROFILE='False', PYTHONUNBUFFERED='1', **extra)
    env.pop('RADICAL_ASYNCFLOW_JOURNAL', None)
    env.pop('RADICAL_ASYNCFLOW_BACKEND', None)
    return env


def wait_for_line(path, prefix, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and any(line.startswith(prefix)
                                 for line in path.read_text().splitlines()):
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f'driver ended ({proc.returncode}) before {prefix!r}:\n{out}\n{err}')
        time.sleep(0.01)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f'no {prefix!r} in {path} after {timeout} s:\n{out}\n{err}')


def execution_counts(work):
    """(finished executions per node, starts of the middle node)."""
    done = collections.Counter()
    starts = []
    for line in (work / 'events.log').read_text().splitlines():
        kind, node, pid = line.split()
        if kind == 'done':
            done[int(node)] += 1
        elif kind == 'start' and int(node) == MIDDLE:
            starts.append(pid)
    return done, starts


def outcomes_of(work):
    found = {}
    for path in work.glob('outcomes.*.json'):
        found[path.name] = json.loads(path.read_text())
        path.unlink()
    return list(found.values())


def start_driver(work, command, block):
    return subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=driver_env(FAULT_BLOCK='1' if block else '0'))


def finish(proc, timeout=60):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f'driver still running after {timeout} s:\n{out}\n{err}')
    return proc.returncode, out, err


def assert_resumed_exactly_once(work):
    done, starts = execution_counts(work)
    repeated = {i: n for i, n in done.items() if n != 1}
    missing = [i for i in range(DAG_SIZE) if i not in done]
    assert (missing[:10], repeated) == ([], {}), \
        f'{len(missing)} tasks never finished, {len(repeated)} finished more than once'
    # The middle task started in both runs (the first was stopped while it
    # blocked) and finished only in the second.
    assert len(starts) == 2 and starts[0] != starts[1], starts
    results = json.loads((work / 'results.json').read_text())
    assert results == fault_driver.expected_results(DAG_SIZE)


def test_sigkill_mid_dag_then_resume_runs_every_task_once(tmp_path):
    journal = tmp_path / 'campaign.db'
    command = [sys.executable, str(DRIVER), str(tmp_path), str(DAG_SIZE), str(journal)]
    proc = start_driver(tmp_path, command, block=True)
    try:
        wait_for_line(tmp_path / 'events.log', f'start {MIDDLE} ', proc)
        proc.kill()
        assert finish(proc)[0] == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done, _ = execution_counts(tmp_path)
    assert sorted(done) == list(range(MIDDLE)) and set(done.values()) == {1}
    assert journal_rows(journal) == MIDDLE, 'finished tasks were not journaled'

    status, out, err = finish(start_driver(tmp_path, command, block=False))
    assert status == 0, f'{out}\n{err}'
    assert 'COMPLETED' in out
    assert outcomes_of(tmp_path) == [
        {'done': DAG_SIZE, 'failed': 0, 'cancelled': 0, 'pending': 0}]
    assert_resumed_exactly_once(tmp_path)
    assert journal_rows(journal) == DAG_SIZE


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGUSR1], ids=['SIGTERM', 'SIGUSR1'])
def test_signal_mid_dag_then_resume_with_the_cli(tmp_path, sig):
    journal = tmp_path / 'campaign.db'
    command = [sys.executable, '-m', 'radical.asyncflow.cli', '--backend', 'concurrent',
               '--resume', str(journal), str(DRIVER), str(tmp_path), str(DAG_SIZE)]
    proc = start_driver(tmp_path, command, block=True)
    try:
        wait_for_line(tmp_path / 'events.log', f'start {MIDDLE} ', proc)
        proc.send_signal(sig)
        status, out, err = finish(proc, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 128 + sig, f'{out}\n{err}'
    assert 'Traceback' not in err, err
    assert outcomes_of(tmp_path) == [{'done': MIDDLE, 'failed': 0,
                                      'cancelled': DAG_SIZE - MIDDLE, 'pending': 0}]

    status, out, err = finish(start_driver(tmp_path, command, block=False))
    assert status == 0, f'{out}\n{err}'
    assert outcomes_of(tmp_path) == [
        {'done': DAG_SIZE, 'failed': 0, 'cancelled': 0, 'pending': 0}]
    assert_resumed_exactly_once(tmp_path)


# -------------------------------------------- journals that are not ours

def random_bytes(path):
    path.write_bytes(random.Random(1).randbytes(64 * 1024))


def sqlite_header_then_garbage(path):
    path.write_bytes(b'SQLite format 3\x00' + random.Random(2).randbytes(64 * 1024))


def foreign_sqlite(path):
    db = sqlite3.connect(path)
    db.execute('CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)')
    db.executemany('INSERT INTO notes (text) VALUES (?)', [(f'note {i}',) for i in range(100)])
    db.commit()
    db.close()


def foreign_sqlite_with_a_tasks_table(path):
    db = sqlite3.connect(path)
    db.execute('PRAGMA journal_mode=WAL')
    db.execute('CREATE TABLE tasks (identity TEXT PRIMARY KEY, payload BLOB)')
    db.execute("INSERT INTO tasks VALUES ('x', x'00')")
    db.commit()
    db.close()


def damaged_journal(path):
    journal = Journal(str(path))
    for i in range(3000):
        journal.record(JournalEntry(f'{i:064x}', 'task', 'value', os.urandom(200)))
    journal.close()
    db = sqlite3.connect(path)
    db.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    db.execute('PRAGMA journal_mode=DELETE')
    db.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 5 * 4096
    data[2 * 4096:4 * 4096] = random.Random(3).randbytes(2 * 4096)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize('make', [random_bytes, sqlite_header_then_garbage, foreign_sqlite,
                                  foreign_sqlite_with_a_tasks_table, damaged_journal])
async def test_unusable_journal_is_refused_and_left_untouched(tmp_path, make):
    path = tmp_path / 'journal.db'
    make(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    backend = ConcurrentExecutionBackend(ThreadPoolExecutor(1))
    with pytest.raises(JournalError, match='journal') as info:
        await WorkflowEngine.create(backend=backend, journal=str(path))
    assert str(path) in str(info.value) and 'untouched' in str(info.value)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before
    await backend.shutdown()
