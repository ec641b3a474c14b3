"""Bad input gives the errors SPEC §1-§2 promise, with messages that name the culprit."""

import asyncio
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from radical.asyncflow import ConcurrentExecutionBackend, InputFile, WorkflowEngine
from radical.asyncflow.errors import DependencyFailure, TaskExecutionError

WAIT = 10
DECORATORS = ['function_task', 'executable_task', 'block']


@pytest.mark.parametrize('kind', DECORATORS)
async def test_non_async_function_is_a_type_error_naming_it(dry, kind):
    def plain_sync_function():
        return 'echo x'

    with pytest.raises(TypeError, match='plain_sync_function'):
        getattr(dry, kind)(plain_sync_function)
    with pytest.raises(TypeError, match='plain_sync_function'):
        getattr(dry, kind)()(plain_sync_function)


@pytest.mark.parametrize('kind', DECORATORS)
@pytest.mark.parametrize('bad', ['yes', 1, None, 0.0])
async def test_service_must_be_a_bool(dry, kind, bad):
    with pytest.raises(TypeError):
        @getattr(dry, kind)(service=bad)
        async def f():
            return 'true'


@pytest.mark.parametrize('bad', ['cores=2', ['cores', 2], 3, ('ranks', 1)])
async def test_task_description_default_must_be_a_dict(dry, bad):
    with pytest.raises(TypeError, match='task_description'):
        @dry.function_task
        async def f(task_description=bad):
            return None


@pytest.mark.parametrize('bad', ['cores=2', [('cores', 2)], 3])
@pytest.mark.parametrize('kind', ['function_task', 'executable_task'])
async def test_task_description_at_call_time_must_be_a_dict(dry, kind, bad):
    @getattr(dry, kind)
    async def f():
        return 'true'

    with pytest.raises(TypeError, match='task_description'):
        f(task_description=bad)


@pytest.mark.parametrize('result', [None, 42, b'echo bytes', ['echo', 'x']])
async def test_executable_must_return_a_str(dry, result):
    @dry.executable_task
    async def returns_no_command():
        return result

    with pytest.raises(ValueError, match='returns_no_command'):
        await asyncio.wait_for(returns_no_command(), WAIT)


async def test_missing_input_file_names_the_task(dry, tmp_path):
    @dry.function_task
    async def reader_of_nothing(f):
        return None

    with pytest.raises(FileNotFoundError, match='reader_of_nothing'):
        await asyncio.wait_for(reader_of_nothing(InputFile(str(tmp_path / 'nope.dat'))), WAIT)


@pytest.mark.parametrize('bad', [object(), 'concurrent', ThreadPoolExecutor])
async def test_backend_of_the_wrong_type_is_a_type_error(bad):
    with pytest.raises(TypeError):
        await WorkflowEngine.create(backend=bad)


@pytest.mark.parametrize('bad', [None, object(), 'process', ThreadPoolExecutor])
def test_concurrent_backend_needs_an_executor(bad):
    with pytest.raises(TypeError):
        ConcurrentExecutionBackend(bad)


async def test_dry_run_with_a_real_backend_is_a_runtime_error():
    backend = ConcurrentExecutionBackend(ThreadPoolExecutor(1))
    try:
        with pytest.raises(RuntimeError, match='(?i)dry'):
            await WorkflowEngine.create(backend=backend, dry_run=True)
    finally:
        await backend.shutdown()


async def test_calling_a_task_after_shutdown_is_an_error():
    eng = await WorkflowEngine.create(dry_run=True)

    @eng.function_task
    async def late():
        return None

    await eng.shutdown()
    with pytest.raises(RuntimeError, match='late'):
        late()


def test_dependency_failure_carries_names_and_cause():
    root = ValueError('root')
    error = DependencyFailure('msg', failed_dependencies=('a', 'b'), root_cause=root)
    assert error.failed_dependencies == ['a', 'b']
    assert error.root_cause is root
    assert error.__cause__ is root
    copy = pickle.loads(pickle.dumps(error))
    assert copy.failed_dependencies == ['a', 'b']
    assert isinstance(copy.root_cause, ValueError) and str(copy.root_cause) == 'root'


def test_task_execution_error_is_a_runtime_error_and_pickles():
    error = TaskExecutionError('failed', task_name='t', command='false', exit_code=1,
                               stderr='oops')
    assert isinstance(error, RuntimeError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.task_name, copy.command, copy.exit_code, copy.stderr, str(copy)) == \
        ('t', 'false', 1, 'oops', 'failed')
