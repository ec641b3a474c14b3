"""Function tasks' payload for RADICAL-Pilot, without a pilot.

The pilot side must run with the standard library and dill alone (importing
radical.asyncflow costs every task ~0.1 s of CPU), its code must survive RP's
double-quoted task script, and the outcome must come back through stdout when
small and through the sandbox file otherwise.
"""

import os
import subprocess
import sys
import types

import pytest

from radical.asyncflow.backends.execution.radical_pilot import payload
from radical.asyncflow.backends.execution.dict_protocol import spec_from_dict

FAKE_RP = types.SimpleNamespace(TRANSFER='Transfer')


class Description:
    """The two attributes attach_call sets on an rp.TaskDescription."""

    def __init__(self):
        self.arguments = ['-c', payload.TRAMPOLINE_COMMAND]
        self.input_staging = None


def spec_of(func, *args, **kwargs):
    return spec_from_dict({'uid': 'task.000001', 'name': func.__name__, 'function': func,
                           'args': args, 'kwargs': kwargs})


def run_trampoline(td, sandbox, *python_options):
    """Run the task as RP would: the client's Python, in its sandbox."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    return subprocess.run([sys.executable, *python_options, *td.arguments], cwd=sandbox,
                          env=env, capture_output=True, text=True, timeout=120)


def in_a_driver(func):
    """As if defined in a driver script: dill sends it by value (by reference, its
    module, this one, would import radical.asyncflow on the pilot)."""
    func.__module__ = '__main__'
    return func


@in_a_driver
async def add(x, y=2):
    print('the function prints too')
    return {'sum': x + y}


@in_a_driver
async def long_text():
    return 'x' * 5000


@in_a_driver
async def fails():
    raise ValueError('bad value 42')


def test_the_trampoline_survives_rps_double_quotes():
    # RP writes arguments into its task script in double quotes
    assert not set('$`\\') & set(payload.TRAMPOLINE_COMMAND)


def test_a_small_call_travels_inline_and_its_outcome_in_stdout(tmp_path):
    spec = spec_of(add, 40)
    td = Description()
    payload.attach_call(FAKE_RP, str(tmp_path), spec, (), 'task.000001', td)
    assert td.arguments[2].startswith(payload.INLINE) and td.input_staging is None
    assert os.listdir(tmp_path) == []                      # no file per task

    proc = run_trampoline(td, tmp_path, '-X', 'importtime')
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = [line for line in proc.stderr.splitlines() if 'radical.asyncflow' in line]
    assert ours == []
    assert proc.stdout.startswith('the function prints too\n')
    assert payload.OUTCOME_MARK in proc.stdout
    assert not (tmp_path / payload.PAYLOAD_OUT).exists()   # no file per task either
    assert payload.load_outcome(payload.outcome_blob(proc.stdout, str(tmp_path)), spec) == \
        (True, {'sum': 42})


def test_a_large_outcome_comes_from_the_sandbox(tmp_path):
    spec = spec_of(long_text)
    td = Description()
    payload.attach_call(FAKE_RP, str(tmp_path), spec, (), 'task.000001', td)
    proc = run_trampoline(td, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert payload.OUTCOME_MARK not in proc.stdout
    assert payload.load_outcome(payload.outcome_blob(proc.stdout, str(tmp_path)), spec) == \
        (True, 'x' * 5000)


def test_an_exception_comes_back_with_the_remote_traceback(tmp_path):
    spec = spec_of(fails)
    td = Description()
    payload.attach_call(FAKE_RP, str(tmp_path), spec, (), 'task.000001', td)
    proc = run_trampoline(td, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ok, error = payload.load_outcome(payload.outcome_blob(proc.stdout, str(tmp_path)), spec)
    assert not ok and isinstance(error, ValueError) and error.args == ('bad value 42',)
    assert 'on the pilot' in error.__notes__[0] and 'fails' in error.__notes__[0]


def test_a_large_call_is_staged_in(tmp_path):
    spec = spec_of(add, 'y' * (payload.INLINE_MAX + 1))
    td = Description()
    payload.attach_call(FAKE_RP, str(tmp_path), spec, (), 'task.000001', td)
    assert td.arguments[2:] == [payload.PAYLOAD_IN, payload.PAYLOAD_OUT]
    [directive] = td.input_staging
    assert directive == {'source': f'file://localhost{tmp_path}/task.000001.call',
                         'target': f'task:///{payload.PAYLOAD_IN}', 'action': 'Transfer'}
    sandbox = tmp_path / 'sandbox'
    sandbox.mkdir()
    os.link(tmp_path / 'task.000001.call', sandbox / payload.PAYLOAD_IN)   # RP's staging
    proc = run_trampoline(td, sandbox)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ok, error = payload.load_outcome(payload.outcome_blob(proc.stdout, str(sandbox)), spec)
    assert not ok and isinstance(error, TypeError)          # str + int, on the pilot


def test_the_raptor_function_needs_nothing_of_this_package(tmp_path):
    pytest.importorskip('radical.pilot')
    spec = spec_of(add, 1, y=3)
    (tmp_path / 'task.txt').write_text(payload.raptor_function(spec, ()))
    # what RP's worker does with a PythonTask, in a fresh process
    code = ('import asyncio, sys\n'
            'from radical.pilot.pytask import PythonTask\n'
            'func, args, kwargs = PythonTask.get_func_attr(open("task.txt").read())\n'
            'value = asyncio.run(func(*args, **kwargs))\n'
            'print(sorted(m for m in sys.modules if m.startswith("radical.asyncflow")))\n'
            'print(value)\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules, value = proc.stdout.strip().splitlines()[-2:]
    assert modules == '[]'
    assert payload.load_outcome(payload.raptor_outcome(value), spec) == (True, {"sum": 4})


def test_run_payload_file_writes_the_outcome_file(tmp_path):
    spec = spec_of(add, 1)
    (tmp_path / 'call').write_bytes(payload.function_payload(spec, ()))
    assert payload.run_payload_file(str(tmp_path / 'call'), str(tmp_path / 'out')) == 0
    assert payload.load_outcome((tmp_path / 'out').read_bytes(), spec) == (True, {'sum': 3})
