"""Issue 25: the health checks of RP pilots (radical_pilot/health.py).

The rules run against a real process titled as RP titles its executing
component (killed, SIGSTOPped), real ``.err`` and task ``.prof`` files, and
the flow of the backend's own task records; ~3 s.  The real-pilot test
(killing a local pilot's executing component mid-run) is in
test_rp_pilot_lost.py.
"""

import os
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest

from radical.asyncflow.backends.execution.radical_pilot.describe import TaskKind
from radical.asyncflow.backends.execution.radical_pilot.health import (
    DEAD_GRACE, Flow, HealthWatch, PilotHealth, Verdict, find_component_pid)
from radical.asyncflow.backends.execution.radical_pilot.tasks import Submitted, SubmittedTasks


@pytest.fixture
def component(tmp_path):
    """A process titled ``rp.agent_executing.0000`` working in ``tmp_path``."""
    proc = subprocess.Popen(['bash', '-c', 'exec -a rp.agent_executing.0000 sleep 120'],
                            cwd=tmp_path)
    deadline = time.monotonic() + 10
    while find_component_pid(str(tmp_path)) != proc.pid:
        assert time.monotonic() < deadline, 'the component process did not show up'
        time.sleep(0.05)
    yield proc
    try:
        os.kill(proc.pid, signal.SIGCONT)
    except ProcessLookupError:
        pass
    proc.kill()
    proc.wait()


def test_a_killed_component_is_dead(tmp_path, component):
    checker = PilotHealth('pilot.0000', str(tmp_path), local=True)
    assert checker.check(None) is None
    component.kill()
    component.wait()
    now = time.monotonic()
    assert checker.check(None, now) is None             # its pilot may be ending
    finding = checker.check(None, now + DEAD_GRACE)
    assert finding.verdict is Verdict.COMPONENT_DEAD
    assert finding.message() == (f'pilot pilot.0000: agent_executing.0000 component dead: '
                                 f'process {component.pid} is gone')


