"""A run keeps its record whichever way its driver ends.

The driver below finishes 20 tasks, leaves one running, and then ends as the
test says: an orderly shutdown, an exception, a return without shutdown,
``sys.exit``, an exception inside ``async with engine``, SIGTERM or SIGINT.
Each time the run directory holds the summary (with the outcome) and a
profile with every event recorded so far, the plot works on it, and no
traceback but the driver's own reaches stderr.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from radical.asyncflow.observability import monitor
from radical.asyncflow.observability import plot

DRIVER = textwrap.dedent('''
    import asyncio, sys
    from concurrent.futures import ThreadPoolExecutor
    from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

    how = sys.argv[1]

    async def main():
        backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(4))
        engine = await WorkflowEngine.create(backend=backend, profile=True, uid='run',
                                             progress=False)

        @engine.function_task
        async def quick(i):
            return i

        @engine.executable_task
        async def slow():
            return 'sleep 30'

        await asyncio.gather(*[quick(i) for i in range(20)])
        pending = slow()
        while engine.state_counts()['RUNNING'] == 0:
            await asyncio.sleep(0.01)
        print('READY', flush=True)
        if how == 'shutdown':
            await engine.shutdown()
        elif how == 'raise':
            raise ValueError('the driver gave up')
        elif how == 'exit':
            sys.exit(3)
        elif how == 'async-with':
            async with engine:
                raise KeyError('inside the engine block')
        elif how == 'signal':
            await pending
        # 'return': the loop ends without engine.shutdown()

    asyncio.run(main())
''')

ENDINGS = {
    'shutdown': ({'status': 'completed'}, 0),
    'raise': ({'status': 'failed', 'exception': 'ValueError',
               'message': 'the driver gave up'}, 1),
    'exit': ({'status': 'failed', 'exception': 'SystemExit', 'message': '3'}, 3),
    'async-with': ({'status': 'failed', 'exception': 'KeyError',
                    'message': "'inside the engine block'"}, 1),
    'return': ({'status': 'abandoned'}, 0),
    # A program run on its own ends as the signal ends it (the shell sees
    # 128 + N) once the engine stopped in order: SIGTERM through the engine's
    # handler; SIGINT through asyncio.run()'s own (KeyboardInterrupt).
    'SIGTERM': ({'status': 'interrupted', 'signal': 'SIGTERM', 'signal_number': 15}, -15),
    'SIGINT': ({'status': 'interrupted', 'signal': 'SIGINT', 'signal_number': 2}, -2),
}
#: Tracebacks on stderr: the driver's own, and Python's report of Ctrl-C.
TRACEBACKS = {'raise': 1, 'async-with': 1, 'SIGINT': 2}


def end_a_run(tmp_path, how):
    script = tmp_path / 'driver.py'
    script.write_text(DRIVER)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env.pop('RADICAL_ASYNCFLOW_PROFILE', None)
    proc = subprocess.Popen([sys.executable, str(script),
                             'signal' if how.startswith('SIG') else how],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'READY'
        if how.startswith('SIG'):
            proc.send_signal(getattr(signal, how))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize('how', list(ENDINGS))
def test_the_record_survives_every_ending(tmp_path, how):
    expected, status = ENDINGS[how]
    returncode, err = end_a_run(tmp_path, how)
    assert returncode == status, err
    run_dir = tmp_path / 'run'
    summary = json.loads((run_dir / monitor.SUMMARY_FILE).read_text())
    assert expected.items() <= summary['outcome'].items(), summary['outcome']
    assert summary['task_states']['DONE'] == 20
    events = plot.read_runs(str(run_dir / monitor.PROFILE_FILE))[-1].states
    done = [uid for uid, states in events.items() if 'DONE' in states]
    assert len(done) == 20, f'{len(done)} DONE events in the profile'
    assert any('RUNNING' in states for states in events.values())      # the one left running
    if how == 'return':
        assert 'engine.shutdown()' in summary['outcome']['reason']
    # no helper's traceback; the driver's own only where it raised
    assert '_profile_writer' not in err and 'BrokenPipeError' not in err, err
    assert err.count('Traceback') == TRACEBACKS.get(how, 0), err
    if how == 'SIGINT':
        assert err.rstrip().endswith('KeyboardInterrupt'), err


def test_the_plot_works_on_the_record_of_a_failed_run(tmp_path):
    pytest.importorskip('matplotlib')
    end_a_run(tmp_path, 'raise')
    written = plot.plot_session(str(tmp_path))        # the work dir: its latest run
    assert os.path.dirname(written['timeline']) == str(tmp_path / 'run')
    assert os.path.getsize(written['timeline']) > 0
