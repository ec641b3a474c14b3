"""``@engine.prompt_task`` (radical.asyncflow 0.6's prompt tasks, issue 22).

The body returns a prompt; a backend that answers prompts answers it and the
answer is the task's result.  ``Oracle`` is a prompt-answering backend
written for these tests (real vLLM needs a GPU): it answers at once, fails
prompts that contain 'fail' and holds those that contain 'hold' until
cancelled.  ``ListOracle`` answers through the dict protocol the way
rhapsody's DragonVllmInferenceBackend does (``task['response']``, a list).
"""

import asyncio
import threading

import pytest

from radical.asyncflow import (
    LocalExecutionBackend,
    NoopExecutionBackend,
    WorkflowEngine,
)
from radical.asyncflow.backends.execution.base import BackendBase
from radical.asyncflow.constants import StateMapper
from radical.asyncflow.errors import DependencyFailureError

WAIT = 20


class Oracle(BackendBase):
    """Answers prompts: 'answer(<prompt>)'."""

    answers_prompts = True
    reports_running = True

    def __init__(self, name='oracle'):
        self._name = name
        self.prompts = []
        self.cancelled = []
        self._held = {}

    async def submit(self, tasks, reporter):
        for task in tasks:
            assert task.type == 'prompt' and task.function is None and task.command is None
            self.prompts.append(task.prompt)
            reporter.running(task)
            if 'fail' in task.prompt:
                reporter.failed(task, ValueError(f'cannot answer {task.prompt!r}'))
            elif 'hold' in task.prompt:
                self._held[task.uid] = (task, reporter)
            else:
                reporter.done(task, f'answer({task.prompt})')

    async def cancel_task(self, uid):
        held = self._held.pop(uid, None)
        if held is None:
            return False
        self.cancelled.append(uid)
        held[1].cancelled(held[0])
        return True

    async def shutdown(self):
        for task, reporter in self._held.values():
            reporter.cancelled(task)
        self._held.clear()


class ListOracle:
    """A dict-protocol backend answering as rhapsody's vLLM backend does, from a thread."""

    answers_prompts = True

    def __init__(self):
        StateMapper.register_backend_states_with_defaults('list_oracle')
        self.callback = None
        self.threads = []

    def register_callback(self, func):
        self.callback = func

    def get_task_states_map(self):
        return StateMapper('list_oracle')

    def link_implicit_data_deps(self, src_task, dst_task):
        pass

    def link_explicit_data_deps(self, src_task=None, dst_task=None, file_name=None,
                                file_path=None):
        pass

    async def submit_tasks(self, tasks):
        for task in tasks:
            thread = threading.Thread(target=self._answer, args=(task,))
            self.threads.append(thread)
            thread.start()

    def _answer(self, task):
        task['response'] = [task['prompt'].upper()]
        self.callback(task, self.get_task_states_map().DONE)

    async def cancel_task(self, uid):
        return False

    async def shutdown(self):
        for thread in self.threads:
            thread.join(WAIT)


async def _engine(*backends):
    return await WorkflowEngine.create(backend=list(backends), progress=False)


async def test_a_prompt_built_from_a_dependency_is_answered_and_feeds_a_dependent():
    oracle = Oracle()
    engine = await _engine(await LocalExecutionBackend(name='cpu'), oracle)
    try:
        @engine.function_task
        async def topic():
            return 'bees'

        @engine.prompt_task
        async def ask(subject):
            return f'tell me about {subject}'

        @engine.function_task
        async def shout(answer):
            return answer.upper()

        assert await asyncio.wait_for(shout(ask(topic())), WAIT) == \
            'ANSWER(TELL ME ABOUT BEES)'
    finally:
        await engine.shutdown()
    assert oracle.prompts == ['tell me about bees']


async def test_failures_and_their_dependents_as_for_other_tasks():
    engine = await _engine(await LocalExecutionBackend(name='cpu'), Oracle())
    try:
        @engine.prompt_task
        async def ask(text):
            return text

        @engine.function_task
        async def after(answer):
            return answer

        with pytest.raises(ValueError, match='cannot answer'):
            await asyncio.wait_for(ask('please fail'), WAIT)
        with pytest.raises(DependencyFailureError):
            await asyncio.wait_for(after(ask('fail again')), WAIT)
        with pytest.raises(ValueError, match="prompt task 'ask' must return its prompt as a "
                                             "non-empty str"):
            await asyncio.wait_for(ask(''), WAIT)
    finally:
        await engine.shutdown()


async def test_cancelling_a_prompt_task_cancels_it_in_the_backend():
    oracle = Oracle()
    engine = await _engine(oracle)
    try:
        @engine.prompt_task
        async def ask(text):
            return text

        held = ask('hold on')
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while held.state != 'RUNNING' and loop.time() < deadline:
            await asyncio.sleep(0.02)
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
        deadline = loop.time() + WAIT
        while not oracle.cancelled and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert oracle.cancelled == [held._af_record.uid]
    finally:
        await engine.shutdown()


async def test_an_engine_without_a_prompt_backend_refuses_at_decoration():
    engine = await _engine(await LocalExecutionBackend())
    try:
        async def ask():
            return 'hello'

        with pytest.raises(ValueError) as info:
            engine.prompt_task(ask)
        message = str(info.value)
        assert "prompt task 'test_an_engine_without_a_prompt_backend_refuses_at_decoration." \
               "<locals>.ask'" in message and 'answers prompts' in message
        assert '\n' not in message
    finally:
        await engine.shutdown()


async def test_prompts_go_to_the_backend_that_answers_them_and_a_wrong_choice_fails_at_call():
    oracle = Oracle(name='ai')
    engine = await _engine(await LocalExecutionBackend(name='cpu'), oracle)
    try:
        @engine.prompt_task
        async def ask(text):
            return text

        assert await asyncio.wait_for(ask('hi'), WAIT) == 'answer(hi)'
        with pytest.raises(ValueError, match="prompt task 'ask': backend 'cpu'.*does not "
                                             "answer prompts"):
            ask('hi', task_description={'backend': 'cpu'})
    finally:
        await engine.shutdown()


async def test_a_dict_backend_answering_in_response_as_rhapsody_vllm_does():
    engine = await _engine(ListOracle())
    try:
        @engine.prompt_task
        async def ask(text):
            return text

        assert await asyncio.wait_for(ask('quiet'), WAIT) == 'QUIET'
    finally:
        await engine.shutdown()


async def test_a_dry_run_answers_prompts_with_nothing():
    engine = await _engine(NoopExecutionBackend())
    try:
        @engine.prompt_task
        async def ask():
            return 'anything'

        assert await asyncio.wait_for(ask(), WAIT) == ''
    finally:
        await engine.shutdown()