def test_a_stopped_component_is_seen_in_two_checks(tmp_path, component):
    checker = PilotHealth('pilot.0000', str(tmp_path), local=True)
    os.kill(component.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while checker.probe.process_state() != 'T':
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert checker.check(None) is None          # one check is not enough
    assert checker.check(None).verdict is Verdict.COMPONENT_STOPPED


def test_an_abort_line_in_the_err_file_is_seen_without_proc(tmp_path):
    checker = PilotHealth('pilot.0000', str(tmp_path), local=False)
    err = tmp_path / 'agent_executing.0000.err'
    err.write_text('')
    assert checker.check(None) is None
    err.write_text('double free or corruption (out)\n')
    finding = checker.check(None)
    assert finding.verdict is Verdict.COMPONENT_FAILED
    assert 'double free' in finding.detail


def test_stall_needs_waiting_tasks_silence_and_free_cores_or_an_unreported_end(tmp_path):
    checker = PilotHealth('pilot.0000', str(tmp_path), local=False, stall_after=60)
    now = 1000.0
    quiet = now - 61
    assert checker.check(Flow(waiting=5, busy_cores=2, cores=4, last_report=now - 30), now) \
        is None                                  # not silent long enough
    assert checker.check(Flow(waiting=0, busy_cores=2, cores=4, last_report=quiet), now) \
        is None                                  # nothing waits
    assert checker.check(Flow(waiting=5, busy_cores=2, cores=4, last_report=quiet),
                         now).verdict is Verdict.STALLED
    task = tmp_path / 'task.000001'
    task.mkdir()
    busy = Flow(waiting=5, busy_cores=4, cores=4, last_report=quiet,
                running=[(str(task), 'task.000001')])
    assert checker.check(busy, now) is None      # long tasks may keep every core
    (task / 'task.000001.prof').write_text(
        '1.0,launch_start,,MainThread,task.000001,AGENT_EXECUTING,\n'
        '2.0,launch_stop,,MainThread,task.000001,AGENT_EXECUTING,\n')
    finding = checker.check(busy, now)
    assert finding.verdict is Verdict.STALLED and 'task.000001 ended' in finding.detail


class Reporter:
    def running(self, spec, where=None):
        pass


def test_the_watch_builds_each_pilots_flow_and_reports_a_pilot_once(tmp_path):
    tasks = SubmittedTasks()
    for i, (pilot, running) in enumerate([('p.0', True), ('p.0', False), ('p.0', False),
                                          ('p.1', False), (None, False)]):
        sub = Submitted(SimpleNamespace(uid=f't.{i}', name='t'), Reporter(), TaskKind.EXECUTABLE,
                        f't.{i}', pilot=pilot, cores=2)
        tasks.add(sub)
        if running:
            tasks.running(sub)
    pilots = [SimpleNamespace(uid=uid, resource='remote.x', pilot_sandbox=str(tmp_path / uid),
                              description={'cores': 2}, resource_details={})
              for uid in ('p.0', 'p.1')]
    lost = []
    watch = HealthWatch(tasks, lambda: pilots, lambda p, f: lost.append((p.uid, f)),
                        lambda p: p.pilot_sandbox, stall_after=30)
    assert watch.check_all() == []                      # nothing silent yet
    flows = watch._flows({'p.0': 2, 'p.1': 2})
    assert (flows['p.0'].waiting, flows['p.0'].busy_cores, flows['p.1'].waiting) == (2, 2, 1)
    assert list(flows['p.0'].running) == [(str(tmp_path / 'p.0' / 't.0'), 't.0')]
    tasks.reported('t.3')                               # p.1 heard from now
    assert watch.check_all(now=time.monotonic() + 10) == [] and lost == []
    # p.0: its cores run a task that has not ended; p.1: a core free, silent
    found = watch.check_all(now=time.monotonic() + 31)
    assert [f.pilot for f in found] == ['p.1'] and lost[0][0] == 'p.1'
    assert '1 tasks wait to run with 2 of 2 cores free' in lost[0][1].detail
    assert watch.check_all(now=time.monotonic() + 60) == []     # reported once


def test_the_component_of_a_later_pilot_of_the_session_is_found(tmp_path):
    """RP numbers components per session: a replacement pilot's is .0001."""
    proc = subprocess.Popen(['bash', '-c', 'exec -a rp.agent_executing.0001 sleep 120'],
                            cwd=tmp_path)
    try:
        checker = PilotHealth('pilot.0001', str(tmp_path), local=True)
        deadline = time.monotonic() + 10
        while checker.probe.pid() != proc.pid:
            assert time.monotonic() < deadline, 'the component process was not found'
            time.sleep(0.05)
        assert checker.probe.component == 'agent_executing.0001'
        proc.kill()
        proc.wait()
        assert checker.check(None) is None
        later = time.monotonic() + DEAD_GRACE
        assert 'agent_executing.0001 component dead' in checker.check(None, later).message()
    finally:
        proc.kill()
        proc.wait()
    remote = tmp_path / 'remote'
    remote.mkdir()
    (remote / 'agent_executing.0002.err').write_text('Fatal Python error: Aborted\n')
    finding = PilotHealth('pilot.0002', str(remote), local=False).check(None)
    assert finding.component == 'agent_executing.0002'
    assert finding.verdict is Verdict.COMPONENT_FAILED


def test_a_component_gone_with_its_agent_is_a_pilot_that_ends(tmp_path, component):
    """A pilot that is cancelled or reaches its runtime stops its components and
    agent_0: RP reports that end, the watch does not."""
    agent = subprocess.Popen(['bash', '-c', 'exec -a rp.agent.0 sleep 120'], cwd=tmp_path)
    try:
        checker = PilotHealth('pilot.0000', str(tmp_path), local=True)
        deadline = time.monotonic() + 10
        while find_component_pid(str(tmp_path), 'agent.0') != agent.pid:
            assert time.monotonic() < deadline, 'agent_0 did not show up'
            time.sleep(0.05)
        assert checker.check(None) is None                  # both seen alive
        component.kill()
        component.wait()
        agent.kill()
        agent.wait()
        assert checker.check(None, time.monotonic() + 2 * DEAD_GRACE) is None
    finally:
        agent.kill()
        agent.wait()
