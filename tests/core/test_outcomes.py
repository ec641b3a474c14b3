"""EngineReporter: reports from other threads reach the loop in order, in slices.

A storm of reports queued from another thread is handled a slice at a time
(reporter.DRAIN_SLICE seconds), so the loop's other callbacks run between
slices instead of waiting for the whole storm; nothing is lost or reordered.
"""

import asyncio
import threading

from radical.asyncflow import WorkflowEngine
from radical.asyncflow.core import reporter
from radical.asyncflow.backends.execution.base import ExecutionBackend, Session
from radical.asyncflow.constants import StateMapper

TASKS = 1000
WAIT = 30


class HeldBackend(ExecutionBackend):
    """Keeps what it is given; the test reports on it."""

    _NATIVE = True
    reports_running = True

    def __init__(self):
        self._name = 'held'
        self.session = Session()
        StateMapper.register_backend_states_with_defaults('held')
        self.specs = []
        self.reporter = None

    async def submit(self, tasks, reporter):
        self.specs.extend(tasks)
        self.reporter = reporter

    async def cancel_task(self, uid):
        return False

    async def shutdown(self):
        pass

    def state(self):
        return 'RUNNING'

    def get_task_states_map(self):
        return StateMapper('held')


async def test_a_storm_of_reports_is_handled_in_slices_in_order(monkeypatch):
    monkeypatch.setattr(reporter, 'DRAIN_SLICE', 0.0)    # 256 reports per loop turn
    backend = HeldBackend()
    engine = await WorkflowEngine.create(backend=backend, progress=False)
    try:
        @engine.function_task
        async def task(i):
            return None

        futures = [task(i) for i in range(TASKS)]
        while len(backend.specs) < TASKS:
            await asyncio.sleep(0)

        def storm():
            for spec in backend.specs:
                backend.reporter.running(spec)
            for spec in backend.specs:
                backend.reporter.done(spec, spec.args[0])

        thread = threading.Thread(target=storm)
        thread.start()
        thread.join(WAIT)           # the loop waits here: all 2,000 reports are queued
        done_at_next_turn = []
        asyncio.get_running_loop().call_soon(
            lambda: done_at_next_turn.append(sum(f.done() for f in futures)))

        assert await asyncio.wait_for(asyncio.gather(*futures), WAIT) == list(range(TASKS))
        assert done_at_next_turn[0] < TASKS     # the loop had a turn amid the storm
        assert engine._outcomes.dropped == 0    # every RUNNING came before its DONE
        assert engine._reporter._pending == [] and not engine._reporter._scheduled
    finally:
        await engine.shutdown()


async def test_reports_that_arrive_while_a_storm_is_drained_are_handled():
    backend = HeldBackend()
    engine = await WorkflowEngine.create(backend=backend, progress=False)
    try:
        @engine.function_task
        async def task(i):
            return None

        futures = [task(i) for i in range(TASKS)]
        while len(backend.specs) < TASKS:
            await asyncio.sleep(0)
        halves = backend.specs[::2], backend.specs[1::2]

        def storm(specs):
            for spec in specs:
                backend.reporter.running(spec)
                backend.reporter.done(spec, spec.args[0])

        threads = [threading.Thread(target=storm, args=(half,)) for half in halves]
        for thread in threads:
            thread.start()
        assert await asyncio.wait_for(asyncio.gather(*futures), WAIT) == list(range(TASKS))
        for thread in threads:
            thread.join(WAIT)
        assert engine._outcomes.dropped == 0
    finally:
        await engine.shutdown()
