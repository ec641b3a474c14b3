"""The engine's behaviour as SPEC §2 states it."""

import asyncio
import collections
import inspect
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import radical.utils as ru

from helpers import alive, make_fifo, read_fifo
from radical.asyncflow import (ConcurrentExecutionBackend, InputFile, NoopExecutionBackend,
                               OutputFile, WorkflowEngine)
from radical.asyncflow import workflow_manager
from radical.asyncflow.errors import DependencyFailure
from radical.asyncflow.workflow_manager import BLOCK, EXECUTABLE, FUNCTION, TASK

WAIT = 10       # seconds: a bound for things that should take milliseconds


# ---------------------------------------------------------------- helpers

class RecordingBackend(NoopExecutionBackend):
    """A dry-run backend that remembers what the engine told it."""

    def __init__(self):
        super().__init__()
        self.submitted = []       # task dicts, in submission order
        self.implicit = []        # (src uid, dst uid)
        self.explicit = []        # (args, kwargs) of each call
        self.cancelled = []
        self.shutdowns = 0
        self.got_tasks = asyncio.Event()

    async def submit_tasks(self, tasks):
        self.submitted.extend(tasks)
        self.got_tasks.set()
        await super().submit_tasks(tasks)

    def link_implicit_data_deps(self, src_task, dst_task):
        self.implicit.append((src_task['uid'], dst_task['uid']))

    def link_explicit_data_deps(self, *args, **kwargs):
        self.explicit.append((args, kwargs))

    async def cancel_task(self, uid):
        self.cancelled.append(uid)
        return False

    async def shutdown(self):
        self.shutdowns += 1
        await super().shutdown()

    def task(self, uid):
        return next(t for t in self.submitted if t['uid'] == uid)


class HoldingBackend(RecordingBackend):
    """Accepts tasks and never reports on them: they stay running."""

    async def submit_tasks(self, tasks):
        self.submitted.extend(tasks)
        self.got_tasks.set()


class SpyConcurrentBackend(ConcurrentExecutionBackend):
    """The concurrent backend, remembering cancel calls and state reports."""

    def __init__(self, executor):
        super().__init__(executor)
        self.cancel_calls = []
        self.reports = []
        self.canceled_reported = asyncio.Event()

    async def cancel_task(self, uid):
        self.cancel_calls.append(uid)
        return await super().cancel_task(uid)

    def task_state_cb(self, task, state):
        self.reports.append((task['uid'], state))
        if state == self.get_task_states_map().CANCELED:
            self.canceled_reported.set()
        super().task_state_cb(task, state)


def uid_of(engine, fut):
    matches = [uid for uid, comp in engine.components.items() if comp['future'] is fut]
    assert len(matches) == 1, f'future not found exactly once in engine.components: {matches}'
    return matches[0]


@pytest.fixture
async def engine():
    # Bodies here synchronise with the test through asyncio objects of its
    # loop, so they run on that loop (the explicit choice, issue 22).
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=4),
                                               coroutines_on_loop=True)
    eng = await WorkflowEngine.create(backend=backend)
    yield eng
    await eng.shutdown()


@pytest.fixture
async def rec():
    backend = RecordingBackend()
    eng = await WorkflowEngine.create(backend=backend)
    yield eng, backend
    await eng.shutdown()


# ---------------------------------------------------------------- create()

async def test_create_without_backend_in_dry_run_uses_noop():
    eng = await WorkflowEngine.create(dry_run=True)
    try:
        assert isinstance(eng.backend, NoopExecutionBackend)
        assert eng.dry_run is True

        @eng.function_task
        async def t():
            return 1

        assert await asyncio.wait_for(t(), WAIT) is None     # dry run: nothing ran
    finally:
        await eng.shutdown()


async def test_create_without_backend_uses_the_configured_one(monkeypatch):
    monkeypatch.setenv('RADICAL_ASYNCFLOW_BACKEND', 'concurrent')
    monkeypatch.delenv('RADICAL_ASYNCFLOW_RESOURCES', raising=False)
    eng = await WorkflowEngine.create()
    try:
        assert isinstance(eng.backend, ConcurrentExecutionBackend)
        assert eng.dry_run is False

        @eng.function_task
        async def t(x):
            return x * 3

        assert await asyncio.wait_for(t(14), WAIT) == 42
    finally:
        await eng.shutdown()


