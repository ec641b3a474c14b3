"""The public names of upstream radical.asyncflow 0.6.0, beside ours (issue 22).

Each test imports a name the way a 0.6 program does and checks it behaves
as there: the local backend without an executor, the logging helpers, the
dependency-failure error under both names, ``PROMPT``, the data-linking
flags' default, ``handle_component_*`` overrides for all three outcomes,
and ``engine.task_callbacks(description, state)`` driving a task.
"""

import asyncio
import json
import logging
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from radical.asyncflow import WorkflowEngine
from radical.asyncflow.constants import StateMapper

WAIT = 20


def test_local_backend_is_importable_from_both_places_and_makes_its_own_pool():
    from radical.asyncflow import ConcurrentExecutionBackend
    from radical.asyncflow import LocalExecutionBackend as top
    from radical.asyncflow import NoopExecutionBackend as noop
    from radical.asyncflow.backends import LocalExecutionBackend, NoopExecutionBackend
    assert top is LocalExecutionBackend and noop is NoopExecutionBackend
    backend = LocalExecutionBackend()
    assert isinstance(backend, ConcurrentExecutionBackend)
    assert isinstance(backend.executor, ThreadPoolExecutor)
    assert backend.name == 'default'
    assert backend.supports_implicit_data_linking is False
    assert backend.supports_explicit_data_linking is False
    backend.executor.shutdown()
    with ProcessPoolExecutor(1) as pool:
        assert LocalExecutionBackend(pool, 'cpu').name == 'cpu'


async def test_local_backend_without_an_executor_runs_tasks():
    from radical.asyncflow import LocalExecutionBackend
    backend = await LocalExecutionBackend()
    engine = await WorkflowEngine.create(backend=backend, progress=False)
    try:
        assert engine.backends == {'default': backend}

        @engine.function_task
        async def double(x):
            return 2 * x

        assert await asyncio.wait_for(double(21), WAIT) == 42
    finally:
        await engine.shutdown()
    assert backend.executor._shutdown


async def test_a_dependency_failure_is_caught_by_either_name():
    from radical.asyncflow import LocalExecutionBackend
    from radical.asyncflow.errors import DependencyFailure, DependencyFailureError
    engine = await WorkflowEngine.create(backend=await LocalExecutionBackend(), progress=False)
    try:
        @engine.function_task
        async def bad():
            raise ValueError('boom')

        @engine.function_task
        async def after(x):
            return x

        with pytest.raises(DependencyFailureError) as info:
            await asyncio.wait_for(after(bad()), WAIT)
        with pytest.raises(DependencyFailure):
            await asyncio.wait_for(after(bad()), WAIT)
        assert isinstance(info.value.root_cause, ValueError)
    finally:
        await engine.shutdown()
    # upstream's constructor: failed_dependencies may be None
    error = DependencyFailureError('upstream style', failed_dependencies=None)
    assert isinstance(error, DependencyFailure) and error.failed_dependencies == []


def test_prompt_constant_beside_the_other_kinds():
    from radical.asyncflow import workflow_manager
    assert workflow_manager.PROMPT == 'prompt'
    assert (workflow_manager.TASK, workflow_manager.BLOCK, workflow_manager.FUNCTION,
            workflow_manager.EXECUTABLE) == ('task', 'block', 'function', 'executable')


def test_logging_helpers_configure_console_file_and_json(tmp_path, capsys):
    from radical.asyncflow.logging import (
        StructuredLogger,
        get_logger,
        get_structured_logger,
        init_default_logger,
    )
    text, records = tmp_path / 'run.log', tmp_path / 'run.json'
    try:
        logger = init_default_logger(logging.DEBUG, output_file=text, use_colors=False,
                                     logger_name='u22', structured_logging=True,
                                     style='minimal')
        assert logger is get_logger('u22')
        logger.info('hello %s', 'there')
        structured = get_structured_logger('u22')
        assert isinstance(structured, StructuredLogger)
        structured.warning('task done', task='t1', seconds=2)
        # a second call replaces its handlers: one line per message, not two
        init_default_logger('INFO', logger_name='u22', use_colors=False, style='minimal')
        logger.info('once')
    finally:
        for handler in list(logging.getLogger('u22').handlers):
            logging.getLogger('u22').removeHandler(handler)
            handler.close()
    err = capsys.readouterr().err
    assert 'INFO: hello there' in err and err.count('INFO: once') == 1
    assert 'hello there' in text.read_text()
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert lines[-1]['message'] == 'task done' and lines[-1]['task'] == 't1'
    with pytest.raises(ValueError, match='style'):
        init_default_logger(style='fancy')


