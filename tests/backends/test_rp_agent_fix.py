"""Issue 25: the agent fix (a lock per ZeroMQ publisher in RP's pilot programs).

The fix is checked in real Pythons: a program named as RP names its own gets
it, any other does not; RP's own Publisher survives two sending threads with
it.  That a real pilot's agent_executing loads it is checked in
test_rp_pilot_lost.py (with the pilot that test starts anyway).  ~6 s.
"""

import importlib.util
import os
import subprocess
import sys
import threading

import pytest

from radical.asyncflow.backends.execution.radical_pilot import agent_fix
from radical.asyncflow.backends.execution.radical_pilot.session import RPEnvironment
from radical.asyncflow.errors import UsageValueError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_sitecustomize():
    """The agent's sitecustomize as a module of this process (in pytest it does
    nothing at import: the program is not an RP one)."""
    spec = importlib.util.spec_from_file_location(
        'asyncflow_agent_site', os.path.join(agent_fix.AGENT_SITE, 'sitecustomize.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_changes_put_the_agent_site_first_once_and_keep_a_chosen_mode():
    env = {'PYTHONPATH': f'/a{os.pathsep}{agent_fix.AGENT_SITE}'}
    env.update(agent_fix.changes(env))
    assert env['PYTHONPATH'].split(os.pathsep) == [agent_fix.AGENT_SITE, '/a']
    assert env[agent_fix.MODE_VARIABLE] == 'lock'
    assert agent_fix.changes(env) == {}                    # applied already
    assert agent_fix.changes({agent_fix.MODE_VARIABLE: 'off'}) == \
        {'PYTHONPATH': agent_fix.AGENT_SITE}                # the user's choice stays
    with pytest.raises(UsageValueError, match="'lock', 'probe', 'off'|lock, probe, off"):
        agent_fix.changes({}, mode='locked')


def test_the_backend_environment_carries_the_fix_while_a_backend_needs_it(monkeypatch):
    monkeypatch.setenv('PYTHONPATH', '/somewhere')
    monkeypatch.delenv(agent_fix.MODE_VARIABLE, raising=False)
    RPEnvironment.acquire()
    try:
        assert os.environ['PYTHONPATH'] == f'{agent_fix.AGENT_SITE}{os.pathsep}/somewhere'
        assert os.environ[agent_fix.MODE_VARIABLE] == 'lock'
    finally:
        RPEnvironment.release()
    assert os.environ['PYTHONPATH'] == '/somewhere'
    assert agent_fix.MODE_VARIABLE not in os.environ


def test_the_fix_reaches_rp_programs_only(tmp_path):
    pytest.importorskip('radical.utils')
    env = dict(os.environ)
    agent_fix.install(env)
    code = ('import sys, radical.utils.zmq.pubsub as p; '
            'print(getattr(p.Publisher.put, "_asyncflow", None))')
    for program, expected in (('radical-pilot-component', 'lock'), ('task', 'None')):
        script = tmp_path / program
        script.write_text(code)
        out = subprocess.run([sys.executable, str(script), 'a', 'b', 'agent_executing.0000'],
                             env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert out.stdout.strip() == expected, (program, out.stdout, out.stderr)
        assert out.stderr == ''         # a component's .err stays empty
    log = (tmp_path / 'asyncflow_agent_fix.log').read_text().split()
    assert log[1:] == ['radical-pilot-component', 'agent_executing.0000', 'lock']


def test_a_publisher_that_locks_itself_is_left_alone(monkeypatch):
    pubsub = pytest.importorskip('radical.utils.zmq.pubsub')
    site = load_sitecustomize()
    assert not site._locks_itself(pubsub.Publisher.put)     # radical.utils 1.103.1

    def put(self, topic, msg):          # as a fixed radical.utils would have it
        with self._lock:
            self._socket.send(msg)

    monkeypatch.setattr(pubsub.Publisher, 'put', put)
    assert site._asyncflow_patch_publisher('lock') == 'native'
    assert pubsub.Publisher.put is put


def test_the_lock_serialises_two_threads_on_one_publisher(monkeypatch):
    pubsub = pytest.importorskip('radical.utils.zmq.pubsub')
    inside, most = [0], [0]
    guard = threading.Lock()

    def put(self, topic, msg):          # counts the threads inside at once
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        threading.Event().wait(0.001)
        with guard:
            inside[0] -= 1

    monkeypatch.setattr(pubsub.Publisher, 'put', put)
    assert load_sitecustomize()._asyncflow_patch_publisher('lock') == 'lock'
    publisher = object.__new__(pubsub.Publisher)
    threads = [threading.Thread(target=lambda: [publisher.put('t', i) for i in range(200)])
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


def test_rps_publisher_survives_two_threads_with_the_fix():
    pytest.importorskip('radical.utils')
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks',
                                                        'zmq_publisher_race.py'),
                           '--attempts', '1', '--seconds', '4', '--fix'],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '0/1 attempts crashed' in proc.stdout, proc.stdout
