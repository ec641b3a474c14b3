"""RadicalExecutionBackend set-up: import rules, argument checks, a pilot that
fails to start, and a whole workflow driven from a non-activated venv with
function tasks but no RAPTOR (each in its own process, with its own pilot).

The workflow semantics on a shared pilot are in test_radical_pilot.py.
"""

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def python(code, cwd, env=None, timeout=300):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def bare_environment():
    """This environment as if the venv had not been activated."""
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'CONDA_PREFIX')}
    venv_bin = os.path.dirname(sys.executable)
    env['PATH'] = os.pathsep.join(p for p in env.get('PATH', '/usr/bin:/bin').split(os.pathsep)
                                  if p and os.path.abspath(p) != venv_bin) or '/usr/bin:/bin'
    env['PYTHONUNBUFFERED'] = '1'
    return env


def processes_naming(text):
    return [p.pid for p in psutil.process_iter(['cmdline'])
            if text in ' '.join(p.info['cmdline'] or ())]


# ------------------------------------------------------------ no pilot needed

def test_importing_the_package_does_not_import_radical_pilot(tmp_path):
    out = python('import sys, radical.asyncflow as af\n'
                 'cls = af.RadicalExecutionBackend\n'
                 'print(cls.__name__, "radical.pilot" in sys.modules)', tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['RadicalExecutionBackend', 'False']


def test_missing_radical_pilot_is_a_clear_import_error(tmp_path):
    code = ("import sys\n"
            "sys.modules['radical.pilot'] = None     # as if not installed\n"
            "import radical.asyncflow as af\n"
            "from radical.asyncflow.errors import MissingDependencyError\n"
            "try:\n"
            "    af.RadicalExecutionBackend({'resource': 'local.localhost'})\n"
            "except MissingDependencyError as exc:\n"
            "    assert isinstance(exc, ImportError)\n"
            "    print(exc)\n")
    out = python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert 'RadicalExecutionBackend' in out.stdout and 'radical.pilot' in out.stdout


def test_arguments_are_checked():
    pytest.importorskip('radical.pilot')
    from radical.asyncflow import RadicalExecutionBackend
    with pytest.raises(TypeError, match='dict'):
        RadicalExecutionBackend(['local.localhost'])
    with pytest.raises(ValueError, match="'core'.*PilotDescription"):
        RadicalExecutionBackend({'resource': 'local.localhost', 'core': 4})
    with pytest.raises(ValueError, match="'masters'"):
        RadicalExecutionBackend({'resource': 'local.localhost'}, {'master': []})
    with pytest.raises(ValueError, match="'workers'"):
        RadicalExecutionBackend({'resource': 'local.localhost'}, {'masters': [{'ranks': 1}]})
    with pytest.raises(ValueError, match='ranks'):
        RadicalExecutionBackend({'resource': 'local.localhost'},
                                {'masters': [{'workers': [{'ranks': 0}]}]})
    backend = RadicalExecutionBackend({'resource': 'local.localhost'})
    assert backend.state() == 'NEW'


# ------------------------------------------------------------ with a pilot

FAILING_DRIVER = '''
import asyncio, sys, threading, time
from radical.asyncflow import RadicalExecutionBackend
from radical.asyncflow.errors import BackendError

async def main():
    start = time.monotonic()
    try:
        await RadicalExecutionBackend({'resource': 'local.localhost', 'cores': 1,
                                       'sandbox': '.'}, startup_timeout=120)
    except BackendError as exc:
        print('BackendError after %.0f s' % (time.monotonic() - start))
        print(exc)
    else:
        print('the pilot started')
    print('threads left:', [t.name for t in threading.enumerate()
                            if t is not threading.main_thread() and not t.daemon])

asyncio.run(main())
'''


@pytest.mark.rp
@pytest.mark.timeout(300)
def test_pilot_that_cannot_start_is_a_clear_error(tmp_path):
    pytest.importorskip('radical.pilot')
    env = bare_environment()
    env['VIRTUAL_ENV'] = str(tmp_path / 'no-such-venv')    # the pilot's python is missing
    begin = time.monotonic()
    out = python(FAILING_DRIVER, tmp_path, env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert time.monotonic() - begin < 200
    assert 'BackendError after' in out.stdout, out.stdout + out.stderr[-3000:]
    assert 'ended FAILED during start-up' in out.stdout
    assert 'bootstrap_0.out' in out.stdout                 # what went wrong is shown
    assert 'threads left: []' in out.stdout
    assert processes_naming(str(tmp_path)) == []


VENV_DRIVER = '''
import asyncio, json, os
from radical.asyncflow import RadicalExecutionBackend, WorkflowEngine

async def main():
    backend = await RadicalExecutionBackend({'resource': 'local.localhost', 'cores': 2,
                                             'sandbox': os.getcwd()}, startup_timeout=240)
    flow = await WorkflowEngine.create(backend=backend)

    @flow.executable_task
    async def write(word):
        return f'echo {word} > word.txt; echo {word}'

    @flow.function_task
    async def read(dep, suffix):
        with open('word.txt') as f:          # linked from write's sandbox
            return f.read().strip() + suffix

    @flow.function_task
    async def fail():
        raise KeyError('missing')

    @flow.function_task
    async def on_ranks(task_description={'environment': {'ANSWER': '42'}}):
        return os.environ['ANSWER'], os.environ.get('RP_TASK_ID')

    result = {'exec': await write('hello')}
    result['function'] = await read(write('again'), '!')
    try:
        await fail()
    except KeyError as exc:
        result['error'] = repr(exc)
    result['env'] = list(await on_ranks())
    result['session'] = backend.rp_session.uid
    await flow.shutdown()
    print('RESULT', json.dumps(result))

asyncio.run(main())
'''


@pytest.mark.rp
@pytest.mark.timeout(400)
def test_driver_in_a_non_activated_venv_with_functions_without_raptor(tmp_path):
    pytest.importorskip('radical.pilot')
    out = python(VENV_DRIVER, tmp_path, env=bare_environment(), timeout=360)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = [x for x in out.stdout.splitlines() if x.startswith('RESULT ')][-1]
    result = json.loads(line[len('RESULT '):])
    assert result['exec'] == 'hello\n'
    assert result['function'] == 'again!'
    assert result['error'] == "KeyError('missing')"
    assert result['env'][0] == '42' and result['env'][1].startswith('task.')
    assert processes_naming(result['session']) == []