async def test_dry_run_with_another_backend_is_a_runtime_error():
    pool = ThreadPoolExecutor(max_workers=1)
    backend = ConcurrentExecutionBackend(pool)
    try:
        with pytest.raises(RuntimeError):
            await WorkflowEngine.create(backend=backend, dry_run=True)
    finally:
        await backend.shutdown()


def test_engine_outside_a_running_loop_is_a_runtime_error():
    with pytest.raises(RuntimeError):
        WorkflowEngine(NoopExecutionBackend())


async def test_loop_check_is_looked_up_at_call_time(monkeypatch):
    calls = []

    class NoLoop(RuntimeError):
        pass

    def refuse(name='x'):
        calls.append(name)
        raise NoLoop('patched: no loop for ' + name)

    monkeypatch.setattr(workflow_manager, '_get_event_loop_or_raise', refuse)
    with pytest.raises(NoLoop):
        await WorkflowEngine.create(dry_run=True)
    assert calls

    def allow(name='x'):
        calls.append(('allowed', name))
        return asyncio.get_running_loop()

    monkeypatch.setattr(workflow_manager, '_get_event_loop_or_raise', allow)
    del calls[:]
    eng = await WorkflowEngine.create(dry_run=True)
    await eng.shutdown()
    assert calls and all(c[0] == 'allowed' for c in calls)


def test_get_event_loop_or_raise_without_loop_raises():
    with pytest.raises(RuntimeError):
        workflow_manager._get_event_loop_or_raise('WorkflowEngine')


# -------------------------------------------------------------- attributes

async def test_attributes(tmp_path, monkeypatch):
    monkeypatch.delenv('RADICAL_ASYNCFLOW_PROFILE')      # the profiler as users get it
    backend = RecordingBackend()
    backend.session.path = str(tmp_path / 'session')
    os.makedirs(backend.session.path)
    eng = await WorkflowEngine.create(backend=backend)
    try:
        assert eng.loop is asyncio.get_running_loop()
        assert eng.backend is backend
        assert eng.dry_run is False
        assert eng.work_dir == str(tmp_path / 'session')
        assert isinstance(eng.log, ru.Logger)
        assert isinstance(eng.prof, ru.Profiler)
    finally:
        await eng.shutdown()


async def test_create_does_no_network_io(monkeypatch):
    """Creating an engine must not block its loop on DNS/NTP (offline compute nodes)."""
    monkeypatch.delenv('RADICAL_ASYNCFLOW_PROFILE')
    lookups = []

    def no_dns(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, 'no network in this test')

    monkeypatch.setattr(socket, 'getaddrinfo', no_dns)
    eng = await WorkflowEngine.create(dry_run=True)
    await eng.shutdown()
    assert lookups == []


async def test_work_dir_defaults_to_the_cwd(tmp_path):
    backend = RecordingBackend()
    backend.session.path = None
    eng = await WorkflowEngine.create(backend=backend)
    try:
        assert eng.work_dir == os.getcwd() == str(tmp_path)
    finally:
        await eng.shutdown()


def test_constants_are_importable_and_distinct():
    assert len({TASK, BLOCK, FUNCTION, EXECUTABLE}) == 4


@pytest.mark.parametrize('name, params', [
    ('run', ['self']),
    ('submit', ['self']),
    ('execute_block', ['self', 'block_fut', 'func', 'args', 'kwargs']),
    ('handle_task_success', ['self', 'task', 'task_fut']),
    ('handle_task_failure', ['self', 'task', 'task_fut', 'override_error_message']),
    ('handle_task_cancellation', ['self', 'task', 'task_fut']),
    ('task_callbacks', ['self', 'task', 'state', 'service_callback']),
    ('shutdown', ['self', 'skip_execution_backend']),
])
def test_documented_method_signatures(name, params):
    sig = inspect.signature(getattr(WorkflowEngine, name))
    assert list(sig.parameters) == params
    if name == 'execute_block':
        assert sig.parameters['args'].kind is inspect.Parameter.VAR_POSITIONAL
        assert sig.parameters['kwargs'].kind is inspect.Parameter.VAR_KEYWORD
    if name == 'handle_task_failure':
        assert sig.parameters['override_error_message'].default is None
    if name == 'task_callbacks':
        assert sig.parameters['service_callback'].default is None
    if name == 'shutdown':
        assert sig.parameters['skip_execution_backend'].default is False
    is_async = name in ('run', 'submit', 'execute_block', 'shutdown')
    assert inspect.iscoroutinefunction(getattr(WorkflowEngine, name)) is is_async