class _DictBackend:
    """A 0.6-style backend written for the test: declares nothing about data linking."""

    def __init__(self, declares=None):
        StateMapper.register_backend_states_with_defaults('u22dict')
        self.links = []
        self.submitted = []
        self.callback = None
        if declares is not None:
            self.supports_implicit_data_linking = declares
            self.supports_explicit_data_linking = declares

    def register_callback(self, func):
        self.callback = func

    def get_task_states_map(self):
        return StateMapper('u22dict')

    def link_implicit_data_deps(self, src_task, dst_task):
        self.links.append(('implicit', src_task['uid'], dst_task['uid']))

    def link_explicit_data_deps(self, src_task=None, dst_task=None, file_name=None,
                                file_path=None):
        self.links.append(('explicit', file_name))

    async def submit_tasks(self, tasks):
        states = self.get_task_states_map()
        for task in tasks:
            self.submitted.append(task)
            task['return_value'] = await task['function'](*task['args'], **task['kwargs'])
            self.callback(task, states.DONE)

    async def cancel_task(self, uid):
        return False

    async def shutdown(self):
        pass


@pytest.mark.parametrize('declares', [None, False, True])
async def test_data_linking_flags_default_to_false_for_dict_backends(declares):
    backend = _DictBackend(declares)
    engine = await WorkflowEngine.create(backend=backend, progress=False)
    try:
        @engine.function_task
        async def one():
            return 1

        @engine.function_task
        async def plus(x):
            return x + 1

        assert await asyncio.wait_for(plus(one()), WAIT) == 2
    finally:
        await engine.shutdown()
    assert len(backend.links) == (1 if declares else 0)


class _Upstream06Engine(WorkflowEngine):
    """Overrides the 0.6 names of the outcome handlers only."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def handle_component_success(self, component, component_fut):
        self.seen.append(('success', component['name']))
        return super().handle_component_success(component, component_fut)

    def handle_component_failure(self, component, component_fut, override_error_message=None):
        self.seen.append(('failure', component['name']))
        return super().handle_component_failure(component, component_fut,
                                                override_error_message)

    def handle_component_cancellation(self, component, component_fut):
        self.seen.append(('cancellation', component['name']))
        return super().handle_component_cancellation(component, component_fut)


async def test_handle_component_overrides_are_called_for_all_three_outcomes():
    from radical.asyncflow import LocalExecutionBackend
    backend = await LocalExecutionBackend(ThreadPoolExecutor(2))
    engine = await _Upstream06Engine.create(backend=backend, progress=False)
    started = asyncio.Event()
    try:
        @engine.function_task
        async def good():
            return 'ok'

        @engine.function_task
        async def bad():
            raise ValueError('boom')

        @engine.executable_task
        async def slow():
            return 'sleep 30'

        assert await asyncio.wait_for(good(), WAIT) == 'ok'
        with pytest.raises(ValueError):
            await asyncio.wait_for(bad(), WAIT)
        running = slow()
        running.add_done_callback(lambda _: started.set())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while running.state != 'RUNNING' and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await backend.cancel_task(running._af_record.uid)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, WAIT)
    finally:
        await engine.shutdown()
    assert engine.seen == [('success', 'good'), ('failure', 'bad'), ('cancellation', 'slow')]


async def test_task_callbacks_drives_a_task_as_upstream_backends_do():
    """A 0.6 backend (or program) reports with engine.task_callbacks(description, state)."""

    class Silent(_DictBackend):
        async def submit_tasks(self, tasks):
            self.submitted.extend(tasks)

    backend = Silent()
    engine = await WorkflowEngine.create(backend=backend, progress=False)
    try:
        @engine.function_task
        async def answer():
            return None

        future = answer()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not backend.submitted and loop.time() < deadline:
            await asyncio.sleep(0.02)
        description = engine.components[future._af_record.uid]['description']
        engine.task_callbacks(description, 'RUNNING')
        deadline = loop.time() + WAIT
        while future.state != 'RUNNING' and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert future.state == 'RUNNING'
        engine.task_callbacks({**description, 'return_value': 42}, 'DONE')
        assert await asyncio.wait_for(future, WAIT) == 42
    finally:
        await engine.shutdown()
