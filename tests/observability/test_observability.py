"""Observability: state counts, the task profile, progress, the run summary, plots."""

import asyncio
import io
import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from radical.asyncflow import ConcurrentExecutionBackend, NoopExecutionBackend, WorkflowEngine
from radical.asyncflow.observability import profile_sink as _profile_sink
from radical.asyncflow.observability import profile_writer as _profile_writer
from radical.asyncflow.observability import monitor
from radical.asyncflow.observability import plot
from radical.asyncflow.observability import progress
from radical.asyncflow import workflow_manager

from helpers import alive
from radical.asyncflow.core.graph import NodeState

WAIT = 30


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('RADICAL_ASYNCFLOW_PROFILE', 'False')
    monkeypatch.delenv('RADICAL_ASYNCFLOW_PROGRESS', raising=False)
    monkeypatch.delenv('RADICAL_ASYNCFLOW_PROGRESS_INTERVAL', raising=False)


@pytest.fixture
def profiling(monkeypatch):
    """Profiling on, without the NTP lookup radical.utils makes for it."""
    import radical.utils.profile as ru_profile

    def no_ntp():
        raise OSError('no NTP in the tests')

    monkeypatch.setattr(ru_profile, '_sync_ntp', no_ntp)
    monkeypatch.setenv('RADICAL_ASYNCFLOW_PROFILE', 'True')


async def threads_engine(workers=4, **kwargs):
    # coroutines_on_loop: bodies here wait on asyncio objects of the test's loop
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(workers),
                                               coroutines_on_loop=True)
    return await WorkflowEngine.create(backend=backend, **kwargs)


def read_events(path):
    """uid -> {state: (time, msg)} of the 'advance' events of a profile."""
    events = {}
    with open(path) as handle:
        for line in handle:
            parts = line.rstrip('\n').split(',', 6)
            if len(parts) == 7 and parts[1] == 'advance':
                events.setdefault(parts[4], {})[parts[5]] = (float(parts[0]), parts[6])
    return events


async def failing_workflow(engine, gate=None):
    """6 tasks done, 3 failed with the same cause, 1 with another, 2 dependents not run."""

    @engine.function_task
    async def ok(i):
        if gate is not None:
            await gate.wait()
        return i

    @engine.function_task
    async def boom(i):
        raise ValueError(f'bad value\nfor input {i}')

    @engine.function_task
    async def other():
        raise KeyError('missing')

    @engine.function_task
    async def after(*values):
        return values

    futures = [ok(i) for i in range(6)] + [boom(i) for i in range(3)] + [other()]
    futures.append(after(futures[6], futures[7]))      # two failed dependencies
    futures.append(after(futures[-1]))                 # transitively
    return futures


# ------------------------------------------------------------------ counts

def test_state_indices_and_writer_names_follow_the_graph():
    assert [s.index for s in NodeState] == list(range(len(NodeState)))
    assert _profile_writer.STATE_NAMES == tuple(s.name for s in NodeState)
    assert _profile_writer.READY_AT_ONCE == len(NodeState)


async def test_state_counts_and_peak_concurrency():
    engine = await threads_engine(progress=False)
    gate = asyncio.Event()
    try:
        futures = await failing_workflow(engine, gate)
        for _ in range(200):
            counts = engine.state_counts()
            if counts['FAILED'] >= 6:
                break
            await asyncio.sleep(0.01)
        assert sum(counts.values()) == 12
        assert counts['SUBMITTED'] + counts['RUNNING'] == 6       # the gated ones
        assert counts['FAILED'] == 6
        gate.set()
        await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT)
        counts = engine.state_counts()
        assert counts == {'WAITING': 0, 'READY': 0, 'SUBMITTED': 0, 'RUNNING': 0,
                          'DONE': 6, 'FAILED': 6, 'CANCELED': 0}
        assert engine.peak_concurrency == 10        # all but the two dependents at once
    finally:
        await engine.shutdown()