def test_create_signature():
    sig = inspect.signature(WorkflowEngine.create)
    params = list(sig.parameters.values())
    assert [(p.name, p.default) for p in params[:3]] == \
        [('backend', None), ('dry_run', False), ('implicit_data', True)]
    for extra in params[3:]:        # later additions must stay optional
        assert extra.default is not inspect.Parameter.empty or \
            extra.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    assert inspect.iscoroutinefunction(WorkflowEngine.create)


async def test_internal_coroutines_run_after_create(rec):
    eng, _ = rec
    for task in (eng._run_task, eng._submit_task):
        assert isinstance(task, asyncio.Task)
        assert not task.done()
    assert isinstance(eng._shutdown_event, asyncio.Event)
    assert not eng._shutdown_event.is_set()


# -------------------------------------------------------------- decorators

async def test_decorators_bare_and_called(engine):
    @engine.function_task
    async def f1(x):
        return x + 1

    @engine.function_task()
    async def f2(x):
        return x + 2

    @engine.function_task(service=False)
    async def f3(x):
        return x + 3

    @engine.executable_task
    async def e1():
        return 'echo e1'

    @engine.executable_task()
    async def e2():
        return 'echo e2'

    @engine.block
    async def b1(x):
        return await f1(x)

    @engine.block()
    async def b2(x):
        return await f2(x)

    results = await asyncio.wait_for(asyncio.gather(
        f1(0), f2(0), f3(0), e1(), e2(), b1(10), b2(10)), WAIT)
    assert results == [1, 2, 3, 'e1\n', 'e2\n', 11, 12]


async def test_service_flag_reaches_the_backend(rec):
    eng, backend = rec

    @eng.function_task(service=True)
    async def svc():
        return None

    @eng.function_task
    async def plain():
        return None

    s, p = svc(), plain()
    await asyncio.wait_for(asyncio.gather(s, p), WAIT)
    assert backend.task(uid_of(eng, s))['is_service'] is True
    assert backend.task(uid_of(eng, p))['is_service'] is False


# ---------------------------------------------------- futures and ordering

async def test_call_returns_a_future_at_once_and_runs_nothing(rec):
    eng, backend = rec
    called = []

    @eng.function_task
    async def t():
        called.append(1)

    @eng.executable_task
    async def e():
        called.append(2)
        return 'true'

    futs = [t(), e()]
    for fut in futs:
        assert isinstance(fut, asyncio.Future)
        assert not fut.done()
    assert backend.submitted == []
    assert called == []
    await asyncio.wait_for(asyncio.gather(*futs), WAIT)
    assert len(backend.submitted) == 2


async def test_nothing_runs_before_its_dependencies_finish(engine):
    log = []
    gate, started = asyncio.Event(), asyncio.Event()

    @engine.function_task
    async def producer():
        started.set()
        await gate.wait()
        log.append(('producer-end', time.monotonic()))
        return 20

    @engine.function_task
    async def consumer(x):
        log.append(('consumer-start', time.monotonic()))
        return x + 1

    @engine.executable_task
    async def command(x):
        log.append(('command-built', time.monotonic()))
        return f'echo {x}'

    @engine.function_task
    async def unrelated():
        return 'u'

    p = producer()
    c = consumer(p)
    e = command(p)
    await asyncio.wait_for(started.wait(), WAIT)
    # An independent task goes all the way through the engine meanwhile.
    assert await asyncio.wait_for(unrelated(), WAIT) == 'u'
    assert log == []
    assert not c.done() and not e.done()
    gate.set()
    assert await asyncio.wait_for(c, WAIT) == 21
    assert await asyncio.wait_for(e, WAIT) == '20\n'
    names = [name for name, _ in log]
    assert names[0] == 'producer-end'
    assert sorted(names[1:]) == ['command-built', 'consumer-start']
    assert all(log[0][1] <= t for _, t in log[1:])


async def test_dependencies_in_args_kwargs_lists_and_tuples(engine):
    @engine.function_task
    async def val(v):
        return v

    @engine.function_task
    async def collect(a, b, *, c, d):
        return a, b, c, d

    fut = collect(val(1), [val(2), 'lit'], c=val(3), d=(val(4), 5))
    assert await asyncio.wait_for(fut, WAIT) == (1, [2, 'lit'], 3, (4, 5))


