"""SIGTERM/SIGINT/SIGHUP to a driver: an orderly shutdown, then the program unwinds.

The engine handles a shutdown signal only where the handler is still the
default one (asyncio.run() owns SIGINT): every engine stops in order, then
the tasks that created them are cancelled, and a program run on its own
ends as the signal ends it (a shell sees 128 + N; ``subprocess`` reports -N).
Under ``radical-asyncflow-run`` the exit status is 128 + N (tests/cli/test_cli.py).
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from helpers import alive

N_SLEEPERS = 3
EXIT_WAIT = 15

DRIVER = textwrap.dedent('''
    import asyncio
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

    FIFO_DIR = sys.argv[1]
    N = int(sys.argv[2])


    async def main():
        backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=N + 1))
        engine = await WorkflowEngine.create(backend=backend)

        @engine.executable_task
        async def sleeper(i):
            # tell the test our pid, then become "sleep 60"
            return f'echo $$ > {FIFO_DIR}/pid{i}; exec sleep 60'

        @engine.function_task
        async def dependent(x):
            return x

        @engine.function_task
        async def second_level(x):
            return x

        futures = {}
        for i in range(N):
            futures[f'sleeper{i}'] = s = sleeper(i)
            futures[f'dependent{i}'] = d = dependent(s)
            futures[f'second_level{i}'] = second_level(d)

        def report(fut, name):
            state = 'CANCELLED' if fut.cancelled() else 'FINISHED'
            print(f'{state} {name}', flush=True)

        for name, fut in futures.items():
            fut.add_done_callback(lambda f, name=name: report(f, name))
        print('READY', flush=True)
        await asyncio.gather(*futures.values())
        print('COMPLETED', flush=True)


    asyncio.run(main())
''')


def read_with_timeout(read, unblock, timeout, what):
    """``read()`` in a thread; on timeout call ``unblock()`` and fail."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault('value', read()), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        unblock()
        thread.join(5)
        pytest.fail(f'timed out waiting for {what}')
    return result.get('value')


def read_fifo(path, timeout=15):
    def read():
        with open(path) as f:
            return f.read()

    def unblock():
        with open(path, 'w'):
            pass

    return read_with_timeout(read, unblock, timeout, f'a sleeper to write {path}')


def run_and_signal(tmp_path, sig, driver=DRIVER):
    """Start the driver, signal it once its commands run; (returncode, stdout, stderr, pids)."""
    for i in range(N_SLEEPERS):
        os.mkfifo(tmp_path / f'pid{i}')
    script = tmp_path / 'driver.py'
    script.write_text(driver)
    env = dict(os.environ, RADICAL_ASYNCFLOW_PROFILE='False', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(N_SLEEPERS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env)
    pids = []
    try:
        first = read_with_timeout(proc.stdout.readline, proc.kill, 60, 'READY from the driver')
        if first.strip() != 'READY':
            out, err = proc.communicate(timeout=EXIT_WAIT)
            pytest.fail(f'driver did not get ready: {first}{out}\nstderr:\n{err}')
        pids = [int(read_fifo(tmp_path / f'pid{i}')) for i in range(N_SLEEPERS)]
        assert all(alive(pid) for pid in pids)
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f'driver still running {EXIT_WAIT}s after {signal.Signals(sig).name}'
                        f'\nstdout:\n{out}\nstderr:\n{err}')
        return proc.returncode, first + out, err, pids
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids:               # our own grandchildren, by pid
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=['SIGTERM', 'SIGINT', 'SIGHUP'])
def test_signal_shuts_down_in_order(tmp_path, sig):
    returncode, out, err, pids = run_and_signal(tmp_path, sig)
    assert returncode == -sig, f'stdout:\n{out}\nstderr:\n{err}'
    if sig == signal.SIGINT:        # asyncio.run()'s own handler: KeyboardInterrupt
        assert err.rstrip().endswith('KeyboardInterrupt'), err
    else:
        assert 'Traceback' not in err, err
    assert 'COMPLETED' not in out
    left = [pid for pid in pids if alive(pid)]
    assert left == [], f'sleep commands still running after the driver exited: {left}'


