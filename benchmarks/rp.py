"""Throughput on RADICAL-Pilot: the same tasks through raw RP and through the engine,
on one pilot, in the same run.

Three kinds of task (``--kinds``), each run ``--tasks`` at a time:

  executable  ``/bin/true``.  Raw RP: ``rp.TaskDescription`` running
              ``/bin/sh -c /bin/true``, which is what the engine's executable
              task becomes.
  function    a trivial ``async def`` Python function, without RAPTOR.  The
              engine runs it as an executable task: the client's Python runs
              a trampoline that unpickles the call, runs it and hands the
              pickled outcome back.  Raw RP: the fairest equivalent a raw RP
              program has for "run this Python function and give me its
              value" without RAPTOR: an executable task running the same
              Python (``sys.executable -c``) with the call pickled with dill
              (as RP's own ``PythonTask`` does) and passed inline as an
              argument, and the value pickled to stdout, which RP hands back
              in ``task.stdout``: no files, no staging.  Both carry an
              arbitrary function and arguments there and an arbitrary value
              back; neither needs RAPTOR's reserved cores.
  raptor      the same function on RAPTOR workers.  Raw RP: ``rp.PythonTask``
              of the function (mode ``TASK_FUNCTION``) to the same master,
              its value from ``task.return_value``.  The master and workers
              are started for this phase, after the others, so that they do
              not hold cores while executables and plain functions run.

For each kind: a warm-up (``--warmup`` tasks each way, not timed), then
``--repeat`` timed runs each way, raw RP and the engine alternating (and
which goes first alternating too), so that load from other processes hits
both.  A run is timed from building the first description (raw) or calling
the first task (engine) to the last result in hand.  Reported: the median
run, tasks/s, the ratio engine/raw of tasks/s (1.0 = as fast as raw RP;
higher is better), the median of the ratios of each repeat's two adjacent
runs (steadier when the machine's load drifts) and the driver process's CPU
time.

    python benchmarks/rp.py                                   # local.localhost, 8 cores
    python benchmarks/rp.py --tasks 500 --repeat 5 --json rp.json
    python benchmarks/rp.py --kinds function --tasks 100 --rp-profile --keep /tmp/rpb

Inside a SLURM (or PBS) allocation, ``--resource auto`` sizes the pilot to
the allocation (``--nodes N``: only N of its nodes) and starts it in place;
tasks are ``srun`` steps.  The work directory (session, pilot sandboxes)
must then be on the file system every node sees: it defaults to a fresh
directory under the current one::

    salloc --nodes 3 --exclusive
    python benchmarks/rp.py --resource auto --nodes 3 --raptor-workers 3 --json rp-3.json

Any other RP resource label submits the pilot as a batch job
(``--resource asyncflow.slurm --nodes 1 --resources '{"queue": "debug"}'``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from radical.asyncflow import RadicalExecutionBackend, WorkflowEngine, __version__

KINDS = ('executable', 'function', 'raptor')
_RAW_UIDS = itertools.count(1)
#: The program raw RP runs for a plain function task (one line: RP quotes arguments).
RAW_FUNCTION_PROGRAM = (
    'import asyncio,base64,inspect,sys,dill;'
    'f,a,k=dill.loads(base64.b64decode(sys.argv[1]));v=f(*a,**k);'
    'v=asyncio.run(v) if inspect.iscoroutine(v) else v;'
    'sys.stdout.write(base64.b64encode(dill.dumps(v)).decode())')


async def trivial():
    """The function both sides run (defined in __main__: pickled by value on both)."""
    return 1


# --------------------------------------------------------------------- raw RP

def raw_descriptions(rp: Any, kind: str, n: int, master: Optional[str]) -> List[Any]:
    """What a raw RP program submits for n tasks of ``kind``.

    The uids are ``raw.<kind>.NNNNNN`` (RP's own ``task.NNNNNN`` would be the
    engine's uids too, which confuses the profile analysis).
    """
    import dill
    tds = []
    for _ in range(n):
        uid = f'raw.{kind}.{next(_RAW_UIDS):06d}'
        if kind == 'executable':
            td = {'executable': '/bin/sh', 'arguments': ['-c', '/bin/true']}
        elif kind == 'function':
            call = base64.b64encode(dill.dumps((trivial, (), {}), recurse=True)).decode()
            td = {'executable': sys.executable, 'arguments': ['-c', RAW_FUNCTION_PROGRAM, call]}
        else:
            td = {'mode': rp.TASK_FUNCTION, 'raptor_id': master,
                  'function': rp.PythonTask(trivial, (), {})}
        tds.append(rp.TaskDescription({**td, 'uid': uid, 'name': f'raw.{kind}'}))
    return tds


def raw_value(kind: str, task: Any) -> Any:
    """The value a raw RP program gets from a finished task of ``kind``."""
    import dill
    if kind == 'executable':
        return task.stdout or ''
    if kind == 'function':
        return dill.loads(base64.b64decode(task.stdout))
    return task.return_value


def run_raw(backend: Any, kind: str, n: int, master: Optional[str]) -> Tuple[float, float, list]:
    """(seconds, driver CPU seconds, RP uids) of n raw RP tasks on the backend's TaskManager."""
    import radical.pilot as rp
    start, cpu = time.perf_counter(), time.process_time()
    tasks = backend.tmgr.submit_tasks(raw_descriptions(rp, kind, n, master))
    uids = [t.uid for t in tasks]
    backend.tmgr.wait_tasks(uids=uids, timeout=3600)
    values = [raw_value(kind, t) if t.state == rp.DONE else None for t in tasks]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    failed = [t for t in tasks if t.state != rp.DONE]
    if failed:
        t = failed[0]
        raise RuntimeError(f'{len(failed)} raw RP {kind} tasks did not finish DONE; '
                           f'{t.uid}: {t.state} {t.stderr!r:.300} {t.exception!r:.300}')
    expected = '' if kind == 'executable' else 1
    assert values == [expected] * n, f'raw {kind}: unexpected values {values[:3]}'
    return elapsed, cpu, uids


# --------------------------------------------------------------------- engine

def engine_task(engine: Any, kind: str) -> Callable:
    """The decorated task the engine runs for ``kind``."""
    if kind == 'executable':
        @engine.executable_task
        async def true():
            return '/bin/true'
        return true
    return engine.function_task(trivial)


async def run_engine(engine: Any, kind: str, n: int) -> Tuple[float, float]:
    """(seconds, driver CPU seconds) of n tasks of ``kind`` through the engine."""
    task = engine_task(engine, kind)
    start, cpu = time.perf_counter(), time.process_time()
    values = await asyncio.gather(*[task() for _ in range(n)])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    expected = '' if kind == 'executable' else 1
    assert values == [expected] * n, f'engine {kind}: unexpected values {values[:3]}'
    return elapsed, cpu


# ---------------------------------------------------------------- the pilot

def pilot_resources(args: argparse.Namespace, base: str) -> Dict[str, Any]:
    """The PilotDescription keys for ``--resource``/``--nodes``/``--cores``."""
    extra = json.loads(args.resources) if args.resources else {}
    if args.resource == 'auto':
        from radical.asyncflow.cli.batch import detect_allocation, install_rp_resource_configs
        allocation = detect_allocation(walltime=True)
        if allocation is None:
            raise SystemExit('--resource auto: not inside a SLURM or PBS allocation')
        install_rp_resource_configs()
        os.environ.update(allocation.pilot_environment(base))
        resources = allocation.pilot_resources()
        if args.nodes:
            if args.nodes > len(allocation.nodes):
                raise SystemExit(f'--nodes {args.nodes}: the allocation has '
                                 f'{len(allocation.nodes)}')
            resources['cores'] = args.nodes * allocation.cores_per_node
            resources['gpus'] = args.nodes * allocation.gpus_per_node
        print(f'allocation: {allocation.describe()}')
    else:
        resources = {'resource': args.resource}
        if args.nodes:
            resources['nodes'] = args.nodes
        else:
            resources['cores'] = args.cores
        if args.resource.startswith('local.'):
            resources['sandbox'] = base
    resources.setdefault('runtime', args.runtime)
    resources.update(extra)
    return resources


def raptor_config(args: argparse.Namespace, nodes: int) -> Dict[str, Any]:
    workers = args.raptor_workers or max(1, nodes)
    return {'masters': [{'ranks': 1, 'workers': [
        {'ranks': args.worker_ranks, 'worker_type': 'DefaultWorker'}
        for _ in range(workers)]}]}


async def start_raptor(backend: Any, config: Dict[str, Any], settle: float) -> str:
    """Start RAPTOR on the running pilot; the master's uid, once its workers run.

    The benchmark starts it late on purpose (see the module docstring); a
    program gives ``raptor_config`` to the constructor instead.  This uses the
    backend's internals: the same code path the constructor's config takes.
    Then it waits until every worker runs, and ``settle`` seconds more: RP
    1.103's DefaultWorker loses the requests that reach it before its
    ``__init__`` is through (its listener dies on ``self._rlock``), and the
    runs would hang.
    """
    import radical.pilot as rp
    from radical.asyncflow.backends.execution.radical_pilot.raptor import parse_raptor_config
    backend.raptor_config = config
    backend._masters_spec = parse_raptor_config(config)
    await asyncio.to_thread(backend._start_raptors)
    master, raptor = next(iter(backend._raptors.items()))
    workers = backend.tmgr.get_tasks(uids=list(raptor.workers))
    deadline = time.monotonic() + 600
    while any(w.state != rp.AGENT_EXECUTING for w in workers):
        if time.monotonic() > deadline or any(w.state in rp.FINAL for w in workers):
            raise RuntimeError(f'RAPTOR workers did not start: '
                               f'{[(w.uid, w.state) for w in workers]}')
        await asyncio.sleep(0.5)
    await asyncio.sleep(settle)
    return master


def pilot_nodes(backend: Any) -> int:
    try:
        return len(backend.pilot.resource_details['node_list'])
    except Exception:
        return 1


# ----------------------------------------------------------------- measuring

async def measure_kind(backend: Any, engine: Any, kind: str, args: argparse.Namespace,
                       master: Optional[str]) -> Dict[str, Any]:
    """Warm-up, then --repeat alternating runs each way; the figures of ``kind``."""
    uids: Dict[str, List[str]] = {'raw': [], 'engine': []}

    async def engine_run(n: int) -> Tuple[float, float]:
        before = set(backend.tmgr.list_tasks())
        result = await run_engine(engine, kind, n)
        uids['engine'].extend(sorted(set(backend.tmgr.list_tasks()) - before))
        return result

    async def raw_run(n: int) -> Tuple[float, float]:
        seconds, cpu, new = await asyncio.to_thread(run_raw, backend, kind, n, master)
        uids['raw'].extend(new)
        return seconds, cpu

    if args.warmup:
        await raw_run(args.warmup)
        await engine_run(args.warmup)
        uids = {'raw': [], 'engine': []}
    runs: Dict[str, List[Tuple[float, float]]] = {'raw': [], 'engine': []}
    for i in range(args.repeat):
        order = (('raw', raw_run), ('engine', engine_run))
        for side, run in (order if i % 2 == 0 else order[::-1]):
            runs[side].append(await run(args.tasks))
            seconds, cpu = runs[side][-1]
            print(f'  {kind:10s} {side:6s} run {i + 1}: {seconds:7.2f} s  '
                  f'{args.tasks / seconds:7.1f} tasks/s  driver CPU {cpu:6.2f} s', flush=True)
    figures: Dict[str, Any] = {'kind': kind, 'tasks': args.tasks, 'repeat': args.repeat}
    for side in ('raw', 'engine'):
        seconds = statistics.median(s for s, _ in runs[side])
        figures[side] = {'seconds': [round(s, 3) for s, _ in runs[side]],
                         'cpu_seconds': [round(c, 3) for _, c in runs[side]],
                         'median_seconds': round(seconds, 3),
                         'tasks_per_s': round(args.tasks / seconds, 2),
                         'median_cpu_seconds': round(statistics.median(
                             c for _, c in runs[side]), 3)}
    figures['ratio'] = round(figures['engine']['tasks_per_s'] / figures['raw']['tasks_per_s'], 3)
    # Each repeat's raw and engine runs are adjacent: the median of their ratios
    # is steadier than the ratio of medians when the machine's load drifts.
    figures['ratio_of_pairs'] = round(statistics.median(
        raw / ours for (raw, _), (ours, _) in zip(runs['raw'], runs['engine'])), 3)
    figures['uids'] = uids
    return figures


def print_table(results: List[Dict[str, Any]], repeat: int) -> None:
    print(f'\nmedian of {repeat} runs each (tasks/s; ratio = engine/raw, target >= 0.9; '
          f'pairs = median of the ratios of adjacent runs):')
    print(f"{'kind':12s}{'tasks':>7s}{'raw tasks/s':>13s}{'engine tasks/s':>16s}"
          f"{'ratio':>8s}{'pairs':>8s}{'CPU s raw':>11s}{'CPU s engine':>14s}")
    for r in results:
        print(f"{r['kind']:12s}{r['tasks']:7d}{r['raw']['tasks_per_s']:13.1f}"
              f"{r['engine']['tasks_per_s']:16.1f}{r['ratio']:8.2f}{r['ratio_of_pairs']:8.2f}"
              f"{r['raw']['median_cpu_seconds']:11.2f}{r['engine']['median_cpu_seconds']:14.2f}")


# ------------------------------------------------------------- RP profiles

def state_durations(base: str, results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Median seconds between RP's state advances, per kind and side (``--rp-profile``).

    Reads every ``*.prof`` file under ``base`` (the client session and the
    pilot sandbox); for each task the first time it reached each state.
    """
    first: Dict[str, Dict[str, float]] = {}
    for root, _, files in os.walk(base):
        for name in files:
            if not name.endswith('.prof') or name.startswith(('radical.asyncflow', 'asyncflow')):
                continue
            with open(os.path.join(root, name), errors='replace') as f:
                for line in f:
                    parts = line.rstrip('\n').split(',')
                    if len(parts) < 6 or parts[1] != 'advance' or not parts[5]:
                        continue
                    try:
                        stamp = float(parts[0])
                    except ValueError:
                        continue
                    seen = first.setdefault(parts[4], {})
                    if stamp < seen.get(parts[5], float('inf')):
                        seen[parts[5]] = stamp
    out: Dict[str, Any] = {}
    for r in results:
        for side, uids in r['uids'].items():
            steps: Dict[str, List[float]] = {}
            for uid in uids:
                states = sorted(first.get(uid, {}).items(), key=lambda kv: kv[1])
                for (a, ta), (b, tb) in zip(states, states[1:]):
                    steps.setdefault(f'{a} -> {b}', []).append(tb - ta)
                if len(states) > 1:
                    steps.setdefault('first -> last (all)', []).append(
                        states[-1][1] - states[0][1])
            out[f"{r['kind']} {side}"] = {step: round(statistics.median(v), 4)
                                          for step, v in steps.items()}
    return out


def print_durations(durations: Dict[str, Any]) -> None:
    print('\nRP state advances, median seconds per task:')
    for what, steps in durations.items():
        print(f'  {what}:')
        for step, seconds in steps.items():
            print(f'    {step:60s} {seconds:8.4f}')


# ---------------------------------------------------------------------- main

def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--kinds', default=','.join(KINDS),
                        help=f'comma-separated, of {", ".join(KINDS)} (default: all)')
    parser.add_argument('--tasks', type=int, default=200, help='tasks per run (default 200)')
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed runs each way per kind; the median is reported (default 3)')
    parser.add_argument('--warmup', type=int, default=8,
                        help='untimed tasks each way before the runs of a kind (default 8)')
    parser.add_argument('--resource', default='local.localhost',
                        help="RP resource label, or 'auto': the SLURM/PBS allocation this "
                             "runs in (default local.localhost)")
    parser.add_argument('--cores', type=int, default=8,
                        help='pilot cores unless --nodes (default 8; local.localhost '
                             'gives whole 8-core nodes)')
    parser.add_argument('--nodes', type=int, default=0, help='pilot nodes (instead of cores)')
    parser.add_argument('--runtime', type=int, default=60, help='pilot runtime, minutes')
    parser.add_argument('--resources', help='more PilotDescription keys, as a JSON object')
    parser.add_argument('--raptor-workers', type=int, default=0,
                        help='RAPTOR workers (default: one per pilot node)')
    parser.add_argument('--worker-ranks', type=int, default=4,
                        help='ranks per RAPTOR worker (default 4)')
    parser.add_argument('--raptor-settle', type=float, default=10.0,
                        help='seconds to wait after the RAPTOR workers run (default 10)')
    parser.add_argument('--work-dir', help='session and sandboxes go here (default: a '
                        'temporary directory; under the current one when not local.*)')
    parser.add_argument('--keep', action='store_true', help='keep the work directory')
    parser.add_argument('--rp-profile', action='store_true',
                        help="enable RP's profiles (RADICAL_PROFILE) and report the median "
                             'time between state advances, per kind and side')
    parser.add_argument('--json', help='write every figure to this file')
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(',') if k.strip()]
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f'--kinds: unknown {", ".join(sorted(unknown))}')
    return args


async def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.rp_profile:
        os.environ['RADICAL_PROFILE'] = 'TRUE'
    local = args.resource.startswith('local.')
    if args.work_dir:
        base = os.path.abspath(args.work_dir)
        os.makedirs(base, exist_ok=True)
    else:
        base = tempfile.mkdtemp(prefix='asyncflow-rp-bench-', dir=None if local else os.getcwd())
    resources = pilot_resources(args, base)
    print(f'radical.asyncflow {__version__}, Python {platform.python_version()}, '
          f'{os.cpu_count()} CPUs; pilot {json.dumps(resources)}; work dir {base}', flush=True)

    start = time.perf_counter()
    backend = await RadicalExecutionBackend(resources, work_dir=base)
    startup = time.perf_counter() - start
    nodes = pilot_nodes(backend)
    print(f'pilot up in {startup:.1f} s: {backend.cores} cores on {nodes} node(s)', flush=True)
    results: List[Dict[str, Any]] = []
    figures: Dict[str, Any] = {}
    try:
        engine = await WorkflowEngine.create(backend=backend, progress=False)
        master = None
        for kind in [k for k in KINDS if k in args.kinds]:
            if kind == 'raptor':
                config = raptor_config(args, nodes)
                master = await start_raptor(backend, config, args.raptor_settle)
                figures['raptor_config'] = config
            results.append(await measure_kind(backend, engine, kind, args, master))
        await engine.shutdown(skip_execution_backend=True)
    finally:
        start = time.perf_counter()
        await backend.shutdown()
        shutdown = time.perf_counter() - start
    print(f'pilot shut down in {shutdown:.1f} s')
    print_table(results, args.repeat)
    submitted = sum(len(r['uids'][side]) for r in results for side in ('raw', 'engine'))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f'driver peak RSS {peak / 2**20:.0f} MiB after {submitted} timed tasks '
          f'(RP keeps every task in the client)')
    figures.update({'driver_peak_rss': peak, 'timed_tasks': submitted})
    figures.update({'python': platform.python_version(), 'platform': platform.platform(),
                    'cpus': os.cpu_count(), 'version': __version__, 'resources': resources,
                    'pilot_cores': backend.cores, 'pilot_nodes': nodes,
                    'pilot_startup_s': round(startup, 2), 'shutdown_s': round(shutdown, 2),
                    'results': results})
    if args.rp_profile:
        figures['rp_state_durations'] = state_durations(base, results)
        print_durations(figures['rp_state_durations'])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(figures, f, indent=2)
    if args.keep or args.work_dir:
        print(f'work directory kept: {base}')
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(asyncio.run(main()))
