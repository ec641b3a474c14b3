"""Engine overhead: radical.asyncflow against plain asyncio on the same DAGs.

Workloads (the engine runs on the Noop backend unless said otherwise):

  W1  N independent no-op function tasks            (N = 1e3, 1e4, 1e5; --sizes)
  W2  a chain of N tasks, each depending on the last (N = 1e3, 1e4)
  W3  fan-out/fan-in 1 -> N -> 1                     (N = 1e3, 1e4)
  W4  a random DAG of 1e5 tasks, 3 dependencies each (seeded)
  W5  1,000 executable /bin/true tasks on the Concurrent backend
      against asyncio.create_subprocess_exec

"plain" is the same DAG as plain asyncio: one asyncio.create_task per node,
awaiting its dependencies' tasks.  Every (workload, size, implementation)
runs in a fresh Python process, so peak RSS belongs to that workload alone.
Timing covers building the DAG and awaiting it; engine creation and shutdown
are outside it.  ratio = our time / plain time (lower is better).

    python benchmarks/engine.py                   # default sizes
    python benchmarks/engine.py --quick           # seconds, for CI
    python benchmarks/engine.py --sizes 1e3,1e4,1e5,1e6 --json out.json --png out.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

DEFAULT_SIZES = [1_000, 10_000, 100_000]
CHAIN_SIZES = [1_000, 10_000]
FAN_SIZES = [1_000, 10_000]
DAG_SIZE, DAG_DEGREE, DAG_SEED = 100_000, 3, 42
EXEC_SIZE = 1_000

QUICK = {'W1': [100, 1_000], 'W2': [100], 'W3': [100], 'W4': [1_000], 'W5': [50]}

TITLES = {
    'W1': 'independent',
    'W2': 'chain',
    'W3': 'fan-out/in',
    'W4': 'random DAG x3',
    'W5': '/bin/true',
}


# ---------------------------------------------------------------- DAG shapes

def dag_edges(workload: str, n: int) -> List[List[int]]:
    """deps[i] = the nodes node i depends on (all < i); node n-1 is awaited last."""
    if workload == 'W1' or workload == 'W5':
        return [[] for _ in range(n)]
    if workload == 'W2':
        return [[]] + [[i - 1] for i in range(1, n)]
    if workload == 'W3':
        # n counts the fanned-out middle; plus the source and the sink.
        return [[]] + [[0] for _ in range(n)] + [list(range(1, n + 1))]
    if workload == 'W4':
        rng = random.Random(DAG_SEED)
        return [rng.sample(range(i), min(i, DAG_DEGREE)) for i in range(n)]
    raise ValueError(workload)


# -------------------------------------------------------- the two contenders

async def run_ours(workload: str, deps: List[List[int]]) -> Dict[str, float]:
    from radical.asyncflow import WorkflowEngine
    if workload == 'W5':
        from concurrent.futures import ThreadPoolExecutor
        from radical.asyncflow import ConcurrentExecutionBackend
        backend = await ConcurrentExecutionBackend(ThreadPoolExecutor())
        engine = await WorkflowEngine.create(backend=backend)

        @engine.executable_task
        async def node(*deps):
            return '/bin/true'
    else:
        engine = await WorkflowEngine.create(dry_run=True)     # Noop backend

        @engine.function_task
        async def node(*deps):
            return None

    base = _start_measuring()
    t0, c0 = time.perf_counter(), _cpu()
    futures = []
    append = futures.append
    for d in deps:
        append(node(*[futures[j] for j in d]) if d else node())
    results = await asyncio.gather(*futures, return_exceptions=True)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    await engine.shutdown()
    return _figures(elapsed, cpu, base, results)


async def run_plain(workload: str, deps: List[List[int]]) -> Dict[str, float]:
    if workload == 'W5':
        PIPE = asyncio.subprocess.PIPE

        async def node(*deps):
            for dep in deps:
                await dep
            proc = await asyncio.create_subprocess_exec('/bin/true', stdout=PIPE, stderr=PIPE,
                                                        stdin=asyncio.subprocess.DEVNULL)
            out, _ = await proc.communicate()
            if proc.returncode:
                raise RuntimeError(f'exit {proc.returncode}')
            return out.decode()
    else:
        async def node(*deps):
            for dep in deps:
                await dep
            return None

    base = _start_measuring()
    t0, c0 = time.perf_counter(), _cpu()
    tasks = []
    append = tasks.append
    create_task = asyncio.create_task
    for d in deps:
        append(create_task(node(*[tasks[j] for j in d])))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    return _figures(elapsed, cpu, base, results)


_PEAK_RESET = False


def _start_measuring() -> int:
    """RSS now, with the peak-RSS count restarted where the kernel allows."""
    global _PEAK_RESET
    _PEAK_RESET = _reset_peak()
    return _rss_now()


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its waited-for children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _reset_peak() -> bool:
    """Restart the kernel's peak-RSS count (Linux >= 4.0); False if impossible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _peak_since_reset() -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss_now() -> int:
    try:
        import psutil
        return psutil.Process().memory_info().rss
    except ImportError:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _figures(elapsed: float, cpu: float, base: int, results: list) -> Dict[str, Any]:
    errors = [r for r in results if isinstance(r, BaseException)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux
    # The growth while the workflow ran: the peak since the reset made just
    # before it started, else the process's peak (which includes start-up).
    run_peak = _peak_since_reset() if _PEAK_RESET else None
    return {'seconds': elapsed, 'cpu_seconds': cpu, 'peak_rss': peak,
            'base_rss': base, 'run_peak_rss': run_peak or peak, 'errors': len(errors),
            'first_error': repr(errors[0]) if errors else None}


def child(spec: Dict[str, Any]) -> None:
    """Run one measurement in this (fresh) process; print its figures as JSON."""
    if spec['workload'] == 'W5':
        # Every command holds three pipes while it runs; 1,000 at once need more
        # than the usual soft limit of 1,024 descriptors.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))
    deps = dag_edges(spec['workload'], spec['n'])
    runner = run_ours if spec['impl'] == 'ours' else run_plain
    figures = asyncio.run(runner(spec['workload'], deps))
    figures['tasks'] = len(deps)
    print(json.dumps(figures))


# ---------------------------------------------------------------- the driver

def measure(workload: str, n: int, impl: str, repeat: int, timeout: float) -> Dict[str, Any]:
    """Best (fastest) of ``repeat`` runs, each in a fresh interpreter."""
    spec = json.dumps({'workload': workload, 'n': n, 'impl': impl})
    best: Optional[Dict[str, Any]] = None
    with tempfile.TemporaryDirectory(prefix='asyncflow-bench-') as cwd:   # engine files land here
        for _ in range(repeat):
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', spec],
                                  cwd=cwd, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f'{workload} n={n} {impl} failed:\n{proc.stderr[-3000:]}')
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
            if best is None or figures['seconds'] < best['seconds']:
                best = figures
    best.update(workload=workload, n=n, impl=impl,
                tasks_per_s=best['tasks'] / best['seconds'] if best['seconds'] else float('inf'),
                rss_per_task=max(best['run_peak_rss'] - best['base_rss'], 0) / best['tasks'])
    return best


