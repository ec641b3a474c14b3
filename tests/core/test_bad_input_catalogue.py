"""The catalogue of wrong uses: each gives a documented error naming the culprit and the fix.

Every case has a slug; ``docs/errors.md`` lists each slug with its error
type and message (checked by :func:`test_every_case_is_documented`).
"""

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from radical.asyncflow import ConcurrentExecutionBackend, InputFile, WorkflowEngine
from radical.asyncflow.campaign.journal import JournalError

WAIT = 10
DOCS = Path(__file__).resolve().parents[2] / 'docs' / 'errors.md'


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('RADICAL_ASYNCFLOW_PROFILE', 'False')
    for name in ('RADICAL_ASYNCFLOW_BACKEND', 'RADICAL_ASYNCFLOW_RESOURCES',
                 'RADICAL_ASYNCFLOW_JOURNAL'):
        monkeypatch.delenv(name, raising=False)


@contextlib.asynccontextmanager
async def dry_engine():
    engine = await WorkflowEngine.create(dry_run=True)
    try:
        yield engine
    finally:
        await engine.shutdown()


@contextlib.asynccontextmanager
async def pool_engine(pool):
    engine = await WorkflowEngine.create(backend=await ConcurrentExecutionBackend(pool))
    try:
        yield engine
    finally:
        await engine.shutdown()


CASES = []


def case(slug, error, name=None, fix=None):
    """Register ``scenario(tmp_path, monkeypatch)``: it must raise ``error``.

    ``name`` must appear in the message (the task or the setting at fault),
    ``fix`` is a regular expression for the advice the message gives.
    """
    def register(scenario):
        CASES.append(pytest.param(scenario, error, name, fix, id=slug))
        return scenario
    return register


# ------------------------------------------------------------- decorators

@case('sync-function', TypeError, 'plain_sync_function', r"async def plain_sync_function")
async def _(tmp_path, monkeypatch):
    def plain_sync_function():
        return 'echo x'

    async with dry_engine() as engine:
        engine.function_task(plain_sync_function)


@case('lambda', TypeError, '<lambda>', 'async def')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        engine.executable_task(lambda: 'echo x')


@case('not-callable', TypeError, 'str', 'async function')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        engine.function_task('echo x')


@case('service-not-bool', TypeError, 'watcher', 'True or False')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.function_task(service='yes')
        async def watcher():
            return None


@case('task-description-default-not-dict', TypeError, 'sized', 'must be a dict')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.function_task
        async def sized(task_description='cores=2'):
            return None


@case('negative-timeout', ValueError, 'impatient', 'more than 0')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.function_task(timeout=-1)
        async def impatient():
            return None


@case('timeout-not-a-number', TypeError, 'impatient', 'number of seconds')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.executable_task(timeout='5m')
        async def impatient():
            return 'true'


@case('retries-not-an-int', TypeError, 'stubborn', 'whole number')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.function_task(retries=1.5)
        async def stubborn():
            return None


@case('negative-retries', ValueError, 'stubborn', '0 or more')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.function_task(retries=-1)
        async def stubborn():
            return None


@case('negative-backoff', ValueError, 'stubborn', '>= 0')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.function_task(retries=2, retry_backoff=-1)
        async def stubborn():
            return None


# ------------------------------------------------------------------ calls

@case('task-description-call-not-dict', TypeError, 'sized', 'must be a dict')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.executable_task
        async def sized():
            return 'true'

        sized(task_description=['cores', 2])


@case('bad-policy-override', ValueError, 'stubborn', '0 or more')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.function_task
        async def stubborn():
            return None

        stubborn(task_description={'retries': -3})


@case('executable-returns-none', ValueError, 'forgot_return', 'shell command as a str')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.executable_task
        async def forgot_return():
            'echo x'            # noqa: B018 - the mistake under test

        await asyncio.wait_for(forgot_return(), WAIT)


@case('executable-returns-bytes', ValueError, 'bytes_command', 'shell command as a str')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.executable_task
        async def bytes_command():
            return b'echo x'

        await asyncio.wait_for(bytes_command(), WAIT)


@case('missing-input-file', FileNotFoundError, 'reader', 'OutputFile of one of its dependencies')
async def _(tmp_path, monkeypatch):
    async with dry_engine() as engine:
        @engine.function_task
        async def reader(infile):
            return None

        await asyncio.wait_for(reader(InputFile(str(tmp_path / 'nobody-makes-this.dat'))), WAIT)


