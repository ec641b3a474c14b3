"""The local backend with function tasks that block: ours, upstream 0.6.0's, plain asyncio.

Workloads (every run in a fresh Python process, in a temporary directory):

  B4   4 ``async def`` function tasks that each block 1 s (``time.sleep(1)``)
       on a ThreadPoolExecutor(4), while a 10 ms ticker runs on the loop:
       total seconds and the ticker's worst lag (how late its wake-up came)
  W1T  N no-op ``async def`` function tasks on a thread-pool backend (tasks/s)
  W6   N function tasks that each block 10 ms, on a pool of WORKERS threads,
       against ``loop.run_in_executor`` on a pool of the same size

Implementations:

  ours      radical.asyncflow's ConcurrentExecutionBackend (this checkout)
  ours-loop the same with coroutine bodies on the event loop, where the
            backend offers that choice (``coroutines_on_loop=True``)
  upstream  radical-asyncflow 0.6.0's LocalExecutionBackend (needs a python
            with it installed: --upstream-python; never the project's venv)
  plain     asyncio alone: ``loop.run_in_executor`` of the sync body

    python benchmarks/local_backend.py --upstream-python /tmp/upvenv/bin/python
    python benchmarks/local_backend.py --workloads B4 --impls ours,plain --repeat 3

The runs of the implementations are interleaved; the table shows medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

#: Threads of the pool in W1T and W6 (ThreadPoolExecutor's default size).
WORKERS = min(32, (os.cpu_count() or 1) + 4)
SIZES = {'B4': 4, 'W1T': 1000, 'W6': 600}
#: Seconds each W6 task blocks.
W6_BLOCK = 0.010
TICK = 0.010


# ------------------------------------------------------------------ the child

async def _ticker(stop: asyncio.Event, lags: List[float]) -> None:
    """Sleep TICK again and again; record how late each wake-up is."""
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(time.perf_counter() - t0 - TICK)


async def _engine(impl: str, pool: Any) -> Any:
    from radical.asyncflow import WorkflowEngine
    if impl == 'upstream':
        from radical.asyncflow import LocalExecutionBackend
        backend = await LocalExecutionBackend(pool)
    else:
        from radical.asyncflow import ConcurrentExecutionBackend
        kwargs = {'coroutines_on_loop': True} if impl == 'ours-loop' else {}
        backend = await ConcurrentExecutionBackend(pool, **kwargs)
    return await WorkflowEngine.create(backend=backend)


def _block(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


async def child(workload: str, impl: str, n: int) -> Dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(4 if workload == 'B4' else WORKERS)
    block = 1.0 if workload == 'B4' else W6_BLOCK
    engine = None
    if impl != 'plain':
        engine = await _engine(impl, pool)
        if workload == 'W1T':
            @engine.function_task
            async def node():
                return None
        else:
            @engine.function_task
            async def node():
                time.sleep(block)           # a scientist's blocking work
                return block
    else:
        loop = asyncio.get_running_loop()
        if workload == 'W1T':
            def node():
                return loop.run_in_executor(pool, lambda: None)
        else:
            def node():
                return loop.run_in_executor(pool, _block, block)

    stop, lags = asyncio.Event(), []
    ticker = asyncio.create_task(_ticker(stop, lags))
    await asyncio.sleep(3 * TICK)           # the ticker is running before the work starts
    t0 = time.perf_counter()
    results = await asyncio.gather(*[node() for _ in range(n)], return_exceptions=True)
    elapsed = time.perf_counter() - t0
    stop.set()
    await ticker
    errors = [r for r in results if isinstance(r, BaseException)]
    if engine is not None:
        await engine.shutdown()
    else:
        pool.shutdown()
    return {'seconds': elapsed, 'tasks_per_s': n / elapsed, 'worst_lag_s': max(lags or [0.0]),
            'errors': len(errors), 'first_error': repr(errors[0]) if errors else None}


# ----------------------------------------------------------------- the parent

def run_child(python: str, workload: str, impl: str, n: int, timeout: float) -> Dict[str, Any]:
    env = dict(os.environ, RADICAL_ASYNCFLOW_PROGRESS='0')
    spec = json.dumps({'workload': workload, 'impl': impl, 'n': n})
    with tempfile.TemporaryDirectory(prefix='asyncflow-bench-') as cwd:
        proc = subprocess.run([python, os.path.abspath(__file__), '--child', spec], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {'error': proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                else f'exit {proc.returncode}'}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workloads', default='B4,W1T,W6')
    parser.add_argument('--impls', default='ours,upstream,plain')
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--sizes', type=json.loads, default={},
                        help='JSON object overriding N per workload, e.g. {"W1T": 200}')
    parser.add_argument('--python', default=sys.executable, help='python for ours and plain')
    parser.add_argument('--upstream-python', help='python with radical-asyncflow 0.6.0')
    parser.add_argument('--timeout', type=float, default=600)
    parser.add_argument('--json', metavar='PATH')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(asyncio.run(child(spec['workload'], spec['impl'], spec['n']))))
        return 0

    impls = [i for i in args.impls.split(',') if i != 'upstream' or args.upstream_python]
    rows = []
    print(f'{"workload":8} {"impl":10} {"N":>5} {"seconds":>8} {"tasks/s":>9} '
          f'{"worst lag":>9}  (median of {args.repeat})')
    for workload in args.workloads.split(','):
        n = args.sizes.get(workload, SIZES[workload])
        # interleaved (ours, upstream, plain, ours, ...): load changes hit all alike
        runs_of: Dict[str, List[Dict[str, Any]]] = {impl: [] for impl in impls}
        for _ in range(args.repeat):
            for impl in impls:
                python = args.upstream_python if impl == 'upstream' else args.python
                runs_of[impl].append(run_child(python, workload, impl, n, args.timeout))
        for impl in impls:
            runs = runs_of[impl]
            good = [r for r in runs if 'error' not in r and not r['errors']]
            if not good:
                bad = next(iter(runs))
                print(f'{workload:8} {impl:10} {n:>5}  failed: '
                      f'{bad.get("error") or bad.get("first_error")}')
                rows.append({'workload': workload, 'impl': impl, 'n': n, 'runs': runs})
                continue
            med = {k: statistics.median(r[k] for r in good)
                   for k in ('seconds', 'tasks_per_s', 'worst_lag_s')}
            rows.append({'workload': workload, 'impl': impl, 'n': n, **med, 'runs': runs})
            print(f'{workload:8} {impl:10} {n:>5} {med["seconds"]:8.3f} '
                  f'{med["tasks_per_s"]:9.1f} {med["worst_lag_s"]:9.3f}')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
