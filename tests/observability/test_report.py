"""report.html: built from real runs, opened in a real headless Chromium.

Three runs are made once per module (a successful one, one with failures,
retries and a cancellation, and 10^5 no-op tasks), and one browser serves
every test; the tests check what the page holds after load (the DOM), that
the console stayed clean, and how long the 10^5-task page takes to load.
The pages are the ones the engines wrote at their end.  Cost: about 15 s
on an idle 2-core machine, most of it the 10^5-task run.
"""

import asyncio
import html.parser
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from radical.asyncflow import ConcurrentExecutionBackend, NoopExecutionBackend, WorkflowEngine
from radical.asyncflow.observability import report
from radical.asyncflow.observability.monitor import SUMMARY_FILE
from radical.asyncflow.observability.report import page as _report_html

import browser

OK_TASKS = 24
BIG_TASKS = 100_000
#: The 10^5-task page must load within this (it takes well under a second on an idle machine).
BIG_LOAD_LIMIT = 15.0
XSS = '<script>window.pwned=1</script>'
XSS_STDERR = '<script>window.pwned=2</script><img src=x onerror="window.pwned=3">'


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('RADICAL_ASYNCFLOW_PROFILE', raising=False)
    monkeypatch.delenv('RADICAL_PROFILE', raising=False)
    monkeypatch.setenv('RADICAL_ASYNCFLOW_PROGRESS', '0')


# ------------------------------------------------------------------ the runs

async def _ok_run(work_dir):
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(4))
    engine = await WorkflowEngine.create(backend=backend, work_dir=work_dir, profile=True,
                                         progress=False)

    @engine.function_task
    async def square(i):
        await asyncio.sleep(0.01 * (i % 5))
        return i * i

    @engine.block
    async def pair(i):
        return await square(i) + await square(i + 1)

    futures = [square(i) for i in range(OK_TASKS - 4)] + [pair(100), pair(200)]
    await asyncio.gather(*futures)
    await engine.shutdown()
    return engine.run_dir


async def _failed_run(work_dir):
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(4))
    engine = await WorkflowEngine.create(backend=backend, work_dir=work_dir, profile=True,
                                         progress=False)
    tries = []
    gate = asyncio.Event()

    @engine.function_task
    async def fine(i):
        return i

    @engine.function_task
    async def broken():
        raise ValueError(f'bad input {XSS} & more')

    script = os.path.join(work_dir, 'noisy.sh')
    with open(script, 'w') as handle:
        handle.write(f"echo line one >&2\ncat >&2 <<'END'\n{XSS_STDERR}\nEND\nexit 3\n")

    @engine.executable_task(capture_stdio=True)
    async def noisy():
        return f'/bin/sh {script}'

    @engine.function_task
    async def after(value):
        return value

    @engine.function_task(retries=2, retry_backoff=0)
    async def flaky():
        tries.append(1)
        if len(tries) < 3:
            raise RuntimeError(f'attempt {len(tries)} fails')
        return 'third time'

    @engine.function_task
    async def parked():
        await asyncio.sleep(60)

    futures = [fine(i) for i in range(5)]
    bad = broken()
    cmd = noisy()
    dependents = [after(bad), after(bad)]
    retried = flaky()
    cancelled = parked()
    await asyncio.gather(*futures, retried)
    for future in (bad, cmd, *dependents):
        with pytest.raises(Exception):
            await future
    cancelled.cancel()
    await asyncio.sleep(0)
    gate.set()
    await engine.shutdown()
    return engine.run_dir


async def _big_run(work_dir):
    engine = await WorkflowEngine.create(backend=await NoopExecutionBackend(), work_dir=work_dir,
                                         profile=True, progress=False)

    @engine.function_task
    async def nothing(i):
        return i

    await asyncio.gather(*[nothing(i) for i in range(BIG_TASKS)])
    await engine.shutdown()
    return engine.run_dir


def _make(factory, tmp_path_factory, name):
    """Run ``factory``; return its run directory and the page its engine wrote."""
    work_dir = str(tmp_path_factory.mktemp(name))
    run_dir = asyncio.run(factory(work_dir))
    path = os.path.join(run_dir, report.REPORT_FILE)
    assert os.path.isfile(path)
    return run_dir, path


