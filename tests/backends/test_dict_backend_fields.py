"""What a backend of rhapsody-py 0.6 (radical.asyncflow 0.6's backends) receives (issue 22).

Upstream 0.6 hands such a backend the command split into ``executable`` and
``arguments`` (shlex), ``capture_stdio`` at the top level and the target
backend's name.  ``ArgvBackend``, derived from rhapsody's ``BaseBackend``,
runs commands the way rhapsody's Dragon backend does (``executable`` with
``arguments``, never a shell, a failure reported as ``SystemExit``);
rhapsody-py 0.6.0's own ConcurrentExecutionBackend runs a DAG with a
dependency and a failure.
"""

import asyncio
import subprocess
import threading

import pytest

rhapsody_base = pytest.importorskip('rhapsody.backends.base')

from radical.asyncflow import WorkflowEngine
from radical.asyncflow.constants import StateMapper
from radical.asyncflow.errors import BackendError, DependencyFailureError

WAIT = 60


class ArgvBackend(rhapsody_base.BaseBackend):
    """A rhapsody-py backend: argv execution only, reports from threads, a failing
    command reported as ``SystemExit(code)`` (as rhapsody's Dragon backend does)."""

    def __init__(self, name='argv'):
        super().__init__(name)
        StateMapper.register_backend_states_with_defaults('argv06')
        self.seen = []
        self.callback = None
        self.threads = []

    def register_callback(self, func):
        self.callback = func

    def task_state_cb(self, task, state):
        self.callback(task, state)

    def get_task_states_map(self):
        return StateMapper('argv06')

    def build_task(self, task):
        return task

    def state(self):
        return 'RUNNING'

    def link_implicit_data_deps(self, src_task, dst_task):
        raise AssertionError('not declared: must not be called')

    def link_explicit_data_deps(self, src_task=None, dst_task=None, file_name=None,
                                file_path=None):
        raise AssertionError('not declared: must not be called')

    async def submit_tasks(self, tasks):
        for task in tasks:
            self.seen.append(dict(task))
            thread = threading.Thread(target=self._run, args=(task,))
            self.threads.append(thread)
            thread.start()

    def _run(self, task):
        states = self.get_task_states_map()
        self.callback(task, states.RUNNING)
        try:
            if task['function'] is not None:
                task['return_value'] = asyncio.run(task['function'](*task['args'],
                                                                    **task['kwargs']))
            else:
                proc = subprocess.run([task['executable'], *task['arguments']],
                                      capture_output=True, text=True, timeout=WAIT)
                task['stdout'], task['stderr'] = proc.stdout, proc.stderr
                if proc.returncode:
                    task['exception'] = SystemExit(proc.returncode)
                    self.callback(task, states.FAILED)
                    return
        except Exception as exc:
            task['exception'] = exc
            self.callback(task, states.FAILED)
            return
        self.callback(task, states.DONE)

    async def cancel_task(self, uid):
        return False

    async def shutdown(self):
        for thread in self.threads:
            thread.join(WAIT)


async def test_an_argv_backend_gets_the_command_split_and_the_0_6_fields():
    backend = ArgvBackend()
    engine = await WorkflowEngine.create(backend=backend, progress=False)
    try:
        @engine.function_task
        async def word():
            return 'two  spaces'

        @engine.executable_task
        async def show(text):
            return f"printf '%s|' '{text}' \"$HOME\""

        @engine.executable_task
        async def fails():
            return '/bin/false'

        @engine.function_task
        async def after(x):
            return x

        shown = show(word())
        assert await asyncio.wait_for(shown, WAIT) == 'two  spaces|$HOME|'
        # a failed process reported as SystemExit fails its task, not the program
        with pytest.raises(DependencyFailureError) as info:
            await asyncio.wait_for(after(fails()), WAIT)
        assert isinstance(info.value.root_cause, BackendError)
        assert 'fails' in str(info.value.root_cause)
        assert 'SystemExit(1)' in str(info.value.root_cause)
    finally:
        await engine.shutdown()
    task = next(t for t in backend.seen if t['name'] == 'show')
    assert task['executable'] == 'printf'
    assert task['arguments'] == ['%s|', 'two  spaces', '$HOME']
    assert task['capture_stdio'] is False
    assert task['target_backend'] == 'argv'


async def test_a_command_that_cannot_be_split_fails_its_task_naming_it():
    engine = await WorkflowEngine.create(backend=ArgvBackend(), progress=False)
    try:
        @engine.executable_task
        async def unbalanced():
            return "echo 'no end"

        with pytest.raises(ValueError, match="task 'unbalanced'.*cannot be split"):
            await asyncio.wait_for(unbalanced(), WAIT)
    finally:
        await engine.shutdown()


async def test_rhapsody_concurrent_backend_gets_argv_commands_and_runs_a_dag(tmp_path):
    pytest.importorskip('rhapsody')
    from concurrent.futures import ThreadPoolExecutor

    from rhapsody.backends.execution.concurrent import ConcurrentExecutionBackend
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=4))
    engine = await WorkflowEngine.create(backend=backend, progress=False)
    try:
        @engine.function_task
        async def number():
            return 21

        @engine.executable_task
        async def echo(x):
            return f"/bin/echo 'hello  {x}'"

        @engine.executable_task
        async def fails():
            return '/bin/false'

        @engine.function_task
        async def after(x):
            return x

        said = echo(number())
        assert await asyncio.wait_for(said, WAIT) == 'hello  21\n'
        with pytest.raises(DependencyFailureError) as info:
            await asyncio.wait_for(after(fails()), WAIT)
        assert info.value.failed_dependencies == ['fails']
        assert 'exit code 1' in str(info.value.root_cause)
    finally:
        await engine.shutdown()
