"""CPU-bound function tasks in worker processes (ProcessPoolExecutor).

With a ProcessPoolExecutor each function task runs in a worker process, so
pure-Python number crunching uses several cores.  The task functions must be
defined at module level (the worker finds them by module and name) and their
arguments and results must be picklable.  Decorate them inside ``main()``,
once the engine exists: ``task = engine.function_task(func)``.

    python examples/06_process_pool.py
"""

import asyncio
import os
import time
from concurrent.futures import ProcessPoolExecutor

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

LIMIT = 400_000       # count the primes below this number
CHUNKS = 8


async def count_primes(lo, hi):
    """Primes in [lo, hi) by trial division; runs in a worker process."""
    count = 0
    for n in range(max(lo, 2), hi):
        if n % 2 == 0:
            count += n == 2
            continue
        d = 3
        while d * d <= n:
            if n % d == 0:
                break
            d += 2
        else:
            count += 1
    return count, os.getpid()


async def total(*parts):
    """Sum the per-chunk counts; runs in a worker process too."""
    return sum(count for count, _ in parts), sorted({pid for _, pid in parts})


async def main():
    workers = min(4, os.cpu_count() or 1)
    backend = await ConcurrentExecutionBackend(ProcessPoolExecutor(max_workers=workers))
    engine = await WorkflowEngine.create(backend=backend)

    # Module-level functions become tasks here.
    count_task = engine.function_task(count_primes)
    total_task = engine.function_task(total)

    start = time.perf_counter()
    step = LIMIT // CHUNKS
    parts = [count_task(lo, lo + step) for lo in range(0, LIMIT, step)]
    primes, pids = await total_task(*parts)
    elapsed = time.perf_counter() - start

    await engine.shutdown()

    print(f'{primes} primes below {LIMIT} (in {CHUNKS} chunks)')
    print(f'computed by {len(pids)} worker processes (pids {pids}), '
          f'driver pid {os.getpid()}')
    print(f'wall time {elapsed:.2f} s with {workers} workers')


if __name__ == '__main__':
    asyncio.run(main())