@pytest.fixture(scope='module')
def ok_run(tmp_path_factory):
    return _make(_ok_run, tmp_path_factory, 'ok')


@pytest.fixture(scope='module')
def failed_run(tmp_path_factory):
    return _make(_failed_run, tmp_path_factory, 'failed')


@pytest.fixture(scope='module')
def big_run(tmp_path_factory):
    return _make(_big_run, tmp_path_factory, 'big')


@pytest.fixture(scope='module')
def chromium():
    """One headless Chromium for the module, stopped by PID at its end."""
    path = browser.chromium_path()
    if path is None:
        pytest.fail('no chromium: bash tests/setup_system.sh installs Debian\'s chromium')
    instance = browser.Chromium(path)
    try:
        instance.open('about:blank')          # the first page pays for the renderer's start
        yield instance
    finally:
        instance.close()
    assert not os.path.exists(f'/proc/{instance.pid}') or \
        open(f'/proc/{instance.pid}/stat').read().split()[2] == 'Z'


def _summary(run_dir):
    with open(os.path.join(run_dir, SUMMARY_FILE)) as handle:
        return json.load(handle)


def _open(chromium, path):
    """Load a report; return (seconds to its load event, the console's errors)."""
    mark = chromium.event_count()
    seconds = chromium.open(f'file://{path}')
    return seconds, chromium.errors(mark)


def _text(chromium, selector):
    return chromium.evaluate(f'document.querySelector({json.dumps(selector)}).textContent')


def _count(chromium, selector):
    return chromium.evaluate(f'document.querySelectorAll({json.dumps(selector)}).length')


# ------------------------------------------------------------------ in the browser

def test_harness_sees_console_errors(chromium, tmp_path):
    """The check for a clean console can fail: a page with errors is seen as such."""
    page = tmp_path / 'bad.html'
    page.write_text('<html><body><script>console.error("boom"); undefined_call()</script>'
                    '</body></html>')
    _, errors = _open(chromium, page)
    assert any('boom' in e for e in errors) and len(errors) >= 2


def test_successful_run(chromium, ok_run):
    run_dir, path = ok_run
    summary = _summary(run_dir)
    _, errors = _open(chromium, path)
    assert errors == []
    assert _text(chromium, '#status') == 'completed'
    assert int(_text(chromium, '#count-tasks')) == summary['tasks'] == OK_TASKS
    assert int(_text(chromium, '#count-done')) == OK_TASKS
    assert int(_text(chromium, '#count-failed')) == 0
    assert int(_text(chromium, '#count-blocks')) == summary['blocks'] == 2
    assert _count(chromium, '#timeline-chart .task') == OK_TASKS       # a bar per task
    assert _count(chromium, '#timeline-chart .task[data-state="DONE"]') == OK_TASKS
    assert _count(chromium, '#no-failures') == 1
    assert _count(chromium, '#slowest-table tbody tr') == _report_html.SLOWEST
    assert _count(chromium, '#waiting-table tbody tr') == 3
    assert _count(chromium, '#concurrency-chart polyline') >= 1
    assert _text(chromium, '#retried-count') == '0'
    assert _count(chromium, '#count-mismatch') == 0