async def test_cancelled_and_blocks_are_counted():
    engine = await WorkflowEngine.create(dry_run=True, progress=False)

    @engine.function_task
    async def step(*deps):
        return 1

    @engine.block
    async def blk():
        return await step()

    first = step()
    second = step(first)
    first.cancel()                        # before it ran: its dependent is cancelled too
    assert await asyncio.wait_for(blk(), WAIT) is None     # a dry run returns nothing
    await asyncio.sleep(0)
    counts = engine.state_counts()
    assert second.cancelled()
    assert counts['CANCELED'] == 2 and counts['DONE'] == 2 and sum(counts.values()) == 4
    assert engine._observer.task_counts()['DONE'] == 1      # the block is not a task
    await engine.shutdown()
    assert engine.summary['blocks'] == 1 and engine.summary['tasks'] == 3


# ----------------------------------------------------------------- summary

async def test_summary_file_and_printout(capsys):
    engine = await threads_engine(progress=True)
    futures = await failing_workflow(engine)
    await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT)
    await engine.shutdown()

    with open(os.path.join(engine.run_dir, monitor.SUMMARY_FILE)) as handle:
        summary = json.load(handle)
    assert summary == {**engine.summary, 'summary_file': summary.get('summary_file')} or \
        summary.items() <= engine.summary.items()
    assert summary['backend'] == 'ConcurrentExecutionBackend'
    assert summary['tasks'] == 12 and summary['blocks'] == 0
    assert summary['states']['DONE'] == 6 and summary['states']['FAILED'] == 6
    assert summary['wall_time_s'] > 0
    assert summary['peak_concurrency'] == 10
    causes = {g['cause']: g for g in summary['failures']}
    assert causes['ValueError: bad value']['count'] == 3
    assert sorted(causes['ValueError: bad value']['tasks']) == [
        f'boom ({f._af_record.uid})' for f in futures[6:9]]
    assert causes["KeyError: 'missing'"]['count'] == 1
    upstream = causes['DependencyFailure (upstream ValueError: bad value)']
    assert upstream['count'] == 2 and upstream['tasks'][0].startswith('after (')
    assert summary['failures'][0]['count'] == 3          # most frequent first
    assert summary['profile'] is None                     # profiling is off here

    err = capsys.readouterr().err
    assert 'radical.asyncflow run summary' in err
    assert '3 x ValueError: bad value' in err
    assert 'peak concurrency 10 tasks' in err


@pytest.mark.parametrize('switch', ['argument', 'environment'])
async def test_progress_switch_also_silences_the_summary(capsys, monkeypatch, switch):
    if switch == 'environment':
        monkeypatch.setenv('RADICAL_ASYNCFLOW_PROGRESS', '0')
        engine = await WorkflowEngine.create(dry_run=True)
    else:
        engine = await WorkflowEngine.create(dry_run=True, progress=False)

    @engine.function_task
    async def t():
        return 1

    await asyncio.wait_for(t(), WAIT)
    await engine.shutdown()
    assert capsys.readouterr().err == ''
    assert os.path.exists(os.path.join(engine.run_dir, monitor.SUMMARY_FILE))   # written all the same


async def test_progress_must_be_a_bool():
    with pytest.raises(TypeError, match='progress'):
        await WorkflowEngine.create(dry_run=True, progress='yes')


# ---------------------------------------------------------------- progress