async def test_dependency_edges_for_each_argument_form(rec):
    eng, backend = rec

    @eng.function_task
    async def t(*args, **kwargs):
        return None

    a, b, c, d = t(), t(), t(), t()
    sink = t(a, [b], x=c, y=(d,))
    await asyncio.wait_for(sink, WAIT)
    srcs = {src for src, dst in backend.implicit if dst == uid_of(eng, sink)}
    assert srcs == {uid_of(eng, f) for f in (a, b, c, d)}


async def test_function_task_receives_dependency_results(engine):
    @engine.function_task
    async def make():
        return {'key': [1, 2, 3]}

    @engine.function_task
    async def use(data):
        assert not isinstance(data, asyncio.Future)
        return sum(data['key'])

    assert await asyncio.wait_for(use(make()), WAIT) == 6


async def test_executable_returns_stdout(engine):
    @engine.executable_task
    async def hello(who):
        return f'echo hello {who}; echo second line'

    @engine.function_task
    async def who():
        return 'world'

    assert await asyncio.wait_for(hello(who()), WAIT) == 'hello world\nsecond line\n'


# --------------------------------------------------------- task_description

async def test_task_description_default_and_override(rec):
    eng, backend = rec

    @eng.executable_task
    async def t(task_description={'ranks': 2, 'gpus_per_rank': 1, 'pre_exec': ['a']}):
        return 'true'

    default = t()
    override = t(task_description={'gpus_per_rank': 4, 'environment': {'X': '1'}})
    again = t()
    await asyncio.wait_for(asyncio.gather(default, override, again), WAIT)
    desc = lambda f: backend.task(uid_of(eng, f))['task_backend_specific_kwargs']
    assert desc(default) == {'ranks': 2, 'gpus_per_rank': 1, 'pre_exec': ['a']}
    assert desc(override) == {'ranks': 2, 'gpus_per_rank': 4, 'pre_exec': ['a'],
                              'environment': {'X': '1'}}
    assert desc(again) == desc(default)    # the override did not leak into the default


async def test_task_description_at_call_time_only(rec):
    eng, backend = rec

    @eng.function_task
    async def t(x):
        return x

    fut = t(1, task_description={'cores': 8})
    plain = t(2)
    await asyncio.wait_for(asyncio.gather(fut, plain), WAIT)
    assert backend.task(uid_of(eng, fut))['task_backend_specific_kwargs'] == {'cores': 8}
    assert not backend.task(uid_of(eng, plain))['task_backend_specific_kwargs']
    assert 'task_description' not in backend.task(uid_of(eng, fut))['kwargs']


# --------------------------------------------------------------------- data

async def test_implicit_data_linked_once_per_edge(rec):
    eng, backend = rec

    @eng.function_task
    async def t(*args, **kwargs):
        return None

    a = t()
    b = t(a)
    c = t(a)
    d = t(b, c, [b], x=a)         # b passed twice: still one edge
    await asyncio.wait_for(d, WAIT)
    u = {f: uid_of(eng, f) for f in (a, b, c, d)}
    assert collections.Counter(backend.implicit) == collections.Counter({
        (u[a], u[b]): 1, (u[a], u[c]): 1, (u[b], u[d]): 1, (u[c], u[d]): 1, (u[a], u[d]): 1})


async def test_no_implicit_links_when_disabled():
    backend = RecordingBackend()
    eng = await WorkflowEngine.create(backend=backend, implicit_data=False)
    try:
        @eng.function_task
        async def t(*args):
            return None

        a = t()
        await asyncio.wait_for(t(t(a), a), WAIT)
        assert len(backend.submitted) == 3
        assert backend.implicit == []
    finally:
        await eng.shutdown()


async def test_explicit_data_from_a_producer(rec):
    eng, backend = rec

    @eng.function_task
    async def produce(out):
        return None

    @eng.function_task
    async def consume(dep, inp):
        return None

    p = produce(OutputFile('x.txt'))
    c = consume(p, InputFile('x.txt'))
    other = consume(p, 'not a file')
    await asyncio.wait_for(asyncio.gather(c, other), WAIT)
    assert len(backend.explicit) == 1
    args, kwargs = backend.explicit[0]
    assert args == ()
    assert set(kwargs) == {'src_task', 'dst_task', 'file_name', 'file_path'}
    assert kwargs['src_task']['uid'] == uid_of(eng, p)
    assert kwargs['dst_task']['uid'] == uid_of(eng, c)
    assert kwargs['file_name'] == 'x.txt'