def test_failed_run(chromium, failed_run, tmp_path):
    run_dir, path = failed_run
    summary = _summary(run_dir)
    states = summary['task_states']
    _, errors = _open(chromium, path)
    assert errors == []                       # nothing was run, not even blocked by the CSP
    assert chromium.evaluate('typeof window.pwned') == 'undefined'
    assert _count(chromium, 'script') == 0
    assert int(_text(chromium, '#count-failed')) == states['FAILED'] == 4
    assert int(_text(chromium, '#count-canceled')) == states['CANCELED'] == 1
    assert int(_text(chromium, '#count-done')) == states['DONE'] == 6
    assert _text(chromium, '#failed-own') == '2' and _text(chromium, '#failed-dependents') == '2'
    assert _count(chromium, '#failed-table tbody tr') == 2
    table = _text(chromium, '#failed-table')
    assert XSS in table                       # shown as text, escaped
    assert 'exited with code 3' in table
    # the captured stderr's end, as text
    stderr = chromium.evaluate('Array.from(document.querySelectorAll("#failed-table pre"))'
                               '.map(e => e.textContent).join("\\n")')
    assert 'line one' in stderr and XSS_STDERR in stderr
    assert _text(chromium, '#retried-count') == '1'
    assert _count(chromium, '#retried-table tbody tr') == 1
    assert '3' in _text(chromium, '#retried-table tbody tr')          # attempts
    chromium.screenshot(str(tmp_path / 'report.png'))
    assert (tmp_path / 'report.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_big_run_opens_in_seconds(chromium, big_run, capsys):
    run_dir, path = big_run
    size = os.path.getsize(path)
    assert size < 1_000_000                 # aggregated: not 10^5 of anything
    seconds, errors = _open(chromium, path)
    load_end = chromium.evaluate(
        'performance.getEntriesByType("navigation")[0].loadEventEnd') / 1000
    assert errors == []
    assert int(_text(chromium, '#count-tasks')) == BIG_TASKS
    assert int(_text(chromium, '#count-done')) == BIG_TASKS
    assert chromium.evaluate(
        'document.getElementById("timeline-chart").dataset.binnedTasks') == str(BIG_TASKS)
    assert _count(chromium, '#timeline-chart .task') == 0
    assert _count(chromium, '#slowest-table tbody tr') == _report_html.SLOWEST
    assert seconds < BIG_LOAD_LIMIT
    with capsys.disabled():
        print(f'\n10^5-task report: {size / 1024:.0f} kB, load event after {seconds:.3f} s '
              f'(navigation timing {load_end:.3f} s)')


# ------------------------------------------------------------------ without a browser

class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls, self.csp = [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == 'meta' and attrs.get('http-equiv') == 'Content-Security-Policy':
            self.csp = attrs.get('content')
        self.urls += [v for k, v in attrs.items() if k in ('src', 'href') and v]


def test_page_is_self_contained_and_escaped(failed_run):
    _, path = failed_run
    with open(path, encoding='utf-8') as handle:
        page = handle.read()
    parser = _Tags()
    parser.feed(page)
    assert 'script' not in parser.tags and 'img' not in parser.tags
    assert parser.urls == []                  # nothing fetched from anywhere
    assert "default-src 'none'" in parser.csp  # and the browser is told not to run scripts
    assert '&lt;script&gt;window.pwned=1&lt;/script&gt;' in page


def test_summary_only_run(tmp_path):
    """Without a profile the page still tells the outcome and the failures by cause."""
    async def run():
        backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(2))
        engine = await WorkflowEngine.create(backend=backend, profile=False, progress=False,
                                             work_dir=str(tmp_path))

        @engine.function_task
        async def boom():
            raise KeyError('nope')

        with pytest.raises(KeyError):
            await boom()
        await engine.shutdown()
        return engine.run_dir

    run_dir = asyncio.run(run())
    page = report.build_report(str(tmp_path))         # a work_dir: its latest run
    assert 'id="no-profile"' in page and 'id="timeline"' not in page
    assert "KeyError: &#x27;nope&#x27;" in page
    assert os.path.basename(run_dir) in page


def test_command_line(failed_run, tmp_path):
    run_dir, _ = failed_run
    out = tmp_path / 'elsewhere.html'
    script = os.path.join(os.path.dirname(sys.executable), 'radical-asyncflow-report')
    command = [script] if os.path.exists(script) else [
        sys.executable, '-c', 'import sys; from radical.asyncflow.observability.report import '
                              'main; sys.exit(main())']
    done = subprocess.run([*command, run_dir, '--out', str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and out.stat().st_size > 1000
    missing = subprocess.run([*command, str(tmp_path / 'nothing')], capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and 'radical-asyncflow-report: error:' in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_binned_means():
    span = 10.0
    # one interval over the first half, one over one bin exactly
    bins = _report_html.binned([(0.0, 5.0), (9.0, 10.0)], span, count=10)
    assert bins == pytest.approx([1, 1, 1, 1, 1, 0, 0, 0, 0, 1])
    partial = _report_html.binned([(0.5, 2.25)], span, count=10)
    assert partial == pytest.approx([0.5, 1, 0.25, 0, 0, 0, 0, 0, 0, 0])


def test_reduced_steps_keep_the_peaks():
    points = [(0.0, 0)] + [(i / 1000, (i % 7)) for i in range(1, 1000)]
    reduced = _report_html.reduce_steps(points, 1.0, count=10)
    assert len(reduced) == 10
    assert all(value == 6 for _, value in reduced)


def test_replayed_tasks_are_counted(tmp_path):
    """A resumed campaign: the tasks the journal holds are replayed, not run again."""
    journal = str(tmp_path / 'campaign.journal')

    async def run(n):
        backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(2))
        engine = await WorkflowEngine.create(backend=backend, profile=True, progress=False,
                                             work_dir=str(tmp_path), journal=journal)

        @engine.function_task
        async def step(i):
            return i

        await asyncio.gather(*[step(i) for i in range(n)])
        await engine.shutdown()
        return engine.run_dir

    asyncio.run(run(3))
    second = asyncio.run(run(5))              # the first 3 are in the journal
    page = report.build_report(second)
    assert '<span id="replayed-count">3</span>' in page
    assert '<span id="retried-count">0</span>' in page
    assert 'id="count-done">5<' in page


def test_summary_profile_plot_and_report_agree(failed_run, tmp_path):
    """The same run seen four ways: the summary's counts, the profile's, the plot's
    bars and the report's cells and bars."""
    from radical.asyncflow.observability import plot
    run_dir, path = failed_run
    summary = _summary(run_dir)
    runs = plot.read_runs(plot.find_profile(run_dir))
    assert len(runs) == 1
    final = {}
    for uid, states in runs[0].states.items():
        if uid.startswith('task.'):
            state = next(s for s in plot.FINAL_STATES if s in states)
            final[state] = final.get(state, 0) + 1
    assert final == {s: n for s, n in summary['task_states'].items() if n}
    bars = plot.intervals(runs[0])
    written = plot.plot_session(run_dir, out_dir=str(tmp_path))
    assert os.path.getsize(written['timeline']) > 0
    with open(path, encoding='utf-8') as handle:
        page = handle.read()
    for state, name in (('DONE', 'done'), ('FAILED', 'failed'), ('CANCELED', 'canceled')):
        assert f'id="count-{name}">{summary["task_states"][state]}<' in page
    assert page.count('<g class="task"') == len(bars)      # the plot's bars, the page's bars
    assert f'id="count-tasks">{summary["tasks"]}<' in page


def test_written_however_the_run_ends(tmp_path):
    """A driver that raises and never calls shutdown(): the engine still writes the
    summary and, next to it, the page, which says how the run ended."""
    holder = {}

    async def driver():
        engine = await WorkflowEngine.create(dry_run=True, profile=True, progress=False,
                                             work_dir=str(tmp_path))
        holder['run_dir'] = engine.run_dir

        @engine.function_task
        async def step(i):
            return i

        await asyncio.gather(*[step(i) for i in range(3)])
        raise LookupError('the driver gives up')

    with pytest.raises(LookupError):
        asyncio.run(driver())
    run_dir = holder['run_dir']
    assert _summary(run_dir)['outcome']['status'] == 'failed'
    with open(os.path.join(run_dir, report.REPORT_FILE), encoding='utf-8') as handle:
        page = handle.read()
    assert 'id="status" class="status failed">failed<' in page
    assert 'LookupError' in page and 'id="count-done">3<' in page


def test_a_failing_page_does_not_fail_the_run(tmp_path, monkeypatch):
    """The page is written after the summary; if writing it fails the run ends as it
    would have, with its summary."""
    def broken(run_dir):
        raise OSError('disk full')

    monkeypatch.setattr(report, 'write_report', broken)

    async def run():
        engine = await WorkflowEngine.create(dry_run=True, progress=False,
                                             work_dir=str(tmp_path))

        @engine.function_task
        async def step():
            return 1

        await step()
        await engine.shutdown()
        return engine.run_dir

    run_dir = asyncio.run(run())
    assert _summary(run_dir)['outcome']['status'] == 'completed'
    assert not os.path.exists(os.path.join(run_dir, report.REPORT_FILE))