def plan(args: argparse.Namespace) -> List[tuple]:
    if args.quick:
        sizes = dict(QUICK)
    else:
        sizes = {'W1': args.sizes, 'W2': CHAIN_SIZES, 'W3': FAN_SIZES,
                 'W4': [DAG_SIZE], 'W5': [EXEC_SIZE]}
    wanted = args.workloads or list(sizes)
    return [(w, n) for w in wanted for n in sizes[w]]


def _mib(nbytes: float) -> str:
    return f'{nbytes / 2**20:.0f}'


def print_table(rows: List[Dict[str, Any]]) -> None:
    head = (f"{'workload':<18}{'tasks':>8}  {'impl':<6}{'wall s':>9}{'tasks/s':>11}"
            f"{'ratio':>7}{'CPU s':>8}{'peak RSS MiB':>14}{'RSS/task KiB':>14}")
    print(head)
    print('-' * len(head))
    by_key = {(r['workload'], r['n'], r['impl']): r for r in rows}
    for r in rows:
        plain = by_key.get((r['workload'], r['n'], 'plain'))
        ratio = (f"{r['seconds'] / plain['seconds']:.2f}"
                 if r['impl'] == 'ours' and plain else '')
        label = f"{r['workload']} {TITLES[r['workload']]}"
        errors = f"  ({r['errors']} errors)" if r['errors'] else ''
        print(f"{label:<18}{r['tasks']:>8}  {r['impl']:<6}{r['seconds']:>9.3f}"
              f"{r['tasks_per_s']:>11,.0f}{ratio:>7}{r['cpu_seconds']:>8.2f}"
              f"{_mib(r['peak_rss']):>14}{r['rss_per_task'] / 1024:>14.2f}{errors}")