async def test_explicit_data_from_an_existing_local_path(rec, tmp_path):
    eng, backend = rec
    path = tmp_path / 'input' / 'data.csv'
    path.parent.mkdir()
    path.write_text('1,2\n')

    @eng.function_task
    async def consume(inp):
        return None

    c = consume(InputFile(str(path)))
    await asyncio.wait_for(c, WAIT)
    assert len(backend.explicit) == 1
    args, kwargs = backend.explicit[0]
    assert args == ()
    assert kwargs['src_task'] is None
    assert kwargs['dst_task']['uid'] == uid_of(eng, c)
    assert kwargs['file_name'] == 'data.csv'
    assert kwargs['file_path'] == str(path)


async def test_explicit_data_from_a_url(rec):
    eng, backend = rec
    url = 'https://example.org/datasets/in.json'

    @eng.function_task
    async def consume(inp):
        return None

    c = consume(InputFile(url))
    await asyncio.wait_for(c, WAIT)
    assert len(backend.explicit) == 1
    _, kwargs = backend.explicit[0]
    assert kwargs['src_task'] is None
    assert kwargs['dst_task']['uid'] == uid_of(eng, c)
    assert kwargs['file_name'] == 'in.json'
    assert kwargs['file_path'] == url


async def test_missing_input_file_fails_the_task(rec, tmp_path):
    eng, backend = rec

    @eng.function_task
    async def needs_missing(inp):
        return None

    fut = needs_missing(InputFile(str(tmp_path / 'nobody_makes_this.txt')))
    with pytest.raises(FileNotFoundError, match='needs_missing'):
        await asyncio.wait_for(fut, WAIT)
    assert backend.submitted == []


# ------------------------------------------------------------------- blocks

async def test_block_returns_its_value(engine):
    @engine.function_task
    async def sq(x):
        return x * x

    @engine.block
    async def sum_of_squares(n):
        return sum(await asyncio.gather(*[sq(i) for i in range(n)]))

    assert await asyncio.wait_for(sum_of_squares(4), WAIT) == 0 + 1 + 4 + 9


async def test_nested_blocks(engine):
    @engine.function_task
    async def inc(x):
        return x + 1

    @engine.block
    async def inner(x):
        return await inc(inc(x))

    @engine.block
    async def middle(x):
        a, b = await asyncio.gather(inner(x), inner(x + 10))
        return a + b

    @engine.block
    async def outer():
        return [await middle(0), await middle(100)]

    assert await asyncio.wait_for(outer(), WAIT) == [2 + 12, 102 + 112]


async def test_block_depends_on_a_task_future(engine):
    seen = []

    @engine.function_task
    async def five():
        return 5

    @engine.function_task
    async def sq(x):
        return x * x

    @engine.block
    async def blk(dep):
        seen.append(dep.done() if isinstance(dep, asyncio.Future) else True)
        return await sq(dep)       # a future or its value both work

    assert await asyncio.wait_for(blk(five()), WAIT) == 25
    assert seen == [True]


async def test_task_depends_on_a_block_future(engine):
    log = []

    @engine.function_task
    async def one(i):
        return i

    @engine.block
    async def blk():
        values = await asyncio.gather(one(1), one(2))
        log.append('block-end')
        return sum(values)

    @engine.function_task
    async def after(x):
        log.append('after-start')
        return x * 10

    assert await asyncio.wait_for(after(blk()), WAIT) == 30
    assert log == ['block-end', 'after-start']


# ------------------------------------------------------------------ failure

async def test_function_exception_reaches_the_future(engine):
    @engine.function_task
    async def boom():
        raise ValueError('boom 42')

    with pytest.raises(ValueError, match='boom 42'):
        await asyncio.wait_for(boom(), WAIT)


async def test_failing_command_raises_runtime_error_with_stderr(engine):
    @engine.executable_task
    async def bad():
        return 'echo "something broke here" >&2; exit 3'

    with pytest.raises(RuntimeError) as info:
        await asyncio.wait_for(bad(), WAIT)
    assert 'something broke here' in str(info.value)


async def test_dependents_of_a_failure_get_dependency_failure(engine):
    ran = []

    @engine.function_task
    async def boom():
        raise ValueError('root problem')

    @engine.function_task
    async def after(x):
        ran.append(x)

    a = boom()
    b = after(a)
    with pytest.raises(DependencyFailure) as info:
        await asyncio.wait_for(b, WAIT)
    error = info.value
    assert error.failed_dependencies == ['boom']
    assert error.root_cause is a.exception()
    assert isinstance(error.root_cause, ValueError)
    assert error.__cause__ is error.root_cause
    assert ran == []


