"""Blocks of blocks: a temperature search as nested sub-workflows.

    campaign(system)                 one per system, both run at the same time
      └─ stage x3, one after the other, each narrowing the temperature window
           └─ replica x4 at different temperatures, concurrently
                └─ md_run ──> score   (two tasks)

A block is an ``async def`` that submits tasks (or other blocks) and returns a
value.  Calling it returns a future, like a task; futures passed to it are its
dependencies and arrive as results.

    python examples/04_blocks.py
"""

import asyncio
import random
import time
from concurrent.futures import ThreadPoolExecutor

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

# The (unknown to the workflow) temperature at which each system is most stable.
OPTIMUM = {'argon': 87.0, 'water': 300.0}
REPLICAS, STAGES = 4, 3


async def main():
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=8))
    engine = await WorkflowEngine.create(backend=backend)
    t0 = time.perf_counter()

    @engine.function_task
    async def md_run(system, temperature, seed):
        await asyncio.sleep(0.05)                     # pretend to simulate
        rng = random.Random(seed)
        return (temperature - OPTIMUM[system]) ** 2 / 100 + rng.gauss(0, 0.1)

    @engine.function_task
    async def score(energy, temperature):
        return temperature, energy

    @engine.block
    async def replica(system, temperature, seed):
        # Innermost block: a two-task chain.
        return await score(md_run(system, temperature, seed), temperature)

    @engine.block
    async def stage(system, number, center, width):
        # Four replica blocks at once; the best temperature is the next center.
        temps = [center + width * (i / (REPLICAS - 1) - 0.5) for i in range(REPLICAS)]
        results = await asyncio.gather(*[replica(system, t, seed=number * 100 + i)
                                         for i, t in enumerate(temps)])
        best_t, best_e = min(results, key=lambda r: r[1])
        print(f'  {time.perf_counter() - t0:5.2f}s  {system:<6} stage {number}: '
              f'T in [{temps[0]:6.1f}, {temps[-1]:6.1f}] -> best {best_t:6.1f} K')
        return best_t

    @engine.block
    async def campaign(system, start, width):
        # Stages run one after the other: each depends on the previous one's
        # future (passed as `center`), so it starts when that one is done.
        center = start
        for number in range(1, STAGES + 1):
            center = stage(system, number, center, width)
            width /= 2
        return await center

    print('temperature search (two campaigns in parallel):')
    found = await asyncio.gather(campaign('argon', 150.0, 200.0),
                                 campaign('water', 250.0, 200.0))

    kinds = [c['type'].value for c in engine.components.values()]
    await engine.shutdown()

    for system, t in zip(OPTIMUM, found):
        print(f'{system}: found {t:.1f} K (true optimum {OPTIMUM[system]:.1f} K)')
    print(f"{kinds.count('block')} blocks and {kinds.count('task')} tasks "
          f'in {time.perf_counter() - t0:.2f} s')


if __name__ == '__main__':
    asyncio.run(main())
