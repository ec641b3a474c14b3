"""The pilot choice of RadicalExecutionBackend's Pilots, against stand-ins of
RP's PilotManager and TaskManager (the real pilots: test_radical_pilots.py,
test_multinode.py): round robin over the running pilots, pinned tasks, a lost
pilot, its replacement, and the end of a pilot's runtime."""

import threading
import time
import types

import pytest

from radical.asyncflow.backends.execution.radical_pilot import pilots as pilots_module
from radical.asyncflow.backends.execution.radical_pilot.pilots import Pilots
from radical.asyncflow.errors import BackendError

FINAL = ['DONE', 'FAILED', 'CANCELED']
RP = types.SimpleNamespace(FINAL=FINAL, FAILED='FAILED', CANCELED='CANCELED', DONE='DONE',
                           PMGR_ACTIVE='PMGR_ACTIVE', PilotDescription=dict)


class Pilot:
    def __init__(self, uid, description):
        self.uid, self.description, self.state = uid, description, 'PMGR_ACTIVE'
        self.resource = description['resource']

    def wait(self, state=None, timeout=None):
        pass


class PilotManager:
    def __init__(self):
        self.submitted = []

    def submit_pilots(self, description):
        pilot = Pilot(f'pilot.{len(self.submitted):04d}', description)
        self.submitted.append(pilot)
        return pilot

    def register_callback(self, callback):
        self.callback = callback


class TaskManager:
    _tasks = {}
    _closed = False
    _terminate = threading.Event()

    def add_pilots(self, pilot):
        pass

    def remove_pilots(self, uid):
        pass


class Session:
    def get_resource_config(self, resource, schema=None):
        return {'cores_per_node': 2}


class LockingPilotManager(PilotManager):
    """Like RP's: its state callbacks run holding the lock submit_pilots takes."""

    def __init__(self):
        super().__init__()
        self.lock = threading.RLock()

    def submit_pilots(self, description):
        with self.lock:
            return super().submit_pilots(description)


def started(count=2, replace=False, runtime=60, pmgr=None):
    descriptions = [{'resource': 'x.y', 'cores': 2, 'runtime': runtime}] * count
    pilots = Pilots(RP, None, descriptions, replace, startup_timeout=10)
    pmgr = pmgr or PilotManager()
    pilots.start(Session(), pmgr, TaskManager(), time.monotonic() + 10, threading.Event())
    return pilots, pmgr


def test_unpinned_tasks_go_round_robin_and_pinned_ones_where_asked():
    pilots, _ = started(3)
    chosen = [pilots.uid_for(None, 't') for _ in range(6)]
    assert sorted(chosen) == ['pilot.0000', 'pilot.0000', 'pilot.0001', 'pilot.0001',
                              'pilot.0002', 'pilot.0002']
    assert pilots.uid_for(1, 't') == 'pilot.0001'
    assert pilots.uid_for('pilot.0002', 't') == 'pilot.0002'
    with pytest.raises(ValueError, match=r"task 't': task_description 'pilot' must be the "
                                         r"index of one of the 3 pilots given \(0 to 2\)"):
        pilots.uid_for(3, 't')
    with pytest.raises(ValueError):
        pilots.uid_for(True, 't')


def test_a_lost_pilot_gets_no_task_and_a_task_pinned_to_it_fails():
    pilots, pmgr = started(2)
    lost = pmgr.submitted[0]
    lost.state = 'CANCELED'                      # RP has not called back yet
    assert {pilots.uid_for(None, 't') for _ in range(4)} == {'pilot.0001'}
    assert pilots.lost == ['pilot.0000']
    with pytest.raises(BackendError, match="task 't' is pinned to pilot pilot.0000, "
                                           "which has ended"):
        pilots.uid_for(0, 't')
    pmgr.submitted[1].state = 'FAILED'
    with pytest.raises(BackendError, match="no pilot runs any more"):
        pilots.uid_for(None, 't')