async def test_plain_progress_lines_when_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setenv('RADICAL_ASYNCFLOW_PROGRESS_INTERVAL', '0.05')
    engine = await threads_engine(progress=True)

    @engine.function_task
    async def naps():
        await asyncio.sleep(0.4)

    await asyncio.wait_for(asyncio.gather(*[naps() for _ in range(5)]), WAIT)
    await engine.shutdown()
    lines = [l for l in capsys.readouterr().err.splitlines() if 'finished (' in l]
    assert lines, 'no progress line'
    assert '/5 finished' in lines[-1] and 'ETA' in lines[-1] and '/s' in lines[-1]
    assert engine._observer._timer is None                 # stopped at shutdown


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_rich_display_on_a_terminal(monkeypatch):
    monkeypatch.setenv('TERM', 'xterm')

    class Monitor:
        started = time.time() - 3
        peak_concurrency = 2
        total, finished = 10, 4

        def state_counts(self):
            return {'WAITING': 3, 'READY': 1, 'SUBMITTED': 0, 'RUNNING': 2,
                    'DONE': 3, 'FAILED': 1, 'CANCELED': 0}

    stdout = sys.stdout
    stream = _Terminal()
    display = progress.ProgressDisplay(Monitor(), stream=stream)
    assert display.terminal
    display.update()
    display.close()
    assert sys.stdout is stdout                            # the terminal is given back
    out = stream.getvalue()
    assert '4/10' in out and 'running' in out and 'done' in out


async def test_display_timer_does_not_keep_the_loop_alive():
    code = ('import asyncio, time\n'
            'from radical.asyncflow import WorkflowEngine\n'
            'async def main():\n'
            '    engine = await WorkflowEngine.create(dry_run=True, progress=True)\n'
            'start = time.monotonic()\n'
            'asyncio.run(main())\n'
            'print(time.monotonic() - start)\n')
    env = dict(os.environ, RADICAL_ASYNCFLOW_PROFILE='True')
    proc = await asyncio.create_subprocess_exec(sys.executable, '-c', code, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, err.decode()
    assert float(out.decode().split()[-1]) < 5


# ----------------------------------------------------------------- profile

async def test_profile_records_every_state_change(profiling):
    engine = await threads_engine(progress=False)
    futures = await failing_workflow(engine)
    await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT)
    await engine.shutdown()

    path = os.path.join(engine.run_dir, monitor.PROFILE_FILE)
    events = read_events(path)
    assert len(events) == 12
    uid = [f._af_record.uid for f in futures]        # uids are numbered process-wide
    first = events[uid[0]]
    assert list(first) == ['WAITING', 'READY', 'SUBMITTED', 'RUNNING', 'DONE']
    assert first['WAITING'][1] == 'ok'                                 # the task name
    assert first['SUBMITTED'][1] == 'ConcurrentExecutionBackend'
    times = [t for t, _ in first.values()]
    assert times == sorted(times) and abs(times[0] - time.time()) < 60
    assert events[uid[6]]['FAILED'][1] == 'ValueError: bad value'
    assert events[uid[11]]['FAILED'][1].startswith('DependencyFailure (upstream')
    assert 'SUBMITTED' not in events[uid[11]]                         # never ran
    assert engine.summary['profile'] == path

    import radical.utils as ru                    # the reader radical.analytics uses
    rows = ru.read_profiles([path], sid='test')[path]
    advance = [r for r in rows if r[ru.EVENT] == 'advance']
    assert len(advance) == sum(len(states) for states in events.values())
    assert {r[ru.ENTITY] for r in advance} == {'task'}


async def noop_run(n, chain=False, **kwargs):
    """An engine on the Noop backend after ``n`` tasks (a chain, or independent)."""
    engine = await WorkflowEngine.create(dry_run=True, progress=False, **kwargs)

    @engine.function_task
    async def noop(*deps):
        return None

    futures = []
    for i in range(n):
        futures.append(noop(futures[-1]) if chain and futures else noop())
    await asyncio.wait_for(asyncio.gather(*futures), WAIT)
    return engine


def profile_of(engine):
    return read_events(os.path.join(engine.run_dir, monitor.PROFILE_FILE))


