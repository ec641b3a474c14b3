"""Retries, timeouts and the campaign journal on the Concurrent backend.

Executions are counted with side-effect files in ``tmp_path`` (one line per
execution, written with O_APPEND), so the counts hold across worker
processes.
"""

import asyncio
import os
import stat
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from helpers import count, enter_tmp_dir, journal_rows, mark, wait_gone
from radical.asyncflow import ConcurrentExecutionBackend, OutputFile, WorkflowEngine
from radical.asyncflow.errors import DependencyFailure, TaskExecutionError
from radical.asyncflow.campaign.journal import JournalError

WAIT = 15


# ------------------------------------ module-level task functions (picklable)

async def fails_until(log, succeed_on, value):
    """Fails on the first ``succeed_on - 1`` executions, then returns ``value``."""
    mark(log, f'{time.monotonic()}')
    attempt = count(log)
    if attempt < succeed_on:
        raise ValueError(f'flaky failure on execution {attempt}')
    return value


async def hangs_on_first_execution(log, value):
    mark(log)
    if count(log) == 1:
        await asyncio.sleep(30)
    return value


# ------------------------------------------------------------------ helpers

def attempt_times(log):
    with open(log) as handle:
        return [float(line) for line in handle.read().split()]


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    enter_tmp_dir(tmp_path, monkeypatch, 'RADICAL_ASYNCFLOW_JOURNAL')


async def make_engine(kind='thread', workers=2, **kwargs):
    pool = ThreadPoolExecutor(workers) if kind == 'thread' else ProcessPoolExecutor(workers)
    return await WorkflowEngine.create(backend=await ConcurrentExecutionBackend(pool), **kwargs)


@pytest.fixture(params=['thread', 'process'])
async def engine(request):
    eng = await make_engine(request.param)
    yield eng
    await eng.shutdown()


@pytest.fixture
async def thread_engine():
    eng = await make_engine('thread', 4)
    yield eng
    await eng.shutdown()


# ------------------------------------------------------------------ retries

async def test_fails_twice_then_succeeds_with_two_retries(engine, tmp_path):
    flaky = engine.function_task(retries=2, retry_backoff=0)(fails_until)
    log = str(tmp_path / 'flaky.log')
    assert await asyncio.wait_for(flaky(log, 3, 'ok'), WAIT) == 'ok'
    assert count(log) == 3


async def test_exhausted_retries_raise_the_original_exception(engine, tmp_path):
    flaky = engine.function_task(retries=2, retry_backoff=0)(fails_until)
    log = str(tmp_path / 'flaky.log')
    with pytest.raises(ValueError, match='flaky failure on execution 3'):
        await asyncio.wait_for(flaky(log, 10, 'never'), WAIT)
    assert count(log) == 3


async def test_dependents_run_once_after_a_retried_success(thread_engine, tmp_path):
    flaky = thread_engine.function_task(retries=1, retry_backoff=0)(fails_until)

    @thread_engine.function_task
    async def consumer(value):
        mark(tmp_path / 'consumer.log')
        return value * 2

    log = str(tmp_path / 'flaky.log')
    assert await asyncio.wait_for(consumer(flaky(log, 2, 21)), WAIT) == 42
    assert (count(log), count(tmp_path / 'consumer.log')) == (2, 1)


async def test_dependents_of_an_exhausted_task_fail_with_its_exception(thread_engine, tmp_path):
    flaky = thread_engine.function_task(retries=1, retry_backoff=0)(fails_until)

    @thread_engine.function_task
    async def consumer(value):
        mark(tmp_path / 'consumer.log')

    with pytest.raises(DependencyFailure) as info:
        await asyncio.wait_for(consumer(flaky(str(tmp_path / 'f.log'), 5, 0)), WAIT)
    assert isinstance(info.value.root_cause, ValueError)
    assert count(tmp_path / 'consumer.log') == 0


async def test_backoff_doubles_between_attempts(thread_engine, tmp_path):
    flaky = thread_engine.function_task(retries=2, retry_backoff=0.3)(fails_until)
    log = str(tmp_path / 'flaky.log')
    assert await asyncio.wait_for(flaky(log, 3, 'ok'), WAIT) == 'ok'
    first, second, third = attempt_times(log)
    assert 0.3 <= second - first < 1.0, (second - first)
    assert 0.6 <= third - second < 1.3, (third - second)


