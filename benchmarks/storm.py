"""State-callback storms: how many backend reports per second the engine absorbs.

A native backend test double (:class:`StormBackend`) hands every batch of
task specs the engine submits to reporter threads, in bursts, as
RADICAL-Pilot's callback threads deliver state updates: each thread takes a
burst of ``--burst`` tasks and reports RUNNING for each, then DONE for each.
The program makes N independent function tasks (the functions never run: the
backend reports them done with the value 1) and awaits them all.

The storm is held until the engine has submitted all N tasks, then released,
so that it is measured apart from task creation: "storm s" is from the
release to the last future resolved, and reports/s = 2 N / storm s (a
RUNNING and a DONE per task).  "total s" is from the first call to the last
result.  While the storm runs, a probe coroutine asks the loop for a 5 ms
sleep over and over; loop latency is how late it wakes (median, 99th
percentile, worst).

Each (N, mode) runs in a fresh interpreter, ``--repeat`` times, and the
median run (by storm s) is reported:

  plain    no profile, no journal: the engine alone
  profile  the task profile on (the default of a real run): profile bytes/task
  journal  a campaign journal (SQLite): rows/s sustained during the storm,
           and rows/s of the commits alone (time inside Journal.flush, or
           inside the transactions of the journal's writer thread)

RSS/task is the growth of resident memory from the engine's start to the
peak, per task; it includes the program's N futures.

    python benchmarks/storm.py                        # 1e5 and 1e6 tasks, all modes
    python benchmarks/storm.py --quick --json s.json  # seconds: a smoke test
    python benchmarks/storm.py --sizes 1e6 --modes plain --threads 8 --burst 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

# the memory probes of benchmarks/engine.py (this directory is on sys.path)
from engine import _peak_since_reset, _reset_peak, _rss_now
from radical.asyncflow.backends.execution.base import ExecutionBackend, Session
from radical.asyncflow.constants import StateMapper

MODES = ('plain', 'profile', 'journal')
DEFAULT_SIZES = [100_000, 1_000_000]
QUICK_SIZE = 2_000
#: Seconds the loop-latency probe asks to sleep.
PROBE_INTERVAL = 0.005


# ------------------------------------------------------------ the test double

class StormBackend(ExecutionBackend):
    """Reports RUNNING then DONE for every task, from ``threads`` threads, in bursts.

    The threads wait until :meth:`release`; each then takes the next burst of
    up to ``burst`` specs (in submission order), reports each RUNNING, then
    each DONE with the value 1.
    """

    _NATIVE = True
    reports_running = True

    def __init__(self, threads: int, burst: int) -> None:
        self._name = 'storm'
        self._burst = burst
        self.session = Session()
        StateMapper.register_backend_states_with_defaults('storm')
        self._states = StateMapper('storm')
        self._bursts: 'queue.SimpleQueue' = queue.SimpleQueue()
        self._release = threading.Event()
        #: Specs submitted so far.
        self.submitted = 0
        self._threads = [threading.Thread(target=self._report, daemon=True,
                                          name=f'storm-{i}') for i in range(threads)]
        for thread in self._threads:
            thread.start()

    async def submit(self, tasks: Sequence[Any], reporter: Any) -> None:
        burst = self._burst
        for i in range(0, len(tasks), burst):
            self._bursts.put((tasks[i:i + burst], reporter))
        self.submitted += len(tasks)

    def release(self) -> None:
        """Let the reporter threads go."""
        self._release.set()

    def _report(self) -> None:
        self._release.wait()
        while True:
            item = self._bursts.get()
            if item is None:
                return
            specs, reporter = item
            running, done = reporter.running, reporter.done
            for spec in specs:
                running(spec)
            for spec in specs:
                done(spec, 1)

    async def cancel_task(self, uid: str) -> bool:
        return False

    async def shutdown(self) -> None:
        self._release.set()
        for _ in self._threads:
            self._bursts.put(None)
        for thread in self._threads:
            thread.join(10)

    def state(self) -> str:
        return 'RUNNING'

    def get_task_states_map(self) -> Any:
        return self._states


# ----------------------------------------------------------- one measurement

def _peak_rss(reset: bool) -> int:
    peak = _peak_since_reset() if reset else None
    return peak if peak is not None else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class LatencyProbe:
    """How late the loop wakes a coroutine that sleeps PROBE_INTERVAL, over and over."""

    def __init__(self) -> None:
        self.lags: List[float] = []
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        clock = time.perf_counter
        while True:
            start = clock()
            await asyncio.sleep(PROBE_INTERVAL)
            self.lags.append(clock() - start - PROBE_INTERVAL)

    def stop(self) -> Dict[str, float]:
        self._task.cancel()
        lags = sorted(self.lags) or [0.0]
        return {'probes': len(self.lags), 'lag_median_ms': statistics.median(lags) * 1e3,
                'lag_p99_ms': lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1e3,
                'lag_max_ms': lags[-1] * 1e3}


async def run_storm(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One storm of spec['n'] tasks in this process; its figures."""
    from radical.asyncflow import WorkflowEngine
    from radical.asyncflow.campaign import journal as journal_module
    n, mode, work_dir = spec['n'], spec['mode'], spec['work_dir']
    flush_time = [0.0]
    journal_path = os.path.join(work_dir, 'storm.journal') if mode == 'journal' else None
    if journal_path:
        flush = journal_module.Journal.flush

        def timed_flush(self: Any) -> None:
            start = time.perf_counter()
            flush(self)
            flush_time[0] += time.perf_counter() - start
        journal_module.Journal.flush = timed_flush

    backend = StormBackend(spec['threads'], spec['burst'])
    engine = await WorkflowEngine.create(backend=backend, work_dir=work_dir, progress=False,
                                         journal=journal_path)

    @engine.function_task
    async def noop(i):
        return 1

    reset = _reset_peak()
    base_rss = _rss_now()
    t0 = time.perf_counter()
    futures = [noop(i) for i in range(n)]
    gathered = asyncio.gather(*futures)
    while backend.submitted < n:            # the engine submits as the loop turns
        await asyncio.sleep(0.001)
    submitted = time.perf_counter()
    probe = LatencyProbe()
    probe.start()
    backend.release()
    results = await gathered
    end = time.perf_counter()
    latency = probe.stop()
    peak = _peak_rss(reset)
    assert results == [1] * n, 'wrong results'
    dropped = engine._outcomes.dropped
    writer = getattr(engine._recorder, 'writer', None)
    if writer is not None:          # format 2: commits on the journal's writer thread
        flush_time[0] = writer.commit_seconds
    t1 = time.perf_counter()
    await engine.shutdown()
    shutdown = time.perf_counter() - t1
    storm = end - submitted
    figures = {'n': n, 'mode': mode, 'threads': spec['threads'], 'burst': spec['burst'],
               'total_s': end - t0, 'submit_s': submitted - t0, 'storm_s': storm,
               'reports_per_s': 2 * n / storm, 'shutdown_s': shutdown,
               'rss_per_task': max(peak - base_rss, 0) / n, 'peak_rss': peak,
               'dropped': dropped, **latency}
    if journal_path:
        figures['journal_rows_per_s'] = n / storm
        figures['journal_commit_s'] = flush_time[0]
        figures['journal_commit_rows_per_s'] = n / flush_time[0] if flush_time[0] else None
        figures['journal_bytes_per_task'] = sum(
            os.path.getsize(p) for p in (journal_path, journal_path + '-wal')
            if os.path.exists(p)) / n
    if mode == 'profile':
        size = 0
        for root, _, files in os.walk(work_dir):
            size += sum(os.path.getsize(os.path.join(root, f)) for f in files
                        if f.endswith('.prof'))
        figures['profile_bytes_per_task'] = size / n
    return figures