@case('call-after-shutdown', RuntimeError, 'late', r'(?i)before .*shutdown|new engine')
async def _(tmp_path, monkeypatch):
    engine = await WorkflowEngine.create(dry_run=True)

    @engine.function_task
    async def late():
        return None

    await engine.shutdown()
    late()


@case('await-after-shutdown', asyncio.CancelledError)
async def _(tmp_path, monkeypatch):
    """A future still pending at shutdown is cancelled: awaiting it raises CancelledError."""
    engine = await WorkflowEngine.create(dry_run=True)

    @engine.function_task
    async def slow(value):
        return value

    # A future that cannot start before shutdown: its dependency never finishes.
    @engine.block
    async def never_done():
        await asyncio.sleep(3600)

    waiting = slow(never_done())
    await asyncio.sleep(0.05)
    await engine.shutdown()
    assert waiting.cancelled()
    await waiting


@case('unpicklable-closure-in-process-pool', TypeError, 'local_helper', 'worker process')
async def _(tmp_path, monkeypatch):
    lock = threading.Lock()         # closures travel by value: this one cannot
    async with pool_engine(ProcessPoolExecutor(1)) as engine:
        @engine.function_task
        async def local_helper():
            with lock:
                return 1

        await asyncio.wait_for(local_helper(), WAIT)


# --------------------------------------------------- engine and backends

class InlineExecutor(Executor):
    """An Executor, but not one ConcurrentExecutionBackend can use."""


@case('wrong-executor', TypeError, 'InlineExecutor', 'ThreadPoolExecutor or ProcessPoolExecutor')
async def _(tmp_path, monkeypatch):
    ConcurrentExecutionBackend(InlineExecutor())


@case('wrong-backend-type', TypeError, 'ThreadPoolExecutor', 'ConcurrentExecutionBackend')
async def _(tmp_path, monkeypatch):
    pool = ThreadPoolExecutor(1)
    try:
        await WorkflowEngine.create(backend=pool)
    finally:
        pool.shutdown()


@case('create-outside-loop', RuntimeError, 'WorkflowEngine', r'asyncio\.run')
async def _(tmp_path, monkeypatch):
    errors = []

    def outside():
        coro = WorkflowEngine.create(dry_run=True)
        try:
            coro.send(None)
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            coro.close()

    await asyncio.to_thread(outside)     # a thread has no running loop
    raise errors[0]


@case('dry-run-with-backend', RuntimeError, 'ConcurrentExecutionBackend', 'leave backend unset')
async def _(tmp_path, monkeypatch):
    backend = ConcurrentExecutionBackend(ThreadPoolExecutor(1))
    try:
        await WorkflowEngine.create(backend=backend, dry_run=True)
    finally:
        await backend.shutdown()


@case('resources-not-json', ValueError, 'RADICAL_ASYNCFLOW_RESOURCES', 'not valid JSON')
async def _(tmp_path, monkeypatch):
    monkeypatch.setenv('RADICAL_ASYNCFLOW_BACKEND', 'concurrent')
    monkeypatch.setenv('RADICAL_ASYNCFLOW_RESOURCES', "{max_workers: 4}")
    await WorkflowEngine.create()


@case('resources-not-object', ValueError, 'not list', 'must be a JSON object')
async def _(tmp_path, monkeypatch):
    monkeypatch.setenv('RADICAL_ASYNCFLOW_BACKEND', 'concurrent')
    monkeypatch.setenv('RADICAL_ASYNCFLOW_RESOURCES', '[4]')
    await WorkflowEngine.create()


@case('resources-unknown-key', ValueError, 'max_worker', 'max_workers')
async def _(tmp_path, monkeypatch):
    monkeypatch.setenv('RADICAL_ASYNCFLOW_BACKEND', 'concurrent')
    monkeypatch.setenv('RADICAL_ASYNCFLOW_RESOURCES', '{"max_worker": 4}')     # typo
    engine = await WorkflowEngine.create()
    await engine.shutdown()


@case('unknown-backend', ValueError, 'slurm', 'choose one of concurrent')
async def _(tmp_path, monkeypatch):
    monkeypatch.setenv('RADICAL_ASYNCFLOW_BACKEND', 'slurm')
    await WorkflowEngine.create()


