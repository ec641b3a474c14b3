"""Several pilots in one RadicalExecutionBackend, on local.localhost: tasks spread
over them or pinned to one; a pilot lost mid-run fails only its own unfinished
tasks, with a cause naming it, and retries finish them on the other; a journal
resume repeats nothing that finished; a pilot that reaches its runtime is
replaced when the backend was asked to (``replace_pilots=True``).

The same on a real multi-node SLURM cluster (scancel of a pilot's job) is in
test_multinode.py.
"""

import asyncio

import pytest

rp = pytest.importorskip('radical.pilot')

from radical.asyncflow import RadicalExecutionBackend, WorkflowEngine  # noqa: E402
from radical.asyncflow.errors import BackendError, TaskExecutionError  # noqa: E402

pytestmark = [pytest.mark.rp, pytest.mark.timeout(900)]

WAIT = 300


def pilot(sandbox, cores=2, runtime=15):
    return {'resource': 'local.localhost', 'cores': cores, 'runtime': runtime,
            'sandbox': str(sandbox)}


def run(awaitable, timeout=WAIT):
    return asyncio.wait_for(awaitable, timeout)


async def test_tasks_spread_over_pilots_or_pinned_to_one(tmp_path):
    backend = await run(RadicalExecutionBackend([pilot(tmp_path), pilot(tmp_path)],
                                                work_dir=str(tmp_path)))
    try:
        uids = [p.uid for p in backend.pilots]
        assert len(uids) == 2 and all(p.state == rp.PMGR_ACTIVE for p in backend.pilots)
        engine = await WorkflowEngine.create(backend=backend, progress=False)

        @engine.executable_task
        async def where(i):
            return 'sleep 1; echo $RP_PILOT_ID'

        spread = await run(asyncio.gather(*[where(i) for i in range(8)]))
        pinned = await run(asyncio.gather(*[where(i, task_description={'pilot': 1})
                                            for i in range(4)]))
        assert {out.strip() for out in spread} == set(uids)
        assert {out.strip() for out in pinned} == {uids[1]}
        with pytest.raises(ValueError, match=r"task_description 'pilot' must be the index of "
                                             r"one of the 2 pilots given \(0 to 1\)"):
            await run(where(0, task_description={'pilot': 2}))
        await engine.shutdown(skip_execution_backend=True)
    finally:
        await run(backend.shutdown())