async def test_profile_goes_through_the_helper_process(profiling, monkeypatch):
    monkeypatch.setattr(_profile_sink, 'FLUSH_VALUES', 400)       # many frames
    monkeypatch.setattr(_profile_sink, 'FLUSH_GAP_NS', 0)
    monkeypatch.setattr(workflow_manager, 'SUBMIT_BATCH', 50)
    n = 3000
    engine = await noop_run(n)
    helper = engine._observer.profile.writer_pid
    assert helper is not None, 'no helper process'
    writer, buffer = engine._observer.profile._writer, engine._observer.profile.events
    assert writer.sent
    assert psutil.Process(helper).cmdline()[-5].endswith('profile_writer.py')
    await engine.shutdown()

    # shutdown returns once the helper wrote everything and exited
    assert helper not in [child.pid for child in psutil.Process().children()]
    # its fds are closed and may be reused: the fork hook must leave them alone
    assert writer not in _profile_sink._LIVE_WRITERS
    # emptied in place: the observers' bound methods still reach it
    assert engine._observer.profile.events is buffer and not buffer
    events = profile_of(engine)
    assert len(events) == n
    assert all(list(states) == ['WAITING', 'READY', 'SUBMITTED', 'DONE']
               for states in events.values())
    assert all(states['WAITING'][1] == 'noop' for states in events.values())
    assert all(states['WAITING'][0] == states['READY'][0]           # one event, two lines
               for states in events.values())


async def test_batch_shares_its_submitted_time_and_dependents_their_release_time(profiling):
    engine = await noop_run(50, chain=True)
    await engine.shutdown()
    events = profile_of(engine)
    uids = list(engine.components)                    # in the order of creation: the chain
    for i in range(1, 50):
        dependency, dependent = events[uids[i - 1]], events[uids[i]]
        assert dependent['READY'][0] == dependency['DONE'][0]
        assert dependent['WAITING'][0] <= dependent['READY'][0] <= dependent['SUBMITTED'][0]

    engine = await noop_run(200)        # one batch: handed to the backend together
    await engine.shutdown()
    events = profile_of(engine)
    submitted = {events[uid]['SUBMITTED'] for uid in engine.components}
    assert len(submitted) == 1


async def test_profile_is_complete_without_the_helper(profiling, monkeypatch, caplog):
    def cannot_start(*args):
        raise OSError('no processes left')

    monkeypatch.setattr(_profile_sink, '_WriterProcess', cannot_start)
    engine = await noop_run(500)
    assert engine._observer.profile.writer_pid is None
    await engine.shutdown()
    events = profile_of(engine)
    assert len(events) == 500 and all(len(states) == 4 for states in events.values())


async def test_short_run_formats_in_place_if_the_helper_is_not_up_yet(profiling, monkeypatch):
    monkeypatch.setattr(_profile_sink._WriterProcess, 'started', lambda self: False)
    engine = await noop_run(100)
    helper = psutil.Process(engine._observer.profile.writer_pid)
    assert not engine._observer.profile._writer.sent
    await engine.shutdown()
    assert not alive(helper.pid)
    events = profile_of(engine)
    assert len(events) == 100 and all(len(states) == 4 for states in events.values())


