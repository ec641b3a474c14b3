"""Engine overhead on RADICAL-Pilot: N ``/bin/true`` tasks through radical.asyncflow
and through raw RP, on one pilot in the same run.

Starts one pilot on ``local.localhost`` (sandboxes in a temporary directory),
then runs the bag of N tasks ``--repeat`` times each way, alternating: raw RP
(``tmgr.submit_tasks`` of N descriptions, ``tmgr.wait_tasks``) and the
engine (N ``@executable_task`` calls, ``asyncio.gather``).  Both run the same
RP task: ``/bin/sh -c /bin/true``.  Prints the rates (tasks/s, submission to
the last result) and the ratio engine / raw.

    python benchmarks/rp.py [--tasks 500] [--cores 8] [--repeat 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time

from radical.asyncflow import RadicalExecutionBackend, WorkflowEngine


def raw_rp(backend, n: int) -> float:
    """Seconds for n tasks through the backend's own TaskManager."""
    import radical.pilot as rp
    tds = [rp.TaskDescription({'executable': '/bin/sh', 'arguments': ['-c', '/bin/true'],
                               'name': 'raw'}) for _ in range(n)]
    start = time.perf_counter()
    tasks = backend.tmgr.submit_tasks(tds)
    backend.tmgr.wait_tasks(uids=[t.uid for t in tasks], timeout=3600)
    elapsed = time.perf_counter() - start
    failed = [t.uid for t in tasks if t.state != rp.DONE]
    assert not failed, f'{len(failed)} raw RP tasks did not finish DONE'
    return elapsed


async def through_engine(engine, n: int) -> float:
    @engine.executable_task
    async def true():
        return '/bin/true'

    start = time.perf_counter()
    results = await asyncio.gather(*[true() for _ in range(n)])
    elapsed = time.perf_counter() - start
    assert results == [''] * n
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tasks', type=int, default=500)
    parser.add_argument('--cores', type=int, default=8,
                        help='pilot cores (local.localhost gives whole 8-core nodes)')
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--json', help='also write the figures to this file')
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix='asyncflow-rp-bench-') as base:
        start = time.perf_counter()
        backend = await RadicalExecutionBackend(
            {'resource': 'local.localhost', 'cores': args.cores, 'sandbox': base},
            work_dir=base)
        startup = time.perf_counter() - start
        engine = await WorkflowEngine.create(backend=backend)
        raw, ours = [], []
        try:
            for _ in range(args.repeat):
                raw.append(await asyncio.to_thread(raw_rp, backend, args.tasks))
                ours.append(await through_engine(engine, args.tasks))
        finally:
            start = time.perf_counter()
            await engine.shutdown()
            shutdown = time.perf_counter() - start

    raw_s, ours_s = statistics.median(raw), statistics.median(ours)
    figures = {'tasks': args.tasks, 'cores': backend.cores, 'repeat': args.repeat,
               'pilot_startup_s': round(startup, 2), 'shutdown_s': round(shutdown, 2),
               'raw_rp_s': round(raw_s, 3), 'engine_s': round(ours_s, 3),
               'raw_rp_tasks_per_s': round(args.tasks / raw_s, 1),
               'engine_tasks_per_s': round(args.tasks / ours_s, 1),
               'ratio_engine_over_raw': round(ours_s / raw_s, 3)}
    print(f"pilot start-up {startup:.1f} s on {backend.cores} cores; shutdown {shutdown:.1f} s")
    print(f"{args.tasks} x /bin/true, median of {args.repeat}:")
    print(f"  raw RP      {raw_s:7.2f} s  {figures['raw_rp_tasks_per_s']:8.1f} tasks/s")
    print(f"  engine      {ours_s:7.2f} s  {figures['engine_tasks_per_s']:8.1f} tasks/s")
    print(f"  ratio engine/raw (time): {figures['ratio_engine_over_raw']:.2f}")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(figures, f, indent=2)


if __name__ == '__main__':
    asyncio.run(main())
