"""RadicalExecutionBackend's task phases under concurrent state callbacks.

RP calls back from its own threads while shutdown, cancellation and service
watchers act from others.  Without a pilot: the backend's callback is
hammered from several threads with random states of the same tasks, while
the loop cancels some of them and shuts the backend down.  Every task must be
reported final exactly once and nothing may follow its final report.
"""

import asyncio
import collections
import random
import sys
import threading

import pytest

rp = pytest.importorskip('radical.pilot')

from radical.asyncflow import RadicalExecutionBackend  # noqa: E402
from radical.asyncflow.backends.execution.radical_pilot.describe import TaskKind  # noqa: E402
from radical.asyncflow.backends.execution.radical_pilot.tasks import Submitted  # noqa: E402
from radical.asyncflow.backends.execution.dict_protocol import spec_from_dict  # noqa: E402

TASKS = 200
THREADS = 8
ROUNDS = 30
#: Fresh backends hammered; with threads switching every microsecond, a race
#: between the check of a phase and its change shows within a few of them.
REPEATS = 6
FINAL = ('done', 'failed', 'cancelled')


class FakeRPTask:
    """What the backend reads of an RP task."""

    def __init__(self, uid, sandbox):
        self.uid = uid
        self.stdout = 'out\n'
        self.stderr = 'err\n'
        self.exit_code = 1
        self.sandbox = f'file://localhost{sandbox}/{uid}'
        self.description = {}
        self.return_value = None
        self.exception = None
        self.exception_detail = None
        self.state = 'NEW'


class FakeTaskManager:
    def __init__(self):
        self.cancelled = []

    def cancel_tasks(self, uids):
        self.cancelled.extend(uids)

    def get_tasks(self):
        return []


class Reports:
    """A reporter that keeps every report per uid (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_uid = collections.defaultdict(list)

    def _add(self, spec, what):
        with self.lock:
            self.by_uid[spec.uid].append(what)

    def running(self, spec):
        self._add(spec, 'running')

    def done(self, spec, result):
        self._add(spec, 'done')

    def failed(self, spec, error):
        self._add(spec, 'failed')

    def cancelled(self, spec):
        self._add(spec, 'cancelled')


def hammer(backend, rp_tasks, seed):
    pick = random.Random(seed)
    states = [rp.AGENT_EXECUTING, rp.DONE, rp.FAILED, rp.CANCELED, rp.AGENT_EXECUTING]
    for _ in range(ROUNDS):
        for rp_task in pick.sample(rp_tasks, len(rp_tasks)):
            backend._on_rp_state(rp_task, pick.choice(states))


async def test_each_task_is_reported_final_exactly_once(tmp_path):
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for repeat in range(REPEATS):
            await hammer_one_backend(tmp_path / str(repeat))
    finally:
        sys.setswitchinterval(interval)


async def hammer_one_backend(tmp_path):
    tmp_path.mkdir()
    backend = RadicalExecutionBackend({'resource': 'local.localhost'}, work_dir=str(tmp_path))
    backend._state = 'RUNNING'                 # as if the pilot were up
    backend.tmgr = FakeTaskManager()
    backend.pilot_sandbox = str(tmp_path)
    reports = Reports()
    rp_tasks = []
    for i in range(TASKS):
        spec = spec_from_dict({'uid': f'stress.{i:06d}', 'name': 'x', 'executable': 'true'})
        backend._tasks.add(Submitted(spec, reports, TaskKind.EXECUTABLE, spec.uid))
        rp_tasks.append(FakeRPTask(spec.uid, str(tmp_path)))

    threads = [threading.Thread(target=hammer, args=(backend, rp_tasks, seed))
               for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for i in range(0, TASKS, 3):              # cancellations while the callbacks run
        await backend.cancel_task(f'stress.{i:06d}')
        await asyncio.sleep(0)
    await backend.shutdown()                  # and a shutdown in the middle of them
    for thread in threads:
        thread.join(60)

    assert len(reports.by_uid) == TASKS
    for uid, seen in reports.by_uid.items():
        finals = [what for what in seen if what in FINAL]
        assert len(finals) == 1, f'{uid} reported final {len(finals)} times: {seen}'
        assert seen[-1] in FINAL, f'{uid}: a report followed its final one: {seen}'
        assert seen.count('running') <= 1, f'{uid} reported running twice: {seen}'