async def test_dependency_failure_is_transitive(engine):
    ran = []

    @engine.function_task
    async def boom():
        raise KeyError('deep root')

    @engine.function_task
    async def step1(x):
        ran.append(1)

    @engine.function_task
    async def step2(x):
        ran.append(2)

    @engine.function_task
    async def step3(x, y):
        ran.append(3)

    a = boom()
    s1 = step1(a)
    s2 = step2(s1)
    s3 = step3(s2, 'other')
    await asyncio.wait([s3], timeout=WAIT)
    for fut, failed in ((s1, 'boom'), (s2, 'step1'), (s3, 'step2')):
        error = fut.exception()
        assert isinstance(error, DependencyFailure)
        assert error.failed_dependencies == [failed]
        assert error.root_cause is a.exception()
        assert error.__cause__ is a.exception()
    assert ran == []


async def test_dependent_registered_after_the_failure(engine):
    ran = []

    @engine.executable_task
    async def bad():
        return 'echo nope >&2; exit 1'

    @engine.function_task
    async def late(x):
        ran.append(x)

    a = bad()
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(a, WAIT)
    b = late(a)
    with pytest.raises(DependencyFailure) as info:
        await asyncio.wait_for(b, WAIT)
    assert info.value.failed_dependencies == ['bad']
    assert info.value.root_cause is a.exception()
    assert 'nope' in str(info.value.root_cause)
    assert ran == []


async def test_dependency_failure_names_every_failed_dependency(engine):
    @engine.function_task
    async def first():
        raise ValueError('first problem')

    @engine.function_task
    async def second():
        raise KeyError('second problem')

    @engine.function_task
    async def fine():
        return 1

    @engine.function_task
    async def join(*values):
        return values

    a, b, c = first(), second(), fine()
    await asyncio.wait([a, b, c], timeout=WAIT)
    with pytest.raises(DependencyFailure) as info:
        await asyncio.wait_for(join(a, c, b), WAIT)
    error = info.value
    assert error.failed_dependencies == ['first', 'second']
    assert str(error).startswith("Cannot execute 'join' due to dependency failure")
    assert a._af_record.uid in str(error) and b._af_record.uid in str(error)
    assert error.root_cause is a.exception()


async def test_failing_block_fails_its_dependents(engine):
    @engine.block
    async def bad_block():
        raise OSError('block broke')

    @engine.function_task
    async def after(x):
        return x

    b = bad_block()
    d = after(b)
    with pytest.raises(OSError):
        await asyncio.wait_for(b, WAIT)
    with pytest.raises(DependencyFailure) as info:
        await asyncio.wait_for(d, WAIT)
    assert isinstance(info.value.root_cause, OSError)


# ------------------------------------------------------------- cancellation

async def test_cancel_a_waiting_task_cancels_its_dependents(engine):
    ran = []
    gate, started = asyncio.Event(), asyncio.Event()

    @engine.function_task
    async def producer():
        started.set()
        await gate.wait()
        return 'p'

    @engine.function_task
    async def dep(x, name):
        ran.append(name)
        return name

    p = producer()
    b = dep(p, 'b')
    c = dep(b, 'c')
    d = dep([c], 'd')
    side = dep(p, 'side')
    await asyncio.wait_for(started.wait(), WAIT)
    assert b.cancel()
    await asyncio.wait([c, d], timeout=WAIT)
    assert b.cancelled() and c.cancelled() and d.cancelled()
    late = dep(c, 'late')
    await asyncio.wait([late], timeout=WAIT)
    assert late.cancelled()
    assert not p.done()
    gate.set()
    assert await asyncio.wait_for(p, WAIT) == 'p'
    assert await asyncio.wait_for(side, WAIT) == 'side'
    assert ran == ['side']


async def test_cancel_a_running_command_kills_it(tmp_path):
    backend = await SpyConcurrentBackend(ThreadPoolExecutor(max_workers=2))
    eng = await WorkflowEngine.create(backend=backend)
    try:
        fifo = make_fifo(tmp_path)

        @eng.executable_task
        async def sleeper():
            return f'echo $$ > {fifo}; exec sleep 30'

        @eng.function_task
        async def after(x):
            return x

        fut = sleeper()
        dependent = after(fut)
        pid = int(await read_fifo(fifo))
        assert alive(pid)
        fut.cancel()
        try:
            await asyncio.wait_for(backend.canceled_reported.wait(), WAIT)
        except asyncio.TimeoutError:
            pytest.fail(f'backend never reported CANCELED; cancel_task calls: '
                        f'{backend.cancel_calls}')
        assert backend.cancel_calls == [uid_of(eng, fut)]
        assert not alive(pid)
        await asyncio.wait([dependent], timeout=WAIT)
        assert dependent.cancelled()
    finally:
        await eng.shutdown()