async def test_call_time_task_description_overrides_retries(thread_engine, tmp_path):
    flaky = thread_engine.function_task(retries=3, retry_backoff=0)(fails_until)
    log = str(tmp_path / 'no_retry.log')
    with pytest.raises(ValueError, match='execution 1'):
        await asyncio.wait_for(flaky(log, 2, 'x', task_description={'retries': 0}), WAIT)
    assert count(log) == 1

    plain = thread_engine.function_task(fails_until)
    log = str(tmp_path / 'one_retry.log')
    result = plain(log, 2, 'y', task_description={'retries': 1, 'retry_backoff': 0})
    assert await asyncio.wait_for(result, WAIT) == 'y'
    assert count(log) == 2


async def test_policy_keys_are_not_passed_to_the_backend(thread_engine, tmp_path):
    flaky = thread_engine.function_task(fails_until)
    future = flaky(str(tmp_path / 'f.log'), 1, 1,
                   task_description={'retries': 1, 'timeout': 5, 'retry_backoff': 0,
                                     'cores': 1})
    await asyncio.wait_for(future, WAIT)
    (uid,) = thread_engine.components
    backend_keys = thread_engine.components[uid]['description']['task_backend_specific_kwargs']
    assert backend_keys == {'cores': 1}


async def test_executable_task_retries(thread_engine, tmp_path):
    counter = tmp_path / 'counter'

    @thread_engine.executable_task(retries=2, retry_backoff=0)
    async def flaky_command():
        return (f'echo run >> {counter}; n=$(wc -l < {counter}); '
                f'if [ "$n" -lt 3 ]; then echo "failure $n" >&2; exit 1; fi; echo done $n')

    assert (await asyncio.wait_for(flaky_command(), WAIT)).strip() == 'done 3'
    assert count(counter) == 3


async def test_executable_exhausted_retries_raise_its_execution_error(thread_engine, tmp_path):
    counter = tmp_path / 'counter'

    @thread_engine.executable_task(retries=1, retry_backoff=0)
    async def always_fails():
        return f'echo run >> {counter}; echo bad-things >&2; exit 4'

    with pytest.raises(TaskExecutionError, match='always_fails') as info:
        await asyncio.wait_for(always_fails(), WAIT)
    assert info.value.exit_code == 4 and 'bad-things' in info.value.stderr
    assert count(counter) == 2


# ----------------------------------------------------------------- timeouts

async def test_command_past_its_timeout_is_killed(thread_engine, tmp_path):
    pid_file = tmp_path / 'pid'

    @thread_engine.executable_task(timeout=1)
    async def sleeps_too_long():
        return f'echo $$ > {pid_file}; exec sleep 30'

    start = time.monotonic()
    with pytest.raises(TimeoutError, match='sleeps_too_long') as info:
        await asyncio.wait_for(sleeps_too_long(), WAIT)
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 3, elapsed
    assert 'timeout' in str(info.value)
    assert await wait_gone(int(pid_file.read_text())), 'the command still runs after its timeout'


async def test_function_hanging_past_its_timeout(thread_engine):
    @thread_engine.function_task(timeout=0.5)
    async def hangs():
        await asyncio.sleep(30)

    start = time.monotonic()
    with pytest.raises(TimeoutError, match='hangs'):
        await asyncio.wait_for(hangs(), WAIT)
    assert time.monotonic() - start < 2.5


async def test_call_time_timeout_override(thread_engine):
    @thread_engine.function_task(timeout=30)
    async def naps():
        await asyncio.sleep(30)

    start = time.monotonic()
    with pytest.raises(TimeoutError, match='naps'):
        await asyncio.wait_for(naps(task_description={'timeout': 0.5}), WAIT)
    assert time.monotonic() - start < 2.5


async def test_timeout_then_retry_succeeds(engine, tmp_path):
    task = engine.function_task(timeout=1, retries=1, retry_backoff=0)(
        hangs_on_first_execution)
    log = str(tmp_path / 'hang.log')
    start = time.monotonic()
    assert await asyncio.wait_for(task(log, 'second time lucky'), WAIT) == 'second time lucky'
    assert count(log) == 2
    assert time.monotonic() - start < 4


async def test_every_attempt_timing_out_raises_timeout_error(thread_engine, tmp_path):
    log = tmp_path / 'starts'

    @thread_engine.executable_task(timeout=0.5, retries=1, retry_backoff=0)
    async def always_hangs():
        return f'echo start >> {log}; exec sleep 30'

    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"always_hangs.*attempt 2"):
        await asyncio.wait_for(always_hangs(), WAIT)
    assert time.monotonic() - start < 3
    assert count(log) == 2