def write_png(rows: List[Dict[str, Any]], path: str) -> None:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print(f'matplotlib is not installed: skipping {path} (pip install matplotlib)')
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {'W1': 'C0', 'W2': 'C1', 'W3': 'C2', 'W4': 'C3', 'W5': 'C4'}
    for workload in TITLES:
        for impl, style in (('ours', '-o'), ('plain', '--s')):
            pts = sorted((r['tasks'], r['tasks_per_s']) for r in rows
                         if r['workload'] == workload and r['impl'] == impl)
            if pts:
                name = 'radical.asyncflow' if impl == 'ours' else 'plain asyncio'
                ax.plot(*zip(*pts), style, color=colors[workload],
                        label=f'{workload} {TITLES[workload]}: {name}')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('tasks in the workflow')
    ax.set_ylabel('tasks per second')
    ax.set_title('Throughput vs workflow size (W1-W4 on the Noop backend, W5 on Concurrent)',
                 fontsize=10)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f'wrote {path}')


def parse_sizes(text: str) -> List[int]:
    try:
        return [int(float(s)) for s in text.split(',') if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'sizes are numbers like 1e3,1e4: {text!r}')


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='small sizes, for a CI smoke run')
    parser.add_argument('--sizes', type=parse_sizes, default=DEFAULT_SIZES,
                        help='W1 sizes, e.g. 1e3,1e4,1e5,1e6 (default 1e3,1e4,1e5)')
    parser.add_argument('--workloads', type=lambda s: [w.strip().upper() for w in s.split(',')],
                        help='run only these, e.g. W1,W4')
    parser.add_argument('--repeat', type=int, default=1, help='runs per point; the fastest counts')
    parser.add_argument('--timeout', type=float, default=1800, help='seconds per run')
    parser.add_argument('--json', metavar='PATH', help='write all figures to PATH')
    parser.add_argument('--png', metavar='PATH', help='write a throughput chart (needs matplotlib)')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child(json.loads(args.child))
        return 0
    unknown = set(args.workloads or ()) - set(TITLES)
    if unknown:
        parser.error(f"unknown workloads {', '.join(sorted(unknown))}: choose from W1..W5")

    from radical.asyncflow import __version__
    print(f'radical.asyncflow {__version__}, Python {platform.python_version()}, '
          f'{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs')
    rows = []
    for workload, n in plan(args):
        for impl in ('ours', 'plain'):
            rows.append(measure(workload, n, impl, args.repeat, args.timeout))
            print(f"  {workload} n={n:<7} {impl:<5} {rows[-1]['seconds']:8.3f} s",
                  file=sys.stderr, flush=True)
    print()
    print_table(rows)
    failed = sum(r['errors'] for r in rows)

    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'python': platform.python_version(), 'platform': platform.platform(),
                       'cpus': os.cpu_count(), 'version': __version__,
                       'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                       'quick': args.quick, 'repeat': args.repeat, 'results': rows},
                      f, indent=1)
        print(f'wrote {args.json}')
    if args.png:
        write_png(rows, args.png)
    if failed:
        print(f'{failed} tasks failed: the figures above are not valid', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
