"""NoopExecutionBackend: the dry run."""

import asyncio

import pytest

from radical.asyncflow import NoopExecutionBackend
from radical.asyncflow.backends.execution.base import BaseExecutionBackend
from radical.asyncflow.backends.execution.noop import NoopExecutionBackend as NoopFromModule
from radical.asyncflow.constants import StateMapper, TasksMainStates
from radical.asyncflow.errors import DependencyFailure

WAIT = 10


def test_top_level_name_is_the_module_class():
    assert NoopExecutionBackend is NoopFromModule
    assert issubclass(NoopExecutionBackend, BaseExecutionBackend)


def test_state_map_covers_the_main_states():
    mapper = NoopExecutionBackend().get_task_states_map()
    assert isinstance(mapper, StateMapper)
    for main in TasksMainStates:
        assert mapper.to_main_state(getattr(mapper, main.name)) is main


async def test_lifecycle():
    backend = await NoopExecutionBackend()
    assert backend.state() == 'RUNNING'
    assert await backend.cancel_task('task.000001') is False
    await backend.shutdown()
    assert backend.state() == 'STOPPED'
    created = await NoopExecutionBackend.create()
    assert isinstance(created, NoopExecutionBackend)
    async with NoopExecutionBackend() as managed:
        assert managed.state() == 'RUNNING'
    assert managed.state() == 'STOPPED'


async def test_reports_every_task_done():
    backend = NoopExecutionBackend()
    reports = []
    backend.register_callback(lambda task, state, service_callback=None:
                              reports.append((task['uid'], state)))
    tasks = [{'uid': f'task.{i:06d}', 'name': 't', 'function': None, 'executable': 'false',
              'args': (), 'kwargs': {}} for i in range(3)]
    await backend.submit_tasks(tasks)
    done = backend.get_task_states_map().DONE
    assert reports == [(t['uid'], done) for t in tasks]
    assert all(t['stdout'] == '' and t.get('return_value') is None for t in tasks)


async def test_dry_run_does_not_run_function_bodies(dry):
    ran = []

    @dry.function_task
    async def work(x):
        ran.append(x)
        return x

    @dry.function_task
    async def after(x):
        ran.append('after')
        return 'real'

    assert await asyncio.wait_for(after(work(1)), WAIT) is None
    assert ran == []


async def test_dry_run_executables_give_empty_stdout(dry, tmp_path):
    @dry.executable_task
    async def write():
        return f'touch {tmp_path}/should_not_exist'

    assert await asyncio.wait_for(write(), WAIT) == ''
    assert not (tmp_path / 'should_not_exist').exists()


async def test_dry_run_still_fails_on_bad_input(dry):
    @dry.executable_task
    async def not_a_command():
        return 42

    @dry.function_task
    async def after(x):
        return x

    bad = not_a_command()
    with pytest.raises(ValueError, match='not_a_command'):
        await asyncio.wait_for(bad, WAIT)
    with pytest.raises(DependencyFailure):
        await asyncio.wait_for(after(bad), WAIT)


async def test_dry_run_blocks_run_and_nest(dry):
    @dry.function_task
    async def t():
        return 'ignored'

    @dry.block
    async def inner():
        return [await t(), 'inner']

    @dry.block
    async def outer():
        return await inner()

    assert await asyncio.wait_for(outer(), WAIT) == [None, 'inner']