async def test_forked_children_let_go_of_the_helper_pipe(profiling):
    engine = await noop_run(10)
    profile_writer = engine._observer.profile._writer
    pipe = os.fstat(profile_writer._fd)
    pid = os.fork()
    if pid == 0:                      # the child: its copy must not be the pipe any more
        try:
            os._exit(0 if (os.fstat(profile_writer._fd).st_ino != pipe.st_ino) else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.fstat(profile_writer._fd).st_ino == pipe.st_ino      # the parent's is untouched
    await engine.shutdown()
    assert len(profile_of(engine)) == 10


async def test_profile_survives_the_helper_dying(profiling, monkeypatch):
    monkeypatch.setattr(_profile_sink, 'FLUSH_VALUES', 400)
    monkeypatch.setattr(_profile_sink, 'FLUSH_GAP_NS', 0)
    engine = await noop_run(500)
    early = set(engine.components)
    helper = psutil.Process(engine._observer.profile.writer_pid)
    helper.kill()
    helper.wait(WAIT)

    @engine.function_task
    async def after():
        return None

    await asyncio.wait_for(asyncio.gather(*[after() for _ in range(300)]), WAIT)
    await asyncio.wait_for(engine.shutdown(), WAIT)
    events = profile_of(engine)
    # what the helper had not written when it died is lost; nothing after it
    late = [states for uid, states in events.items() if uid not in early]
    assert len(late) == 300 and all(len(states) == 4 for states in late)


async def test_no_profile_and_no_helper_when_profiling_is_off():
    engine = await noop_run(100)
    assert engine._observer.profile is None
    await engine.shutdown()
    assert not os.path.exists(os.path.join(engine.run_dir, monitor.PROFILE_FILE))


def test_format_events_matches_the_profiler_format():
    now = time.time_ns()
    uid = 'task.000001'
    text = _profile_writer.format_events(
        [1_000, uid, _profile_writer.READY_AT_ONCE, 'work',
         2_000, ['task.000002', 'task.000003'], NodeState.SUBMITTED.index, None,
         2_500_000, uid, NodeState.FAILED.index, 'boom'],
        now - 1_000, 'radical.asyncflow', 'MainThread', 'Noop')
    waiting, ready, second, third, failed = text.splitlines()
    assert waiting.split(',')[1:] == ['advance', 'radical.asyncflow', 'MainThread',
                                      uid, 'WAITING', 'work']
    assert ready.split(',')[0] == waiting.split(',')[0]
    assert ready.split(',')[4:] == [uid, 'READY', '']
    assert second.split(',')[4:] == ['task.000002', 'SUBMITTED', 'Noop']
    assert third.split(',')[4:] == ['task.000003', 'SUBMITTED', 'Noop']
    assert failed.endswith(f',{uid},FAILED,boom')
    assert abs(float(waiting.split(',')[0]) - now / 1e9) < 1e-5
    assert abs(float(failed.split(',')[0]) - float(waiting.split(',')[0]) - 0.0024990) < 2e-6


def test_frames_round_trip():
    events = [5, 'task.000001', 0, 'name', 6, ['a', 'b'], 2, None]
    frame = _profile_writer.encode_frame(events, 42)
    size, = _profile_writer.LENGTH.unpack(frame[:_profile_writer.LENGTH.size])
    assert size == len(frame) - _profile_writer.LENGTH.size
    import marshal
    assert marshal.loads(frame[_profile_writer.LENGTH.size:]) == (42, events)


# -------------------------------------------------------------------- plot

def _png_checks(path, min_width=800):
    import matplotlib.image as mpimg
    import numpy as np
    assert os.path.getsize(path) > 5_000
    image = mpimg.imread(path)
    height, width = image.shape[:2]
    assert width >= min_width and height >= 300
    rgb = image[..., :3]
    coloured = np.abs(rgb - 1.0).sum(axis=2) > 0.1            # not white
    assert coloured.mean() > 0.02, 'the plot is (nearly) blank'
    return image


async def test_plot_of_a_real_run(profiling, capsys):
    pytest.importorskip('matplotlib')
    engine = await threads_engine(progress=False)

    @engine.function_task
    async def naps(i):
        await asyncio.sleep(0.02 * (i % 5))
        return i

    futures = [naps(i) for i in range(40)] + await failing_workflow(engine)
    await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT)
    await engine.shutdown()

    assert plot.main([engine.work_dir]) == 0
    written = capsys.readouterr().out.split()
    assert [os.path.basename(p) for p in written] == [plot.TIMELINE_FILE, plot.CONCURRENCY_FILE]
    timeline = _png_checks(written[0])
    concurrency = _png_checks(written[1])
    # the failed tasks show as red bars
    red = (timeline[..., 0] > 0.6) & (timeline[..., 1] < 0.3) & (timeline[..., 2] < 0.3)
    assert red.sum() > 50
    assert concurrency.shape[1] == 1100                    # 11 in at 100 dpi

    runs = plot.read_runs(os.path.join(engine.run_dir, monitor.PROFILE_FILE))
    tasks = plot.intervals(runs[-1])
    rows = plot.assign_slots(tasks)
    assert len(tasks) == 50                                # the two dependents never ran
    # greedy slots are optimal: as many rows as bars overlap at most (ends before starts)
    sweep = sorted([(t.start, 1) for t in tasks] + [(t.end, -1) for t in tasks])
    overlap = max(itertools.accumulate(change for _, change in sweep))
    assert rows == overlap <= engine.summary['peak_concurrency']
    for slot in range(rows):
        bars = sorted((t.start, t.end) for t in tasks if t.slot == slot)
        assert all(a[1] <= b[0] for a, b in zip(bars, bars[1:])), 'overlapping bars'


