"""radical.analytics reads a run directory: ``ra.Session(run_dir, 'radical')``.

One profiled run (successes, a failure, a retried task); the session must
hold every task with its final state, as the run summary counts them, and
RUNNING → end durations equal to the profile's.  Cost: about 3 s (most of
it importing radical.analytics and pandas).
"""

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine
from radical.asyncflow.observability import plot
from radical.asyncflow.observability.monitor import SUMMARY_FILE

FINAL = ('DONE', 'FAILED', 'CANCELED')


async def _run(work_dir):
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(4))
    engine = await WorkflowEngine.create(backend=backend, work_dir=work_dir, profile=True,
                                         progress=False)
    tries = []

    @engine.function_task
    async def step(i):
        await asyncio.sleep(0.01 * (i % 3))
        return i

    @engine.function_task
    async def broken():
        raise ValueError('no')

    @engine.function_task(retries=1, retry_backoff=0)
    async def flaky():
        tries.append(1)
        if len(tries) < 2:
            raise RuntimeError('first attempt fails')
        return 'second'

    bad, retried = broken(), flaky()
    await asyncio.gather(*[step(i) for i in range(8)], retried)
    with pytest.raises(ValueError):
        await bad
    await engine.shutdown()
    return engine.run_dir, retried.uid


def test_radical_analytics_loads_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv('RADICAL_ASYNCFLOW_PROGRESS', '0')
    import radical.analytics as ra
    import radical.utils as ru

    run_dir, retried = asyncio.run(_run(str(tmp_path)))
    with open(os.path.join(run_dir, SUMMARY_FILE)) as handle:
        summary = json.load(handle)
    session = ra.Session(run_dir, 'radical')
    tasks = session.get(etype='task')
    assert len(tasks) == summary['tasks'] == 10
    finals = {}
    for task in tasks:
        final = [s for s in FINAL if s in task.states]
        assert len(final) == 1, (task.uid, sorted(task.states))
        finals[final[0]] = finals.get(final[0], 0) + 1
    assert finals == {s: n for s, n in summary['task_states'].items() if n}

    # RUNNING -> end as radical.analytics measures it, against the profile's bars
    ours = {bar.uid: bar.end - bar.start for bar in
            plot.intervals(plot.read_runs(plot.find_profile(run_dir))[-1])}
    compared = 0
    for task in tasks:
        end = next(s for s in FINAL if s in task.states)
        if 'RUNNING' not in task.states or task.uid == retried:
            continue       # radical.analytics spans a retried task from its first RUNNING
        theirs = task.duration(state=['RUNNING', end])
        assert theirs == pytest.approx(ours[task.uid], abs=1e-4), task.uid
        compared += 1
    assert compared >= 8
    assert session.t_start <= min(t.states['WAITING'][ru.TIME] for t in tasks)