def child(spec: Dict[str, Any]) -> None:
    print(json.dumps(asyncio.run(run_storm(spec))))


# ---------------------------------------------------------------- the driver

def run_child(spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    env = dict(os.environ)
    env['RADICAL_ASYNCFLOW_PROFILE'] = 'True' if spec['mode'] == 'profile' else 'False'
    env.pop('RADICAL_ASYNCFLOW_JOURNAL', None)
    with tempfile.TemporaryDirectory(prefix='asyncflow-storm-') as work_dir:
        spec = {**spec, 'work_dir': work_dir}
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--child',
                               json.dumps(spec)], cwd=work_dir, env=env, capture_output=True,
                              text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"storm n={spec['n']} {spec['mode']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_run(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The median run by storm time (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r['storm_s'])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row['runs_storm_s'] = [round(r['storm_s'], 3) for r in runs]
    row['runs_reports_per_s'] = [round(r['reports_per_s']) for r in runs]
    return row


def print_table(rows: List[Dict[str, Any]]) -> None:
    print(f"\n{'tasks':>9s} {'mode':8s} {'total s':>8s} {'storm s':>8s} {'reports/s':>10s} "
          f"{'lag p50/p99/max ms':>20s} {'RSS/task':>9s} {'extra':s}")
    for r in rows:
        extra = ''
        if r['mode'] == 'journal':
            extra = (f"rows/s {r['journal_rows_per_s']:,.0f} (commits alone "
                     f"{r['journal_commit_rows_per_s'] or 0:,.0f}), "
                     f"{r['journal_bytes_per_task']:.0f} B/task")
        elif r['mode'] == 'profile':
            extra = f"profile {r['profile_bytes_per_task']:.0f} B/task"
        lag = f"{r['lag_median_ms']:.1f}/{r['lag_p99_ms']:.1f}/{r['lag_max_ms']:.0f}"
        print(f"{r['n']:9,d} {r['mode']:8s} {r['total_s']:8.2f} {r['storm_s']:8.2f} "
              f"{r['reports_per_s']:10,.0f} {lag:>20s} {r['rss_per_task']:7.0f} B {extra}")