def test_assign_slots_is_greedy():
    tasks = [plot.TaskInterval(str(i), s, e, 'DONE')
             for i, (s, e) in enumerate([(0, 2), (1, 3), (2, 4), (3, 5), (0.5, 1)])]
    assert plot.assign_slots(tasks) == 2
    assert [t.slot for t in tasks] == [0, 1, 0, 1, 1]      # lowest free row, reused at once


async def test_plot_of_10k_tasks_is_fast(profiling, tmp_path):
    pytest.importorskip('matplotlib')
    engine = await WorkflowEngine.create(dry_run=True, progress=False)

    @engine.function_task
    async def noop(*deps):
        return None

    futures = []
    for i in range(10_000):
        futures.append(noop(futures[i - 1]) if i % 10 else noop())
    await asyncio.wait_for(asyncio.gather(*futures), 120)
    await engine.shutdown()

    start = time.monotonic()
    written = plot.plot_session(engine.work_dir, out_dir=str(tmp_path / 'plots'))
    assert time.monotonic() - start < 10
    for path in written.values():
        _png_checks(path)


def test_plot_errors_are_usage_errors(tmp_path, capsys):
    assert plot.main([str(tmp_path / 'missing')]) == 2
    assert 'no radical.asyncflow.prof' in capsys.readouterr().err
    (tmp_path / monitor.PROFILE_FILE).write_text('#time,event,comp,thread,uid,state,msg\n')
    assert plot.main([str(tmp_path)]) == 2
    assert 'no task events' in capsys.readouterr().err


def test_plot_script_is_installed():
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(here, 'bin', 'radical-asyncflow-plot')
    proc = subprocess.run([sys.executable, script, '--help'], capture_output=True, text=True,
                          timeout=WAIT)
    assert proc.returncode == 0 and 'SESSION_DIR' in proc.stdout


class PlacingBackend(NoopExecutionBackend):
    """Reports each task running on a node of its own choosing (as RP does), then done."""

    async def submit(self, tasks, reporter):
        for i, spec in enumerate(tasks):
            where = [f'n{i % 3 + 1}'] if i % 4 else ['n1', 'n2']
            if i % 2:
                reporter.running(spec, where)
            else:                   # learned only later (as RADICAL-Pilot 1.103 tells)
                reporter.running(spec)
                reporter.placed(spec, where)
            reporter.done(spec, None)


async def test_tasks_per_node_in_the_summary_the_profile_and_the_plot(profiling, tmp_path):
    pytest.importorskip('matplotlib')
    engine = await WorkflowEngine.create(backend=PlacingBackend(), progress=False,
                                         work_dir=str(tmp_path))

    @engine.function_task
    async def t():
        return None

    await asyncio.wait_for(asyncio.gather(*[t() for _ in range(12)]), WAIT)
    await engine.shutdown()
    # 3 of the 12 ran on n1 and n2 at once (i % 4 == 0); the others round-robin
    expected = {'n1': 3 + 3, 'n2': 3 + 3, 'n3': 3}
    assert engine.summary['tasks_per_node'] == expected
    assert 'tasks per node: n1 6, n2 6, n3 3' in monitor.format_summary(engine.summary)
    run = plot.read_runs(plot.find_profile(str(tmp_path)))[-1]
    assert plot.tasks_per_node(run) == expected
    assert all('RUNNING' in states and 'DONE' in states for states in run.states.values())
    assert os.path.getsize(plot.plot_session(str(tmp_path))['nodes']) > 0


