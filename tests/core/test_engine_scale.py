"""What lets the engine run a million tasks: finished tasks release their
arguments and results, chains run without a loop turn per link, and the
Concurrent backend runs plain commands without a shell."""

import asyncio
import gc
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine
from radical.asyncflow.backends.execution._command import CommandSpec, plain_argv, run_command
from radical.asyncflow.constants import StateMapper

WAIT = 10


@pytest.fixture
async def threads():
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=2))
    eng = await WorkflowEngine.create(backend=backend)
    yield eng
    await eng.shutdown()


class Payload:
    """A result or argument whose lifetime the tests watch."""


async def _settle():
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()


async def test_a_finished_task_keeps_neither_its_result_nor_its_arguments(threads):
    @threads.function_task
    async def make():
        return Payload()

    @threads.function_task
    async def use(payload, extra):
        return 1

    argument = Payload()
    produced = make()
    consumer = use(produced, extra=argument)
    assert await asyncio.wait_for(consumer, WAIT) == 1
    result = weakref.ref(produced.result())
    gone_argument = weakref.ref(argument)
    uid = produced._af_record.uid
    assert threads.components[uid]['future'] is produced     # still held by the program

    del produced, consumer, argument
    await _settle()
    assert result() is None, 'the engine keeps the result of a finished task alive'
    assert gone_argument() is None, 'the engine keeps the arguments of a finished task alive'
    view = threads.components[uid]
    assert view['future'] is None
    assert view['description']['args'] == () and 'return_value' not in view['description']


async def test_a_late_report_about_a_released_task_is_ignored(dry):
    @dry.function_task
    async def t():
        return 1

    fut = t()
    await fut
    uid = fut._af_record.uid
    del fut
    await _settle()
    task = dry.components[uid]['description']
    dry.task_callbacks(task, dry.task_states_map.DONE)       # a duplicate: no error
    dry.task_callbacks(task, dry.task_states_map.FAILED)
    assert dry.components[uid]['future'] is None


async def test_a_long_chain_needs_no_loop_turn_per_link(dry):
    @dry.function_task
    async def link(previous=None):
        return None

    turns = 0

    async def count_turns():
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.create_task(count_turns())
    last = None
    for _ in range(3000):
        last = link(last)
    await asyncio.wait_for(last, WAIT)
    counter.cancel()
    assert turns < 100, f'{turns} loop turns for a 3000-link chain'


async def test_user_cancellation_still_reaches_the_dependents(threads):
    started = asyncio.Event()

    @threads.function_task
    async def slow():
        started.set()
        await asyncio.sleep(30)

    @threads.function_task
    async def after(x):
        return x

    first = slow()
    second = after(first)
    await asyncio.wait_for(started.wait(), WAIT)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(second, WAIT)


@pytest.mark.parametrize('command, argv', [
    ('/bin/true', ['/bin/true']),
    ('ls -l /tmp', ['ls', '-l', '/tmp']),
    ('prog --opt=1 a,b x@y:z', ['prog', '--opt=1', 'a,b', 'x@y:z']),
    ('echo hi', None),                  # a builtin: the shell's own echo
    ('cd /tmp', None),
    ('FOO=1 env', None),                # an assignment
    ('ls *.txt', None),                 # a glob
    ('echo $HOME', None),
    ('a | b', None),
    ('a > out', None),
    ("printf '%s' x", None),
    ('sleep 1; true', None),
    ('~/bin/x', None),
    ('', None),
])
def test_which_commands_run_without_a_shell(command, argv):
    assert plain_argv(command) == argv


@pytest.mark.parametrize('command, code, stdout', [
    ('/bin/echo direct', 0, 'direct\n'),
    ('echo through the shell', 0, 'through the shell\n'),
    ('no-such-command-anywhere', 127, ''),        # the shell reports it, as before
])
async def test_commands_run_with_or_without_a_shell(command, code, stdout):
    result = await run_command(CommandSpec(command))
    assert (result.exit_code, result.stdout) == (code, stdout)
    if code == 127:
        assert 'not found' in result.stderr


async def test_a_cancelled_command_is_killed():
    runner = asyncio.ensure_future(run_command(CommandSpec('sleep 30')))
    await asyncio.sleep(0.2)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, 5)


def test_state_values_are_plain_attributes():
    StateMapper.register_backend_states('scale_test', done_state='ok', failed_state='ko',
                                        canceled_state='gone', running_state='on')
    mapper = StateMapper('scale_test')
    assert 'DONE' in vars(mapper) and mapper.DONE == 'ok' and mapper.RUNNING == 'on'
    with pytest.raises(AttributeError, match='no state'):
        mapper.NOPE