def test_a_lost_pilot_is_replaced_once_when_asked():
    pilots, pmgr = started(1, replace=True)
    pmgr.submitted[0].state = 'DONE'
    assert pilots.uid_for(None, 't') == 'pilot.0001'       # the retry finds the new one
    pmgr.callback(pmgr.submitted[0], 'DONE')                # RP's callback, later
    assert len(pmgr.submitted) == 2 and pilots.replacements == 1


def test_a_pilot_near_its_end_gets_tasks_only_when_no_other_runs(monkeypatch):
    pilots, pmgr = started(2, runtime=10)       # 600 s: the last 120 s are the end margin
    now = time.monotonic()
    monkeypatch.setattr(pilots_module.time, 'monotonic', lambda: now + 400)
    assert {pilots.uid_for(None, 't') for _ in range(4)} == {'pilot.0000', 'pilot.0001'}
    pilots._ending_from['pilot.0000'] = now                 # the first one started earlier
    assert {pilots.uid_for(None, 't') for _ in range(4)} == {'pilot.0001'}
    assert len(pmgr.submitted) == 2                         # not asked to replace


def test_a_pilot_near_its_end_is_replaced_ahead_when_asked(monkeypatch):
    pilots, pmgr = started(1, replace=True, runtime=10)
    now = time.monotonic()
    monkeypatch.setattr(pilots_module.time, 'monotonic', lambda: now + 500)
    assert pilots.uid_for(None, 't') == 'pilot.0001'        # the replacement, starting
    pmgr.submitted[0].state = 'DONE'
    pmgr.callback(pmgr.submitted[0], 'DONE')
    assert len(pmgr.submitted) == 2                         # replaced once, not twice
    assert pilots.lost == ['pilot.0000']


def test_a_pilot_ending_while_a_replacement_is_submitted_does_not_deadlock():
    """RP tells of a pilot's end holding its PilotManager lock; a task's submission
    replacing a pilot near its end meanwhile must not hold ours while it calls RP
    (it did: the campaign of test_multinode's replaced pilots hung for ever)."""
    pmgr = LockingPilotManager()
    pilots, _ = started(2, replace=True, pmgr=pmgr)
    near_end, lost = pmgr.submitted
    rp_holds_its_lock, done = threading.Event(), []

    def rp_callback_thread():
        with pmgr.lock:
            rp_holds_its_lock.set()
            time.sleep(0.3)               # the submission below is waiting for RP's lock
            lost.state = 'FAILED'
            pilots._on_pilot_state(lost, 'FAILED')
        done.append('rp')

    def submitting_thread():
        rp_holds_its_lock.wait(5)
        pilots._replace_early(near_end)
        done.append('task')

    threads = [threading.Thread(target=rp_callback_thread, daemon=True),
               threading.Thread(target=submitting_thread, daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(done) == ['rp', 'task'], 'deadlocked'
    assert pilots.replacements == 2 and pilots.lost == [lost.uid]
    assert len(pmgr.submitted) == 4


def test_a_pilot_seen_active_late_counts_as_ending_from_its_submission(monkeypatch):
    """A batch job's clock starts at submission (or later), not when we see its agent
    active: after a slow bootstrap the end margin must still come before the job's end
    (test_multinode's replaced pilots died under tasks sent to a pilot taken for fresh)."""
    now = time.monotonic()
    clock = {'t': now}
    monkeypatch.setattr(pilots_module.time, 'monotonic', lambda: clock['t'])
    descriptions = [{'resource': 'x.y', 'cores': 2, 'runtime': 2}]     # 120 s
    pilots = Pilots(RP, None, descriptions, True, startup_timeout=100)
    pmgr = PilotManager()
    original = pmgr.submit_pilots

    def slow_bootstrap(description):
        pilot = original(description)
        clock['t'] += 40                        # active only 40 s after its submission
        return pilot

    pmgr.submit_pilots = slow_bootstrap
    pilots.start(Session(), pmgr, TaskManager(), now + 100, threading.Event())
    clock['t'] = now + 100      # 100 s after submission: within the last 24 s of 120 s
    assert pilots.uid_for(None, 't') == 'pilot.0001'        # replaced ahead of its end
    assert len(pmgr.submitted) == 2