# ----------------------------------------------------------------- shutdown

async def test_shutdown_cancels_pending_and_stops_everything():
    backend = HoldingBackend()
    eng = await WorkflowEngine.create(backend=backend)

    @eng.function_task
    async def t(*args):
        return None

    held = t()
    waiting = t(held)
    await asyncio.wait_for(backend.got_tasks.wait(), WAIT)
    await asyncio.wait_for(eng.shutdown(), WAIT)
    assert held.cancelled() and waiting.cancelled()
    assert eng._run_task.done() and eng._submit_task.done()
    assert eng._shutdown_event.is_set()
    assert backend.shutdowns == 1
    assert backend.state() == 'STOPPED'


async def test_shutdown_can_leave_the_backend_running():
    backend = HoldingBackend()
    eng = await WorkflowEngine.create(backend=backend)
    try:
        @eng.function_task
        async def t():
            return None

        held = t()
        await asyncio.wait_for(backend.got_tasks.wait(), WAIT)
        await asyncio.wait_for(eng.shutdown(skip_execution_backend=True), WAIT)
        assert held.cancelled()
        assert eng._run_task.done() and eng._submit_task.done()
        assert backend.shutdowns == 0
        assert backend.state() == 'RUNNING'
    finally:
        await backend.shutdown()


async def test_shutdown_is_idempotent():
    backend = RecordingBackend()
    eng = await WorkflowEngine.create(backend=backend)
    await eng.shutdown()
    await eng.shutdown()
    await asyncio.gather(eng.shutdown(), eng.shutdown())
    assert backend.shutdowns == 1


async def test_shutdown_of_a_real_backend_stops_running_commands(tmp_path):
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=2))
    eng = await WorkflowEngine.create(backend=backend)
    fifo = make_fifo(tmp_path)

    @eng.executable_task
    async def sleeper():
        return f'echo $$ > {fifo}; exec sleep 30'

    fut = sleeper()
    pid = int(await read_fifo(fifo))
    assert alive(pid)
    await asyncio.wait_for(eng.shutdown(), WAIT)
    assert fut.cancelled()
    assert not alive(pid)


# --------------------------------------------------------------- components

async def test_components_mapping(engine):
    @engine.function_task
    async def t():
        return 1

    @engine.block
    async def b():
        return 2

    tf, bf = t(task_description={'cores': 2}), b()
    for fut, kind in ((tf, TASK), (bf, BLOCK)):
        comp = engine.components[uid_of(engine, fut)]
        assert set(comp) >= {'future', 'description', 'type'}
        assert comp['future'] is fut
        assert isinstance(comp['description'], dict)
        assert comp['type'] == kind
    assert await asyncio.wait_for(asyncio.gather(tf, bf), WAIT) == [1, 2]


# ---------------------------------------------------------- backend threads

class ThreadedBackend(NoopExecutionBackend):
    """Runs each batch in a thread of its own and reports from there."""

    def __init__(self):
        super().__init__()
        self.threads = []
        self.report_threads = set()

    async def submit_tasks(self, tasks):
        def work():
            states = self.get_task_states_map()
            self.report_threads.add(threading.get_ident())
            for task in tasks:
                self.task_state_cb(task, states.RUNNING)
                (x,) = task['args']
                if x < 0:
                    task['exception'] = ValueError(f'negative {x}')
                    self.task_state_cb(task, states.FAILED)
                else:
                    task['return_value'] = x * 10
                    self.task_state_cb(task, states.DONE)

        thread = threading.Thread(target=work)
        self.threads.append(thread)
        thread.start()


class ThreadRecordingEngine(WorkflowEngine):
    handler_threads: set

    def handle_task_success(self, task, task_fut):
        self.handler_threads.add(threading.get_ident())
        return super().handle_task_success(task, task_fut)

    def handle_task_failure(self, task, task_fut, override_error_message=None):
        self.handler_threads.add(threading.get_ident())
        return super().handle_task_failure(task, task_fut, override_error_message)