async def test_timeout_does_not_count_waiting_for_dependencies(thread_engine):
    @thread_engine.function_task
    async def slow():
        await asyncio.sleep(1.2)
        return 1

    @thread_engine.function_task(timeout=1)
    async def quick(x):
        return x + 1

    assert await asyncio.wait_for(quick(slow()), WAIT) == 2


async def test_timeout_does_not_count_waiting_for_a_free_worker():
    """Three 0.6 s commands on one worker, each with a 1 s timeout: all finish.

    The timeout bounds a task's run, not the time it waits in the backend
    for a worker slot.
    """
    eng = await make_engine('thread', 1)
    try:
        @eng.executable_task(timeout=1)
        async def short(i):
            return f'sleep 0.6; echo {i}'

        results = await asyncio.wait_for(
            asyncio.gather(*[short(i) for i in range(3)], return_exceptions=True), WAIT)
        assert [r.strip() if isinstance(r, str) else repr(r) for r in results] == ['0', '1', '2']
    finally:
        await eng.shutdown()


async def test_block_timeout_is_honoured_or_refused():
    """``@block(timeout=...)``/``retries=`` must not be accepted and then ignored."""
    eng = await WorkflowEngine.create(dry_run=True)
    try:
        try:
            @eng.block(timeout=0.5)
            async def stuck_block():
                await asyncio.sleep(30)
        except TypeError as exc:
            assert 'stuck_block' in str(exc)
            return
        with pytest.raises(TimeoutError, match='stuck_block'):
            await asyncio.wait_for(stuck_block(), 3)
    finally:
        await eng.shutdown()


# ------------------------------------------------------------------ journal

async def run_campaign(journal, tmp_path, scale=1, output=None):
    """A diamond: two producers, a combiner, a command; returns (results, runs)."""
    runs = tmp_path / 'runs.log'
    eng = await make_engine('thread', 2, journal=str(journal))
    try:
        @eng.function_task
        async def produce(i, scale):
            mark(runs, f'produce {i}')
            return i * scale

        @eng.function_task
        async def combine(a, b, *files):
            mark(runs, 'combine')
            if files:
                with open(files[0].filename, 'w') as handle:
                    handle.write('data')
            return {'sum': a + b}

        @eng.executable_task
        async def report(total):
            return f'echo report >> {runs}; echo total={total["sum"]}'

        extra = (OutputFile(output),) if output else ()
        total = combine(produce(1, scale), produce(2, scale), *extra)
        results = await asyncio.wait_for(asyncio.gather(total, report(total)), WAIT)
    finally:
        await eng.shutdown()
    lines = runs.read_text().splitlines() if runs.exists() else []
    runs.unlink(missing_ok=True)
    return results, lines


async def test_journal_skips_finished_tasks_on_a_re_run(tmp_path):
    journal = tmp_path / 'campaign.db'
    first, ran = await run_campaign(journal, tmp_path)
    assert first == [{'sum': 3}, 'total=3\n']
    assert sorted(ran) == ['combine', 'produce 1', 'produce 2', 'report']
    assert journal_rows(journal) == 4
    again, ran = await run_campaign(journal, tmp_path)
    assert again == first
    assert ran == []


async def test_changed_arguments_re_run_the_task_and_everything_downstream(tmp_path):
    journal = tmp_path / 'campaign.db'
    await run_campaign(journal, tmp_path)
    results, ran = await run_campaign(journal, tmp_path, scale=10)
    assert results == [{'sum': 30}, 'total=30\n']
    assert sorted(ran) == ['combine', 'produce 1', 'produce 2', 'report']


async def test_missing_output_file_re_runs_its_task(tmp_path):
    journal = tmp_path / 'campaign.db'
    out = 'combined.dat'
    await run_campaign(journal, tmp_path, output=out)
    assert (tmp_path / out).exists()
    _, ran = await run_campaign(journal, tmp_path, output=out)
    assert ran == []
    (tmp_path / out).unlink()
    _, ran = await run_campaign(journal, tmp_path, output=out)
    # A dependency that ran makes its dependents run (journal format 2): it may
    # have written other files, even with the same return value.
    assert sorted(ran) == ['combine', 'report']
    assert (tmp_path / out).exists()