async def test_a_lost_pilot_fails_only_its_tasks_and_retries_finish_elsewhere(tmp_path):
    journal = str(tmp_path / 'campaign.db')
    marks = tmp_path / 'ran.log'
    backend = await run(RadicalExecutionBackend([pilot(tmp_path), pilot(tmp_path)],
                                                work_dir=str(tmp_path)))
    try:
        lost, kept = [p.uid for p in backend.pilots]
        engine = await WorkflowEngine.create(backend=backend, journal=journal, progress=False)

        @engine.executable_task(retries=1, retry_backoff=0)
        async def resilient(i):
            return f'sleep 20; echo "resilient {i} $RP_PILOT_ID" >> {marks}; echo $RP_PILOT_ID'

        @engine.executable_task
        async def fragile(i):
            return f'sleep 20; echo "fragile {i} $RP_PILOT_ID" >> {marks}; echo $RP_PILOT_ID'

        @engine.executable_task
        async def quick(i):
            return f'echo "quick {i} $RP_PILOT_ID" >> {marks}; echo $RP_PILOT_ID'

        done = await run(asyncio.gather(*[quick(i) for i in range(2)]))
        on_lost = [resilient(i) for i in range(4)]     # round robin: two on each pilot
        doomed = fragile(0, task_description={'pilot': 0})
        survivor = fragile(1, task_description={'pilot': 1})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while engine.state_counts()['RUNNING'] < 4:
            assert loop.time() < deadline, engine.state_counts()
            await asyncio.sleep(0.5)
        backend.pmgr.cancel_pilots([lost])            # the pilot goes away mid-run
        cancelled = loop.time()
        with pytest.raises(TaskExecutionError) as info:
            await run(doomed)
        assert f'pilot {lost} on local.localhost ended' in str(info.value)
        assert (await run(survivor)).strip() == kept  # the other pilot's task lives on
        outputs = await run(asyncio.gather(*on_lost))
        assert all(out.strip() == kept for out in outputs)
        assert backend.lost_pilots == [lost]
        with pytest.raises(BackendError, match=f'pinned to pilot {lost}, which has ended'):
            await run(quick(9, task_description={'pilot': 0}))
        await engine.shutdown(skip_execution_backend=True)

        # On local.localhost a cancelled pilot's running commands are orphaned and
        # may still finish (and write): wait until they must have ended.
        await asyncio.sleep(max(0.0, cancelled + 25 - loop.time()))
        ran = marks.read_text().splitlines()
        # on the pilot that lived on, every task ran to its end once: its tasks were
        # not failed with the lost one's (RP 1.103 failed them all, and a retry
        # would have run them a second time there)
        on_kept = sorted(line.rsplit(' ', 1)[0] for line in ran if line.endswith(kept))
        assert [line for line in on_kept if not line.startswith('quick')] == \
            ['fragile 1', *[f'resilient {i}' for i in range(4)]], ran

        # a resume repeats nothing that finished: only the failed task runs again
        again = await WorkflowEngine.create(backend=backend, journal=journal, progress=False)

        @again.executable_task(retries=1, retry_backoff=0)
        async def resilient(i):                                   
            return f'sleep 20; echo "resilient {i} $RP_PILOT_ID" >> {marks}; echo $RP_PILOT_ID'

        @again.executable_task
        async def fragile(i):                                     
            return f'sleep 20; echo "fragile {i} $RP_PILOT_ID" >> {marks}; echo $RP_PILOT_ID'

        @again.executable_task
        async def quick(i):                                       
            return f'echo "quick {i} $RP_PILOT_ID" >> {marks}; echo $RP_PILOT_ID'

        assert await run(asyncio.gather(*[quick(i) for i in range(2)])) == done
        await run(asyncio.gather(*[resilient(i) for i in range(4)],
                                 fragile(0, task_description={'pilot': 1}),
                                 fragile(1, task_description={'pilot': 1})))
        rerun = marks.read_text().splitlines()[len(ran):]
        assert rerun == [f'fragile 0 {kept}'], rerun
        await again.shutdown(skip_execution_backend=True)
    finally:
        await run(backend.shutdown())


async def test_a_pilot_at_its_runtime_is_replaced(tmp_path):
    backend = await run(RadicalExecutionBackend(pilot(tmp_path, runtime=1),
                                                work_dir=str(tmp_path), replace_pilots=True))
    try:
        engine = await WorkflowEngine.create(backend=backend, progress=False)

        @engine.executable_task(retries=2, retry_backoff=0)
        async def step(i, *after):
            return 'sleep 12; echo $RP_PILOT_ID'

        last, outputs = None, []
        for i in range(8):                    # ~100 s of work for a 1-minute pilot
            last = step(i) if last is None else step(i, last)
            outputs.append(last)
        pilots = [out.strip() for out in await run(asyncio.gather(*outputs), 600)]
        first = backend.pilots[0].uid
        assert backend.lost_pilots[:1] == [first] and backend._pilots.replacements >= 1
        assert pilots[0] == first and pilots[-1] != first          # continued on the new one
        await engine.shutdown(skip_execution_backend=True)
    finally:
        await run(backend.shutdown())


FAILING_DRIVER = '''
import asyncio
from radical.asyncflow import RadicalExecutionBackend, WorkflowEngine

async def main():
    backend = await RadicalExecutionBackend({'resource': 'local.localhost', 'cores': 2,
                                             'runtime': 30, 'sandbox': %(dir)r},
                                            work_dir=%(dir)r, replace_pilots=True)
    engine = await WorkflowEngine.create(backend=backend, progress=False)

    @engine.executable_task
    async def broken():
        return 'exit 3'

    await broken()          # raises: neither shutdown() is reached

asyncio.run(main())
'''


def test_a_driver_that_raises_does_not_hang_on_its_pilot(tmp_path):
    """RP's threads kept the process alive (and the pilot its cores, for its whole
    runtime) when the event loop ended before shutdown(); now the backend closes
    its session when the loop that started it ends."""
    import subprocess
    import sys
    driver = tmp_path / 'driver.py'
    driver.write_text(FAILING_DRIVER % {'dir': str(tmp_path)})
    proc = subprocess.run([sys.executable, str(driver)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=WAIT)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "TaskExecutionError: executable task 'broken'" in proc.stderr, proc.stderr[-3000:]