async def test_callbacks_from_another_thread_resolve_futures():
    backend = ThreadedBackend()
    eng = await ThreadRecordingEngine.create(backend=backend)
    eng.handler_threads = set()
    try:
        @eng.function_task
        async def t(x):
            return None

        futs = [t(i) for i in range(50)]
        chained = t(futs[7])           # gets 70 in the "thread"
        bad = t(-1)
        assert await asyncio.wait_for(asyncio.gather(*futs), WAIT) == [i * 10 for i in range(50)]
        assert await asyncio.wait_for(chained, WAIT) == 700
        with pytest.raises(ValueError, match='negative -1'):
            await asyncio.wait_for(bad, WAIT)
        assert threading.get_ident() not in backend.report_threads
        assert eng.handler_threads == {threading.get_ident()}
    finally:
        await eng.shutdown()
        for thread in backend.threads:
            thread.join(WAIT)


async def test_callback_for_an_unknown_task_is_ignored(engine):
    states = engine.backend.get_task_states_map()
    engine.task_callbacks({'uid': 'task.999999', 'name': 'ghost', 'return_value': 1},
                          states.DONE)
    thread = threading.Thread(target=engine.task_callbacks,
                              args=({'uid': 'task.999998', 'name': 'ghost'}, states.FAILED))
    thread.start()
    thread.join(WAIT)

    @engine.function_task
    async def t():
        return 'still works'

    assert await asyncio.wait_for(t(), WAIT) == 'still works'
    assert 'task.999999' not in engine.components
    assert 'task.999998' not in engine.components


class FailingSubmitBackend(RecordingBackend):
    """Refuses its first batch."""

    def __init__(self):
        super().__init__()
        self.refused = []

    async def submit_tasks(self, tasks):
        if not self.refused:
            self.refused.extend(t['uid'] for t in tasks)
            raise RuntimeError('no allocation left')
        await super().submit_tasks(tasks)


async def test_backend_submit_error_fails_the_tasks():
    backend = FailingSubmitBackend()
    eng = await WorkflowEngine.create(backend=backend)
    try:
        @eng.function_task
        async def t(*args):
            return None

        a, b = t(), t()
        dependent = t(a)
        done, pending = await asyncio.wait([a, b, dependent], timeout=WAIT)
        assert not pending, 'futures hang after the backend refused them'
        assert backend.refused
        for fut in (a, b):
            if uid_of(eng, fut) in backend.refused:
                assert isinstance(fut.exception(), Exception)
                assert 'no allocation left' in str(fut.exception())
        assert uid_of(eng, a) in backend.refused
        assert isinstance(dependent.exception(), DependencyFailure)
        # The engine keeps working after the refusal.
        assert await asyncio.wait_for(t(), WAIT) is None
    finally:
        await eng.shutdown()


# -------------------------------------------------------------------- scale

async def test_thousand_deep_chain(engine):
    @engine.function_task
    async def inc(x):
        return x + 1

    fut = inc(0)
    for _ in range(999):
        fut = inc(fut)
    assert await asyncio.wait_for(fut, 30) == 1000


async def test_fan_out_fan_in_of_a_thousand(engine):
    @engine.function_task
    async def source():
        return 3

    @engine.function_task
    async def mul(x, i):
        return x * i

    @engine.function_task
    async def total(*parts):
        return len(parts), sum(parts)

    src = source()
    fut = total(*[mul(src, i) for i in range(1000)])
    assert await asyncio.wait_for(fut, 30) == (1000, 3 * sum(range(1000)))


# ------------------------------------------------------- backend lifecycles

@pytest.mark.parametrize('make', [
    lambda: NoopExecutionBackend(),
    lambda: ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=1)),
], ids=['noop', 'concurrent'])
async def test_backends_are_awaitable_creatable_and_context_managers(make):
    backend = make()
    assert await backend is backend
    await backend.shutdown()
    assert backend.state() == 'STOPPED'

    created = await type(make()).create(*([] if isinstance(backend, NoopExecutionBackend)
                                          else [ThreadPoolExecutor(max_workers=1)]))
    assert isinstance(created, type(backend))
    assert created.state() == 'RUNNING'
    await created.shutdown()

    async with make() as managed:
        assert managed.state() == 'RUNNING'
        eng = await WorkflowEngine.create(backend=managed)

        @eng.function_task
        async def t():
            return 'ok'

        await asyncio.wait_for(t(), WAIT)
        await eng.shutdown(skip_execution_backend=True)
    assert managed.state() == 'STOPPED'