def parse_sizes(text: str) -> List[int]:
    return [int(float(s)) for s in text.split(',') if s.strip()]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=parse_sizes, default=DEFAULT_SIZES,
                        help='task counts (default 1e5,1e6)')
    parser.add_argument('--modes', default=','.join(MODES),
                        help=f'comma-separated, of {", ".join(MODES)} (default: all)')
    parser.add_argument('--threads', type=int, default=4, help='reporter threads (default 4)')
    parser.add_argument('--burst', type=int, default=256,
                        help='tasks per burst of a reporter thread (default 256)')
    parser.add_argument('--repeat', type=int, default=3, help='runs per point (default 3)')
    parser.add_argument('--quick', action='store_true',
                        help=f'{QUICK_SIZE} tasks, one run per mode: a smoke test')
    parser.add_argument('--timeout', type=float, default=1800, help='seconds per run')
    parser.add_argument('--json', help='write every figure to this file')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    modes = [m.strip() for m in args.modes.split(',') if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f'--modes: unknown {", ".join(sorted(unknown))}')
    sizes, repeat = ([QUICK_SIZE], 1) if args.quick else (args.sizes, args.repeat)
    from radical.asyncflow import __version__
    print(f'radical.asyncflow {__version__}, Python {platform.python_version()}, '
          f'{os.cpu_count()} CPUs; {args.threads} reporter threads, bursts of {args.burst}',
          flush=True)
    rows = []
    for n in sizes:
        for mode in modes:
            runs = []
            for i in range(repeat):
                runs.append(run_child({'n': n, 'mode': mode, 'threads': args.threads,
                                       'burst': args.burst}, args.timeout))
                r = runs[-1]
                print(f"  n={n:<9,d} {mode:8s} run {i + 1}: storm {r['storm_s']:7.2f} s "
                      f"{r['reports_per_s']:10,.0f} reports/s, lag max {r['lag_max_ms']:.0f} ms",
                      file=sys.stderr, flush=True)
            rows.append(median_run(runs))
    print_table(rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'python': platform.python_version(), 'platform': platform.platform(),
                       'cpus': os.cpu_count(), 'version': __version__, 'threads': args.threads,
                       'burst': args.burst, 'repeat': repeat, 'results': rows}, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
