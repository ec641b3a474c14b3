"""A workflow scope, and a block's backend, belong to their engine (issue 22).

Inside ``async with engine1.workflow_scope('wf-A')`` a task of another engine
created in the same coroutine is not part of 'wf-A'; a block of engine1 that
creates tasks of engine2 does not hand them its workflow or its backend.
"""

import asyncio

from radical.asyncflow import NoopExecutionBackend, WorkflowEngine

WAIT = 20


def workflow_of(future):
    return future._af_record.workflow_id


async def _engines():
    one = await WorkflowEngine.create(backend=[NoopExecutionBackend(name='a'),
                                               NoopExecutionBackend(name='b')],
                                      progress=False)
    two = await WorkflowEngine.create(backend=NoopExecutionBackend(name='other'),
                                      progress=False)
    return one, two


async def test_a_scope_stamps_only_its_own_engines_tasks():
    one, two = await _engines()
    try:
        @one.function_task
        async def first():
            return 1

        @two.function_task
        async def second():
            return 2

        async with one.workflow_scope('wf-A'):
            mine, theirs = first(), second()
            async with two.workflow_scope('wf-B'):
                mine_inner, theirs_inner = first(), second()
            mine_after = first()
        await asyncio.wait_for(asyncio.gather(mine, theirs, mine_inner, theirs_inner,
                                              mine_after), WAIT)
    finally:
        await one.shutdown()
        await two.shutdown()
    assert workflow_of(mine) == 'wf-A'
    assert workflow_of(theirs) is None
    assert workflow_of(mine_inner) == 'wf-A'
    assert workflow_of(theirs_inner) == 'wf-B'
    assert workflow_of(mine_after) == 'wf-A'


async def test_a_block_passes_its_workflow_and_backend_to_its_engines_tasks_only():
    one, two = await _engines()
    made = {}
    try:
        @one.function_task
        async def first():
            return 1

        @two.function_task
        async def second():
            return 2

        @one.block(backend='b')
        async def mixed():
            made['mine'], made['theirs'] = first(), second()
            return await asyncio.gather(made['mine'], made['theirs'])

        async with one.workflow_scope('wf-A'):
            block = mixed()
        await asyncio.wait_for(block, WAIT)
    finally:
        await one.shutdown()
        await two.shutdown()
    assert workflow_of(made['mine']) == 'wf-A'
    assert workflow_of(made['theirs']) is None
    assert made['mine']._af_record.route.name == 'b'
    assert made['theirs']._af_record.route is None      # engine two's default backend