def test_driver_sees_its_futures_cancelled(tmp_path):
    returncode, out, err, _ = run_and_signal(tmp_path, signal.SIGTERM)
    lines = set(out.splitlines())
    expected = {f'CANCELLED {kind}{i}' for i in range(N_SLEEPERS)
                for kind in ('sleeper', 'dependent', 'second_level')}
    assert expected <= lines, f'missing: {sorted(expected - lines)}\nstdout:\n{out}\nstderr:\n{err}'
    assert not any(line.startswith('FINISHED') for line in lines)
    assert returncode == -signal.SIGTERM


TWO_ENGINES = textwrap.dedent('''
    import asyncio
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

    FIFO_DIR = sys.argv[1]
    N = int(sys.argv[2])


    async def engine_with_sleepers(first, count):
        backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=N + 1))
        engine = await WorkflowEngine.create(backend=backend)

        @engine.executable_task
        async def sleeper(i):
            return f'echo $$ > {FIFO_DIR}/pid{i}; exec sleep 60'

        futures = [sleeper(first + i) for i in range(count)]
        for i, fut in enumerate(futures):
            fut.add_done_callback(lambda f, i=first + i: print(
                ('CANCELLED' if f.cancelled() else 'FINISHED') + f' sleeper{i}', flush=True))
        return engine, futures


    async def main():
        one, futures_one = await engine_with_sleepers(0, 1)
        two, futures_two = await engine_with_sleepers(1, N - 1)
        # an engine that comes and goes while the others run
        gone = await WorkflowEngine.create(dry_run=True)
        await gone.shutdown()
        print('READY', flush=True)
        await asyncio.gather(*futures_one, *futures_two)
        print('COMPLETED', flush=True)


    asyncio.run(main())
''')


def test_every_engine_of_the_loop_stops_on_a_signal(tmp_path):
    """Handlers are shared by the live engines: one shutting down leaves the others handled."""
    returncode, out, err, pids = run_and_signal(tmp_path, signal.SIGTERM, TWO_ENGINES)
    assert returncode == -signal.SIGTERM, f'stdout:\n{out}\nstderr:\n{err}'
    assert 'Traceback' not in err, err
    lines = set(out.splitlines())
    assert {f'CANCELLED sleeper{i}' for i in range(N_SLEEPERS)} <= lines, out
    assert err.count('received SIGTERM') == 1, err
    assert [pid for pid in pids if alive(pid)] == []


OWN_HANDLER = textwrap.dedent('''
    import asyncio, signal, sys
    from radical.asyncflow import WorkflowEngine

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        if sys.argv[1] == 'own':        # the program handles SIGTERM itself
            loop.add_signal_handler(signal.SIGTERM, lambda: (print('MINE', flush=True),
                                                             stop.set()))
        engine = await WorkflowEngine.create(dry_run=True, progress=False)
        print('DURING', signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
        try:
            print('READY', flush=True)
            await stop.wait()
        finally:
            print('UNWOUND', flush=True)    # the program's own finally runs
            await engine.shutdown()
            print('AFTER', signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)

    asyncio.run(main())
''')


def run_own_handler(tmp_path, mode):
    script = tmp_path / 'own.py'
    script.write_text(OWN_HANDLER)
    env = dict(os.environ, RADICAL_ASYNCFLOW_PROFILE='False', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        lines = []
        while True:
            line = read_with_timeout(proc.stdout.readline, proc.kill, 60, 'READY')
            lines.append(line.strip())
            if line.strip() == 'READY' or not line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=EXIT_WAIT)
        return proc.returncode, ' '.join(lines).split() + out.split(), err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_signal_the_program_handles_is_left_to_it(tmp_path):
    returncode, out, err = run_own_handler(tmp_path, 'own')
    assert 'MINE' in out, err                   # the program's handler, not the engine's
    assert 'received SIGTERM' not in err
    assert returncode == 0 and 'UNWOUND' in out, err


def test_the_engine_cancels_the_program_and_restores_the_default_handler(tmp_path):
    returncode, out, err = run_own_handler(tmp_path, 'default')
    assert out[:2] == ['DURING', 'False'], out   # the engine's handler while it runs
    assert 'UNWOUND' in out, out                 # the main task was cancelled: finally ran
    assert out[-2:] == ['AFTER', 'True'], out    # the default handler is back
    assert 'received SIGTERM' in err
    assert returncode == -signal.SIGTERM, err