@pytest.mark.parametrize('width', [80, 120, 200])
def test_the_status_line_fits_the_terminal(width):
    from rich.console import Console
    figures = {'counts': {'WAITING': 123456, 'READY': 4321, 'SUBMITTED': 2048,
                          'RUNNING': 1024, 'DONE': 876543, 'FAILED': 1234, 'CANCELED': 56},
               'total': 1009999, 'finished': 877833, 'rate': 1234.5, 'eta': 3725.0,
               'elapsed': 86399.0, 'peak': 2048}
    line = progress.ProgressDisplay.status_line(figures, width)
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=True, color_system=None).print(line)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and len(lines[0]) < width, lines
    shown = lines[0]
    # the most important figures stay, whatever the width
    for must in ('877833/1009999', 'failed 1234', 'done 876543', 'running 1024'):
        assert must in shown, shown
    if width >= 120:
        assert 'ETA 1:02:05' in shown and '1234.5/s' in shown and 'waiting 123456' in shown
    if width >= 200:
        assert 'ready 4321' in shown and 'submitted 2048' in shown and 'elapsed 23:59:59' in shown


async def test_the_profile_is_off_unless_asked_for(monkeypatch):
    for name in monitor.PROFILE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    engine = await WorkflowEngine.create(dry_run=True, progress=False)
    assert engine._observer.profile is None and not engine.prof.enabled
    await engine.shutdown()
    assert engine.summary['profile'] is None
    assert not os.path.exists(os.path.join(engine.run_dir, monitor.PROFILE_FILE))

    asked = await WorkflowEngine.create(dry_run=True, progress=False, profile=True)
    assert asked._observer.profile is not None and asked.prof.enabled
    await asked.shutdown()
    assert os.path.getsize(os.path.join(asked.run_dir, monitor.PROFILE_FILE)) > 0

    monkeypatch.setenv('RADICAL_PROFILE', 'True')
    by_env = await WorkflowEngine.create(dry_run=True, progress=False)
    assert by_env._observer.profile is not None
    await by_env.shutdown()
    monkeypatch.setenv('RADICAL_ASYNCFLOW_PROFILE', 'off')     # the first variable wins
    off = await WorkflowEngine.create(dry_run=True, progress=False)
    assert off._observer.profile is None
    await off.shutdown()
    with pytest.raises(TypeError, match='profile must be True, False or None'):
        await WorkflowEngine.create(dry_run=True, profile='yes')


def test_a_profile_helper_that_cannot_write_says_so_in_one_line(tmp_path):
    unwritable = tmp_path / 'a-directory'
    unwritable.mkdir()
    proc = subprocess.run([sys.executable, '-I', '-S', _profile_writer.__file__,
                           str(unwritable), 'comp', 'thread', 'backend'],
                          input=_profile_writer.END_FRAME, capture_output=True, timeout=30)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.startswith('radical.asyncflow: the profile helper cannot write') \
        and err.count('\n') == 1, err
    assert 'Traceback' not in err


def test_a_profile_helper_whose_engine_went_away_ends_quietly():
    proc = subprocess.Popen([sys.executable, '-I', '-S', _profile_writer.__file__,
                             os.devnull, 'comp', 'thread', 'backend'],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()                      # the engine stops listening ...
    proc.stdin.close()                       # ... and goes away without an end frame
    assert proc.wait(30) == 0
    assert proc.stderr.read() == b''        # no BrokenPipeError traceback