async def test_unpicklable_result_is_not_journaled_and_runs_again(tmp_path):
    journal = tmp_path / 'campaign.db'
    runs = tmp_path / 'runs.log'

    async def campaign():
        eng = await make_engine('thread', 1, journal=str(journal))
        try:
            @eng.function_task
            async def makes_a_lock():
                mark(runs)
                return threading.Lock()

            return await asyncio.wait_for(makes_a_lock(), WAIT)
        finally:
            await eng.shutdown()

    await campaign()
    await campaign()
    assert count(runs) == 2


async def test_failed_tasks_are_not_journaled(tmp_path):
    journal = tmp_path / 'campaign.db'
    log = str(tmp_path / 'flaky.log')

    async def campaign():
        eng = await make_engine('thread', 1, journal=str(journal))
        try:
            flaky = eng.function_task(fails_until)
            return await asyncio.wait_for(flaky(log, 2, 'second run'), WAIT)
        finally:
            await eng.shutdown()

    with pytest.raises(ValueError):
        await campaign()
    assert await campaign() == 'second run'
    assert await campaign() == 'second run'
    assert count(log) == 2


async def test_a_dry_run_does_not_journal_its_fake_results(tmp_path):
    """Noop "results" (None) must not be replayed into the real run later."""
    journal = str(tmp_path / 'campaign.db')

    async def campaign(**create):
        eng = await WorkflowEngine.create(journal=journal, **create)
        try:
            @eng.function_task
            async def double(x):
                return x * 2

            return await asyncio.wait_for(double(21), WAIT)
        finally:
            await eng.shutdown()

    assert await campaign(dry_run=True) is None
    real = await campaign(backend=await ConcurrentExecutionBackend(ThreadPoolExecutor(1)))
    assert real == 42


def test_set_arguments_have_a_stable_identity(tmp_path):
    """Sets pickle in hash order, which changes between interpreters."""
    import subprocess
    import sys
    code = ('from radical.asyncflow.campaign.journal import task_identity; '
            'print(task_identity("m.f", 1, ({"alpha", "beta", "gamma", "delta"},), '
            '{"k": frozenset({"x", "y", "z"})}, lambda v: None))')
    identities = {subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                                 env=dict(os.environ, PYTHONHASHSEED=str(seed)),
                                 check=True).stdout
                  for seed in (1, 2, 3, 4)}
    assert len(identities) == 1, identities


# ----------------------------------------------------------------- shutdown

async def test_shutdown_stops_running_blocks():
    """shutdown() leaves nothing running: a block still waiting is cancelled, not orphaned."""
    eng = await WorkflowEngine.create(dry_run=True)
    ended = []

    @eng.block
    async def waits_forever():
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append(True)

    future = waits_forever()
    await asyncio.sleep(0.05)
    await eng.shutdown()
    assert future.cancelled()
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert (ended, leftover) == ([True], [])


# ------------------------------------------------------- who may write a journal

async def test_the_journal_and_the_run_directory_are_private(tmp_path):
    old = os.umask(0o002)                 # the common HPC umask: group-writable files
    try:
        engine = await WorkflowEngine.create(dry_run=True, journal=str(tmp_path / 'c.db'),
                                             progress=False)
        await engine.shutdown()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / 'c.db').st_mode) == 0o600
    assert stat.S_IMODE(os.stat(engine.run_dir).st_mode) == 0o700


@pytest.mark.parametrize('mode, who', [(0o664, 'its group'), (0o606, 'others'),
                                       (0o666, 'group and others')])
async def test_a_journal_others_can_write_is_refused(tmp_path, mode, who):
    path = tmp_path / 'c.db'
    engine = await WorkflowEngine.create(dry_run=True, journal=str(path), progress=False)
    await engine.shutdown()
    os.chmod(path, mode)
    with pytest.raises(JournalError, match=rf'refusing to resume from {path}: it is writable '
                                           rf'by {who} \(mode 0{mode:o}\).*chmod 600'):
        await WorkflowEngine.create(dry_run=True, journal=str(path), progress=False)


async def test_a_journal_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip('giving a file to another user needs root (CI runs as root)')
    path = tmp_path / 'c.db'
    engine = await WorkflowEngine.create(dry_run=True, journal=str(path), progress=False)
    await engine.shutdown()
    os.chown(path, 65534, 65534)
    with pytest.raises(JournalError, match=r'refusing to resume from .*: it belongs to user '
                                           r'.*65534.*not to you'):
        await WorkflowEngine.create(dry_run=True, journal=str(path), progress=False)
