# requires: dask
"""An ensemble on a Dask cluster: Monte Carlo estimates of pi, then a summary.

Sixteen members each throw darts at the unit square in a Dask worker process
(function tasks); a command reports the host each worker ran on (an
executable task: its stdout is the result); one summary task depends on all
of them and combines their results.  The backend starts a LocalCluster here;
pass ``{'scheduler_address': 'tcp://host:8786'}`` instead to use a cluster
that is already running (it is left running afterwards).

    python examples/dask_ensemble.py
"""

import asyncio
import math
import time

from radical.asyncflow import DaskExecutionBackend, WorkflowEngine

MEMBERS = 16
DARTS = 200_000


async def main():
    backend = await DaskExecutionBackend({'n_workers': 2, 'threads_per_worker': 1,
                                          'processes': True})
    engine = await WorkflowEngine.create(backend=backend)

    @engine.function_task
    async def estimate_pi(seed, darts):
        import random
        rng = random.Random(seed)
        inside = sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(darts))
        return 4.0 * inside / darts

    @engine.executable_task
    async def worker_host(task_description={'environment': {'LC_ALL': 'C'}}):
        return 'uname -n'

    @engine.function_task
    async def summarize(estimates, host):
        mean = sum(estimates) / len(estimates)
        spread = max(estimates) - min(estimates)
        return mean, spread, host.strip()

    start = time.perf_counter()
    members = [estimate_pi(seed, DARTS) for seed in range(MEMBERS)]
    mean, spread, host = await summarize(members, worker_host())
    elapsed = time.perf_counter() - start
    await engine.shutdown()

    print(f'{MEMBERS} members x {DARTS} darts on {host}: pi ~ {mean:.5f} '
          f'(spread {spread:.4f}, error {abs(mean - math.pi):.5f}) in {elapsed:.1f}s')
    assert abs(mean - math.pi) < 0.01


if __name__ == '__main__':      # Dask starts worker processes that import this file
    asyncio.run(main())