@case('foreign-journal', JournalError, 'notes.db', 'another journal path')
async def _(tmp_path, monkeypatch):
    (tmp_path / 'notes.db').write_text('my notes, not a journal\n' * 10)
    await WorkflowEngine.create(dry_run=True, journal=str(tmp_path / 'notes.db'))


@pytest.mark.parametrize('scenario, error, name, fix', CASES)
async def test_wrong_use(scenario, error, name, fix, tmp_path, monkeypatch):
    with pytest.raises(error) as info:
        await scenario(tmp_path, monkeypatch)
    message = str(info.value)
    if name is not None:
        assert name in message, f'the message does not name {name!r}: {message}'
    if fix is not None:
        assert re.search(fix, message), f'the message gives no fix ({fix!r}): {message}'


# ------------------------------------------------------------------- CLI

CLI_CASES = {
    'cli-missing-driver': (['no_such_driver.py'], 'no_such_driver.py', 'does not exist'),
    'cli-bad-resources': (['--resources', '{max_workers: 2}', 'driver.py'], '--resources',
                          'not valid JSON'),
    'cli-resources-not-object': (['--resources', '[2]', 'driver.py'], '--resources',
                                 'JSON object'),
    'cli-no-engine': (['driver.py'], 'driver.py', r'never created a WorkflowEngine'),
    'cli-unknown-backend': (['--backend', 'slurm', 'driver.py'], '--backend', 'choose from'),
}


@pytest.mark.parametrize('slug', CLI_CASES)
def test_cli_wrong_use_exits_2(tmp_path, slug):
    args, name, fix = CLI_CASES[slug]
    (tmp_path / 'driver.py').write_text('print("a driver that never creates an engine")\n')
    env = dict(os.environ, RADICAL_ASYNCFLOW_PROFILE='False')
    proc = subprocess.run([sys.executable, '-m', 'radical.asyncflow.cli', *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert name in proc.stderr and re.search(fix, proc.stderr), proc.stderr
    assert 'Traceback' not in proc.stderr


# ------------------------------------------------------ cycles via blocks

async def wait_or_fail(future, what, timeout=3):
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout)
    except asyncio.TimeoutError:
        pytest.fail(f'{what}: still waiting after {timeout} s; a dependency cycle must '
                    f'fail with an error, not hang silently', pytrace=False)


async def test_cycle_through_a_block_is_reported_not_a_silent_hang():
    """A block awaits a task that depends on the block's own future."""
    engine = await WorkflowEngine.create(dry_run=True)
    try:
        @engine.function_task
        async def needs_the_block(block_result):
            return block_result

        @engine.block
        async def cyclic_block(holder):
            inner = needs_the_block(holder['me'])       # depends on this block
            return await inner                          # ...which waits for inner

        holder = {}
        holder['me'] = block = cyclic_block(holder)
        with pytest.raises(Exception, match=r'(?i)cycl|deadlock') as info:
            await wait_or_fail(block, 'cyclic_block')
        assert 'cyclic_block' in str(info.value)
    finally:
        await engine.shutdown()


async def test_block_awaiting_its_own_future_is_reported_not_a_silent_hang():
    engine = await WorkflowEngine.create(dry_run=True)
    try:
        @engine.block
        async def self_waiting_block(holder):
            await asyncio.sleep(0)
            return await holder['me']

        holder = {}
        holder['me'] = block = self_waiting_block(holder)
        with pytest.raises(Exception, match=r'(?i)cycl|deadlock|itself') as info:
            await wait_or_fail(block, 'self_waiting_block')
        assert 'self_waiting_block' in str(info.value)
    finally:
        await engine.shutdown()


# ------------------------------------------------------------------- docs

def test_every_case_is_documented():
    text = DOCS.read_text()
    slugs = [param.id for param in CASES] + list(CLI_CASES) + ['cycle-through-block']
    missing = [slug for slug in slugs if f'`{slug}`' not in text]
    assert missing == [], f'not in {DOCS.name}: {missing}'
    for param in CASES:
        error = param.values[1].__name__
        row = next(line for line in text.splitlines() if f'`{param.id}`' in line)
        assert error in row, f'{param.id}: {error} not in its row of {DOCS.name}'
