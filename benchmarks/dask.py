"""Engine overhead on Dask: the same workloads through radical.asyncflow and raw Dask.

Runs, on one LocalCluster, (1) a bag of N independent function tasks and
(2) a 1 -> W -> 1 DAG (fan-out, fan-in), each once through
``WorkflowEngine`` on ``DaskExecutionBackend`` and once through raw
``client.submit``, and prints wall times and the ratio engine / raw.

    python benchmarks/dask.py [--tasks 10000] [--width 1000] [--workers 2] [--threads 2]
                              [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

# This file is called dask.py: keep its directory off sys.path, or it shadows dask.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from distributed import Client, LocalCluster  # noqa: E402

from radical.asyncflow import DaskExecutionBackend, WorkflowEngine  # noqa: E402


def ident(i):
    return i


def fan_in(*values):
    return sum(values)


async def engine_bag(engine, n):
    @engine.function_task
    async def work(i):
        return i

    futures = [work(i) for i in range(n)]
    results = await asyncio.gather(*futures)
    assert results[-1] == n - 1


async def engine_dag(engine, width):
    @engine.function_task
    async def source():
        return 1

    @engine.function_task
    async def middle(x, i):
        return x + i

    @engine.function_task
    async def sink(*values):
        return sum(values)

    root = source()
    total = await sink(*[middle(root, i) for i in range(width)])
    assert total == width + width * (width - 1) // 2


async def raw_bag(client, n):
    futures = [client.submit(ident, i, pure=False) for i in range(n)]
    results = await client.gather(futures)
    assert results[-1] == n - 1


async def raw_dag(client, width):
    root = client.submit(ident, 1, pure=False)
    middles = [client.submit(lambda x, i: x + i, root, i, pure=False) for i in range(width)]
    total = await client.submit(fan_in, *middles, pure=False)
    assert total == width + width * (width - 1) // 2


async def timed(coro_factory, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await coro_factory()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


async def main(args):
    cluster = await LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                                 processes=True, asynchronous=True, dashboard_address=None)
    client = await Client(cluster, asynchronous=True, set_as_default=False)
    backend = await DaskExecutionBackend({'scheduler_address': cluster.scheduler_address})
    engine = await WorkflowEngine.create(backend)
    try:
        # warm up both paths (imports, connections, worker caches)
        await raw_bag(client, 200)
        await engine_bag(engine, 200)

        rows = []
        for name, ours, raw in (
                (f'bag of {args.tasks}', lambda: engine_bag(engine, args.tasks),
                 lambda: raw_bag(client, args.tasks)),
                (f'DAG 1->{args.width}->1', lambda: engine_dag(engine, args.width),
                 lambda: raw_dag(client, args.width))):
            raw_best, raw_med = await timed(raw, args.repeat)
            our_best, our_med = await timed(ours, args.repeat)
            rows.append((name, our_best, raw_best, our_med, raw_med))
    finally:
        await engine.shutdown()
        await client.close()
        await cluster.close()

    print(f'{args.workers} worker processes x {args.threads} threads, '
          f'best/median of {args.repeat}')
    print(f"{'workload':<20} {'asyncflow':>10} {'raw dask':>10} {'ratio':>7}   (medians)")
    for name, our_best, raw_best, our_med, raw_med in rows:
        print(f'{name:<20} {our_best:>9.2f}s {raw_best:>9.2f}s {our_best / raw_best:>6.2f}x'
              f'   ({our_med:.2f}s / {raw_med:.2f}s = {our_med / raw_med:.2f}x)')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tasks', type=int, default=10000)
    parser.add_argument('--width', type=int, default=1000)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=3)
    asyncio.run(main(parser.parse_args()))
