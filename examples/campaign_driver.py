"""An ensemble campaign driver: generations of simulations, the best seed the next.

Each generation runs MEMBERS simulations (executable tasks: an external
program evaluates a noisy objective at one parameter point), scores each
result (function tasks), and selects the best KEEP points (one task that
depends on every score).  The next generation samples new points around the
selected ones.  The campaign converges on the minimum at x = 3.

The driver does not name a backend, so where it runs is decided outside it:

    python examples/campaign_driver.py                       # local: thread pool
    radical-asyncflow-run examples/campaign_driver.py        # the same, or inside a
                                                             # SLURM/PBS job: a pilot
                                                             # filling the allocation
    radical-asyncflow-run --backend noop examples/campaign_driver.py   # a dry run
    radical-asyncflow-run --submit slurm --nodes 4 --walltime 120 \\
        examples/campaign_driver.py --members 512 --generations 20

With ``--submit`` the batch script runs it with ``--resume JOURNAL``: a run
stopped by the walltime warning continues where it stopped when the same
script is submitted again (finished simulations are not repeated: every task
is a deterministic function of its arguments).  See docs/hpc.md.
"""

import argparse
import asyncio
import random
import shlex
import statistics
from concurrent.futures import ThreadPoolExecutor

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine
from radical.asyncflow.config import chosen_backends

# The "simulation code": a small awk program, available on every node.  It
# integrates a noisy quadratic objective at x and prints the final value.
SIMULATION = r'''BEGIN {
    srand(seed); e = 0
    for (i = 0; i < steps; i++) e += ((x - 3) ^ 2 + 0.05 * (rand() - 0.5)) / steps
    printf "%.6f\n", e }'''


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--members', type=int, default=16, help='simulations per generation')
    parser.add_argument('--generations', type=int, default=4)
    parser.add_argument('--keep', type=int, default=4, help='best points kept per generation')
    parser.add_argument('--steps', type=int, default=2000, help='work per simulation')
    return parser.parse_args()


async def create_engine():
    """The backend radical-asyncflow-run (or the environment) chose, else a local
    thread pool."""
    if chosen_backends():
        return await WorkflowEngine.create()
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=8))
    return await WorkflowEngine.create(backend=backend)


async def main():
    args = parse_args()
    engine = await create_engine()

    @engine.executable_task(retries=1)
    async def simulate(x, seed, task_description={'ranks': 1}):
        # the command; its stdout is the task's result
        return (f'awk -v x={x:.6f} -v seed={seed} -v steps={args.steps} '
                f'{shlex.quote(SIMULATION)}')

    @engine.function_task
    async def score(x, output):
        return x, float(output)

    @engine.function_task
    async def select(*scored):
        return sorted(scored, key=lambda pair: pair[1])[:args.keep]

    rng = random.Random(2024)
    points = [rng.uniform(-10, 10) for _ in range(args.members)]
    best = []
    for generation in range(args.generations):
        scores = []
        for i, x in enumerate(points):
            result = simulate(x, seed=generation * 100_000 + i)
            scores.append(score(x, result))
        best = await select(*scores)
        if best is None:     # a dry run (--backend noop): the tasks ran nowhere
            print(f'generation {generation}: {len(scores)} simulations and scores, one '
                  f'selection (dry run: no results)', flush=True)
            continue
        spread = statistics.pstdev(x for x, _ in best) if len(best) > 1 else 0.0
        print(f'generation {generation}: best x = {best[0][0]:+.4f} '
              f'(objective {best[0][1]:.5f}, spread of the best {spread:.4f})', flush=True)
        width = max(spread, 0.05)
        points = [rng.gauss(best[i % len(best)][0], width) for i in range(args.members)]

    await engine.shutdown()
    if best is None:
        print(f'dry run done: {args.generations} generations of {args.members} members')
        return
    x = best[0][0]
    print(f'campaign done: x = {x:+.4f} after {args.generations} generations of '
          f'{args.members} members')
    if abs(x - 3) > 1.0:
        raise SystemExit(f'the campaign did not converge (x = {x})')


if __name__ == '__main__':
    asyncio.run(main())
