"""Engine overhead: radical.asyncflow against plain asyncio on the same DAGs.

Workloads (the engine runs on the Noop backend unless said otherwise):

  W1  N independent no-op function tasks            (N = 1e3, 1e4, 1e5; --sizes)
  W2  a chain of N tasks, each depending on the last (N = 1e3, 1e4)
  W3  fan-out/fan-in 1 -> N -> 1                     (N = 1e3, 1e4)
  W4  a random DAG of 1e5 tasks, 3 dependencies each (seeded)
  W5  1,000 executable /bin/true tasks on the Concurrent backend
      against asyncio.create_subprocess_exec
  R1  W1 routed: the engine has two Noop backends, tasks alternate between them
  R3  W3 routed likewise (the fan's members alternate)

The routing overhead is R1 (R3) against W1 (W3), ours against ours: the
summary line after the table gives it.

"plain" is the same DAG as plain asyncio: one asyncio.create_task per node,
awaiting its dependencies' tasks.  In W5 both sides run at most WORKERS
commands at once: the backend bounds running commands by its pool's size,
and plain asyncio gets a semaphore of the same size.  Every (workload, size,
implementation) runs in a fresh Python process, so peak RSS belongs to that
workload alone; ours and plain runs alternate, and each figure is the median
of --repeat runs.  Timing covers building the DAG and awaiting it; engine
creation and shutdown are outside it.  ratio = our time / plain time (lower
is better).  "held" is what the engine still holds per task once the workflow
is over and the program dropped its futures and results (tracemalloc, in a
separate run of at most HELD_MAX tasks).

    python benchmarks/engine.py                   # default sizes
    python benchmarks/engine.py --quick           # seconds, for CI
    python benchmarks/engine.py --sizes 1e3,1e4,1e5,1e6 --json out.json --png out.png
    python benchmarks/engine.py --profiling --workloads W1,W4 --repeat 5   # profile cost
    python benchmarks/engine.py --telemetry --workloads W1 --repeat 5     # start_telemetry cost
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

QUICK = {'W1': [100, 1_000], 'W2': [100], 'W3': [100], 'W4': [1_000], 'W5': [50],
         'R1': [1_000], 'R3': [100]}
#: The routed workloads and the graphs they share with the single-backend ones.
ROUTED = {'R1': 'W1', 'R3': 'W3'}
#: Commands running at once in W5, on both sides (ThreadPoolExecutor's default size).
WORKERS = min(32, (os.cpu_count() or 1) + 4)
#: The engine's held memory is measured on at most this many tasks (tracemalloc is slow).
HELD_MAX = 100_000

TITLES = {
    'W1': 'independent',
    'W2': 'chain',
    'W3': 'fan-out/in',
    'W4': 'random DAG x3',
    'W5': '/bin/true',
    'R1': 'routed W1',
    'R3': 'routed W3',
}


# ---------------------------------------------------------------- DAG shapes

def dag_edges(workload: str, n: int) -> List[List[int]]:
    """deps[i] = the nodes node i depends on (all < i); node n-1 is awaited last."""
    workload = ROUTED.get(workload, workload)
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

async def _our_engine(workload: str) -> tuple:
    """The engine for ``workload`` and its decorated node function."""
    from radical.asyncflow import WorkflowEngine
    if workload == 'W5':
        from concurrent.futures import ThreadPoolExecutor
        from radical.asyncflow import ConcurrentExecutionBackend
        backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=WORKERS))
        engine = await WorkflowEngine.create(backend=backend)

        @engine.executable_task
        async def node(*deps):
            return '/bin/true'
    elif workload in ROUTED:
        from radical.asyncflow import NoopExecutionBackend
        engine = await WorkflowEngine.create(backend=[NoopExecutionBackend(name='one'),
                                                      NoopExecutionBackend(name='two')])

        async def noop(*deps):
            return None

        on_one = engine.function_task(noop)
        on_two = engine.function_task(noop, backend='two')
        count = [0]

        def node(*deps):            # every other task on the second backend
            count[0] += 1
            return on_two(*deps) if count[0] % 2 else on_one(*deps)
    else:
        engine = await WorkflowEngine.create(dry_run=True)     # Noop backend

        @engine.function_task
        async def node(*deps):
            return None
    return engine, node


async def run_ours(workload: str, deps: List[List[int]]) -> Dict[str, float]:
    engine, node = await _our_engine(workload)
    if os.environ.get(TELEMETRY_VAR) == '1':       # --telemetry: started before the clock
        await engine.start_telemetry(resource_poll_interval=60)
    base = _start_measuring()
    t0, c0 = time.perf_counter(), _cpu()
    futures = []
    append = futures.append
    for d in deps:
        append(node(*[futures[j] for j in d]) if d else node())
    results = await asyncio.gather(*futures, return_exceptions=True)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    t1 = time.perf_counter()
    await engine.shutdown()          # writes what is left of the profile, and the summary
    figures = _figures(elapsed, cpu, base, results)
    figures['shutdown_seconds'] = time.perf_counter() - t1
    return figures


async def run_held(workload: str, deps: List[List[int]]) -> Dict[str, Any]:
    """Bytes the engine still holds once the program dropped its futures and results."""
    import gc
    import tracemalloc
    engine, node = await _our_engine(workload)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    futures: List[Any] = []
    append = futures.append
    for d in deps:
        append(node(*[futures[j] for j in d]) if d else node())
    results = await asyncio.gather(*futures, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    del futures, results, append
    for _ in range(2):
        await asyncio.sleep(0)       # the loop lets go of the handles that woke us
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    await engine.shutdown()
    return {'held_bytes': held, 'errors': len(errors),
            'first_error': repr(errors[0]) if errors else None}


async def run_plain(workload: str, deps: List[List[int]]) -> Dict[str, float]:
    if workload == 'W5':
        PIPE = asyncio.subprocess.PIPE
        slots = asyncio.Semaphore(WORKERS)      # as many at once as the backend runs

        async def node(*deps):
            for dep in deps:
                await dep
            async with slots:
                proc = await asyncio.create_subprocess_exec(
                    '/bin/true', stdout=PIPE, stderr=PIPE, stdin=asyncio.subprocess.DEVNULL)
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
    runner = run_plain if spec['impl'] == 'plain' else run_held if spec.get('held') else run_ours
    figures = asyncio.run(runner(spec['workload'], deps))
    figures['tasks'] = len(deps)
    print(json.dumps(figures))


# ---------------------------------------------------------------- the driver

def _run_child(spec: Dict[str, Any], cwd: str, timeout: float,
               env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """One measurement in a fresh interpreter (``env`` added to ours)."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', json.dumps(spec)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['workload']} n={spec['n']} {spec['impl']} failed:\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(runs: List[Dict[str, Any]], workload: str, n: int, impl: str) -> Dict[str, Any]:
    """The median run by wall time (the lower middle one for an even count)."""
    runs = sorted(runs, key=lambda r: r['seconds'])
    row = dict(runs[(len(runs) - 1) // 2])
    row.update(workload=workload, n=n, impl=impl, runs_seconds=[r['seconds'] for r in runs],
               tasks_per_s=row['tasks'] / row['seconds'] if row['seconds'] else float('inf'),
               rss_per_task=max(row['run_peak_rss'] - row['base_rss'], 0) / row['tasks'])
    return row


def measure(workload: str, n: int, impl: str, repeat: int, timeout: float,
            env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Median of ``repeat`` runs, each in a fresh interpreter (``env`` added)."""
    spec = {'workload': workload, 'n': n, 'impl': impl}
    with tempfile.TemporaryDirectory(prefix='asyncflow-bench-') as cwd:   # engine files land here
        runs = [_run_child(spec, cwd, timeout, env) for _ in range(repeat)]
    return _median(runs, workload, n, impl)


def measure_pair(workload: str, n: int, repeat: int, timeout: float) -> List[Dict[str, Any]]:
    """Ours and plain, their runs alternating (noise hits both alike), as medians.

    Ours also gets the memory the engine holds per finished task.
    """
    runs: Dict[str, List[Dict[str, Any]]] = {'ours': [], 'plain': []}
    with tempfile.TemporaryDirectory(prefix='asyncflow-bench-') as cwd:   # engine files land here
        for _ in range(repeat):
            for impl in runs:
                runs[impl].append(_run_child({'workload': workload, 'n': n, 'impl': impl},
                                             cwd, timeout))
                print(f"  {workload} n={n:<7} {impl:<5} {runs[impl][-1]['seconds']:8.3f} s",
                      file=sys.stderr, flush=True)
        held = _run_child({'workload': workload, 'n': min(n, HELD_MAX), 'impl': 'ours',
                           'held': True}, cwd, timeout)
    ours = _median(runs['ours'], workload, n, 'ours')
    ours.update(held_per_task=held['held_bytes'] / held['tasks'], held_tasks=held['tasks'],
                errors=ours['errors'] + held['errors'])
    return [ours, _median(runs['plain'], workload, n, 'plain')]


PROFILE_ENV = {'off': {'RADICAL_ASYNCFLOW_PROFILE': 'False', 'RADICAL_ASYNCFLOW_PROGRESS': '0'},
               'on': {'RADICAL_ASYNCFLOW_PROFILE': 'True', 'RADICAL_ASYNCFLOW_PROGRESS': '0'}}


def profiling_overhead(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """The engine with its task profile off and on, runs interleaved; best of --repeat.

    Time counts the run and the shutdown (which writes the rest of the profile).
    """
    rows = []
    for workload, n in plan(args):
        best: Dict[str, Dict[str, Any]] = {}
        for _ in range(max(args.repeat, 1)):
            for mode in ('off', 'on'):
                got = measure(workload, n, 'ours', 1, args.timeout, env=PROFILE_ENV[mode])
                got['total_seconds'] = got['seconds'] + got.get('shutdown_seconds', 0.0)
                if mode not in best or got['total_seconds'] < best[mode]['total_seconds']:
                    best[mode] = got
        off, on = best['off'], best['on']
        rows.append({'workload': workload, 'n': n, 'tasks': on['tasks'],
                     'off_seconds': off['total_seconds'], 'on_seconds': on['total_seconds'],
                     'off_cpu': off['cpu_seconds'], 'on_cpu': on['cpu_seconds'],
                     'overhead': on['total_seconds'] / off['total_seconds'] - 1,
                     'errors': off['errors'] + on['errors']})
        print(f"  {workload} n={n:<7} off {off['total_seconds']:7.3f} s  on "
              f"{on['total_seconds']:7.3f} s", file=sys.stderr, flush=True)
    print(f"{'workload':<18}{'tasks':>8}{'profile off s':>15}{'profile on s':>14}"
          f"{'overhead':>10}{'CPU off':>9}{'CPU on':>8}")
    for r in rows:
        print(f"{r['workload'] + ' ' + TITLES[r['workload']]:<18}{r['tasks']:>8}"
              f"{r['off_seconds']:>15.3f}{r['on_seconds']:>14.3f}{r['overhead']:>+10.1%}"
              f"{r['off_cpu']:>9.2f}{r['on_cpu']:>8.2f}")
    return rows


#: Set to 1 in a child: its engine runs with start_telemetry() (--telemetry).
TELEMETRY_VAR = 'ASYNCFLOW_BENCH_TELEMETRY'


def telemetry_overhead(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """The engine without and with ``start_telemetry()``, runs interleaved; medians.

    The ratio is of CPU time (the run, not the shutdown): on a shared machine
    it moves less than wall time.
    """
    rows = []
    for workload, n in plan(args):
        runs: Dict[str, List[Dict[str, Any]]] = {'off': [], 'on': []}
        for _ in range(max(args.repeat, 1)):
            for mode in runs:
                env = {**PROFILE_ENV['off'], TELEMETRY_VAR: '1' if mode == 'on' else '0'}
                runs[mode].append(measure(workload, n, 'ours', 1, args.timeout, env=env))
        off, on = ([r['cpu_seconds'] for r in runs[m]] for m in ('off', 'on'))
        ratios = sorted(b / a for a, b in zip(off, on))
        row = {'workload': workload, 'n': n, 'off_cpu': sorted(off), 'on_cpu': sorted(on),
               'ratio_of_medians': _mid(on) / _mid(off), 'median_pair_ratio': _mid(ratios),
               'errors': sum(r['errors'] for m in runs for r in runs[m])}
        rows.append(row)
        print(f"{workload} n={n}: CPU s off {_mid(off):.3f} on {_mid(on):.3f}; on/off "
              f"{row['ratio_of_medians']:.3f} (median of paired ratios "
              f"{row['median_pair_ratio']:.3f}, {len(ratios)} pairs)", flush=True)
    return rows


def _mid(values: List[float]) -> float:
    values = sorted(values)
    return values[(len(values) - 1) // 2]


def plan(args: argparse.Namespace) -> List[tuple]:
    if args.quick:
        sizes = dict(QUICK)
    else:
        sizes = {'W1': args.sizes, 'W2': CHAIN_SIZES, 'W3': FAN_SIZES,
                 'W4': [DAG_SIZE], 'W5': [EXEC_SIZE], 'R1': args.sizes, 'R3': FAN_SIZES}
    wanted = args.workloads or list(sizes)
    return [(w, n) for w in wanted for n in sizes[w]]


def _mib(nbytes: float) -> str:
    return f'{nbytes / 2**20:.0f}'


def print_table(rows: List[Dict[str, Any]]) -> None:
    head = (f"{'workload':<18}{'tasks':>8}  {'impl':<6}{'wall s':>9}{'tasks/s':>11}"
            f"{'ratio':>7}{'CPU s':>8}{'CPU ratio':>10}{'peak RSS MiB':>14}"
            f"{'RSS/task KiB':>14}{'held B/task':>13}")
    print(head)
    print('-' * len(head))
    by_key = {(r['workload'], r['n'], r['impl']): r for r in rows}
    for r in rows:
        plain = by_key.get((r['workload'], r['n'], 'plain'))
        ratio = cpu_ratio = ''
        if r['impl'] == 'ours' and plain:
            ratio = f"{r['seconds'] / plain['seconds']:.2f}"
            if plain['cpu_seconds'] > 0:
                cpu_ratio = f"{r['cpu_seconds'] / plain['cpu_seconds']:.2f}"
        label = f"{r['workload']} {TITLES[r['workload']]}"
        errors = f"  ({r['errors']} errors)" if r['errors'] else ''
        held = f"{r['held_per_task']:.0f}" if 'held_per_task' in r else ''
        print(f"{label:<18}{r['tasks']:>8}  {r['impl']:<6}{r['seconds']:>9.3f}"
              f"{r['tasks_per_s']:>11,.0f}{ratio:>7}{r['cpu_seconds']:>8.2f}{cpu_ratio:>10}"
              f"{_mib(r['peak_rss']):>14}{r['rss_per_task'] / 1024:>14.2f}{held:>13}{errors}")


def print_routing(rows: List[Dict[str, Any]]) -> None:
    """Routed against single-backend, ours against ours: what routing costs."""
    by_key = {(r['workload'], r['n'], r['impl']): r for r in rows}
    for routed, single in ROUTED.items():
        for r in rows:
            base = by_key.get((single, r['n'], 'ours'))
            if r['workload'] == routed and r['impl'] == 'ours' and base:
                print(f"routing cost {routed} vs {single}, n={r['n']}: "
                      f"{100 * (r['seconds'] / base['seconds'] - 1):+.1f}% wall, "
                      f"{100 * (r['cpu_seconds'] / max(base['cpu_seconds'], 1e-9) - 1):+.1f}% CPU")


def write_png(rows: List[Dict[str, Any]], path: str) -> None:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print(f'matplotlib is not installed: skipping {path} (pip install matplotlib)')
        return
    fig, (ax, rax) = plt.subplots(1, 2, figsize=(12, 4.5),
                                  gridspec_kw={'width_ratios': [3, 2]})
    colors = {'W1': 'C0', 'W2': 'C1', 'W3': 'C2', 'W4': 'C3', 'W5': 'C4'}
    by_key = {(r['workload'], r['n'], r['impl']): r for r in rows}
    for workload in TITLES:
        for impl, style in (('ours', '-o'), ('plain', '--s')):
            pts = sorted((r['tasks'], r['tasks_per_s']) for r in rows
                         if r['workload'] == workload and r['impl'] == impl)
            if pts:
                name = 'radical.asyncflow' if impl == 'ours' else 'plain asyncio'
                ax.plot(*zip(*pts), style, color=colors[workload],
                        label=f'{workload} {TITLES[workload]}: {name}')
        ratios = sorted((r['tasks'], r['seconds'] / by_key[(workload, r['n'], 'plain')]['seconds'])
                        for r in rows if r['workload'] == workload and r['impl'] == 'ours'
                        and (workload, r['n'], 'plain') in by_key)
        if ratios:
            rax.plot(*zip(*ratios), '-o', color=colors[workload],
                     label=f'{workload} {TITLES[workload]}')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('tasks in the workflow')
    ax.set_ylabel('tasks per second')
    ax.set_title('Throughput vs workflow size (W1-W4 on the Noop backend, W5 on Concurrent)',
                 fontsize=10)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=7)
    rax.set_xscale('log')
    rax.set_ylim(bottom=0)
    rax.axhline(1.0, color='grey', linewidth=0.8)
    rax.set_xlabel('tasks in the workflow')
    rax.set_ylabel('wall time, radical.asyncflow / plain asyncio')
    rax.set_title('Engine overhead (1 = none)', fontsize=10)
    rax.grid(True, which='both', alpha=0.3)
    rax.legend(fontsize=7, loc='lower right')
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
    parser.add_argument('--repeat', type=int, default=None,
                        help='runs per point, the median counts (default 3; 1 with --quick)')
    parser.add_argument('--timeout', type=float, default=1800, help='seconds per run')
    parser.add_argument('--json', metavar='PATH', help='write all figures to PATH')
    parser.add_argument('--png', metavar='PATH', help='write a throughput chart (needs matplotlib)')
    parser.add_argument('--profiling', action='store_true',
                        help='instead: the cost of the task profile (profiling off vs on, '
                             'run + shutdown, runs interleaved, best of --repeat)')
    parser.add_argument('--telemetry', action='store_true',
                        help='instead: the cost of engine.start_telemetry() (off vs on, '
                             'runs interleaved, CPU-time medians)')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child(json.loads(args.child))
        return 0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    unknown = set(args.workloads or ()) - set(TITLES)
    if unknown:
        parser.error(f"unknown workloads {', '.join(sorted(unknown))}: choose from W1..W5, R1, R3")

    from radical.asyncflow import __version__
    print(f'radical.asyncflow {__version__}, Python {platform.python_version()}, '
          f'{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs')
    if args.telemetry:
        rows = telemetry_overhead(args)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump({'telemetry': rows, 'version': __version__}, f, indent=1)
        return 1 if any(r['errors'] for r in rows) else 0
    if args.profiling:
        rows = profiling_overhead(args)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump({'profiling': rows, 'version': __version__}, f, indent=1)
        return 1 if any(r['errors'] for r in rows) else 0
    rows = []
    for workload, n in plan(args):
        rows.extend(measure_pair(workload, n, args.repeat, args.timeout))
    print()
    print_table(rows)
    print_routing(rows)
    failed = sum(r['errors'] for r in rows)

    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'python': platform.python_version(), 'platform': platform.platform(),
                       'cpus': os.cpu_count(), 'version': __version__,
                       'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                       'quick': args.quick, 'repeat': args.repeat, 'workers': WORKERS,
                       'profile': os.environ.get('RADICAL_ASYNCFLOW_PROFILE', 'default'),
                       'results': rows},
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
