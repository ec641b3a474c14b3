"""An ensemble of 64 random-walk simulations, then one aggregation task.

Half of the members run an external program (executable tasks: the command's
stdout is the result), half run a Python function (function tasks).  The
aggregation task depends on all 64 and receives their results.  For a 1-D
random walk of N unit steps the mean squared displacement is N, which the
summary checks.

    python examples/01_ensemble.py
"""

import asyncio
import random
import shlex
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

MEMBERS = 64          # ensemble size: 32 executable + 32 function tasks
STEPS = 10_000        # steps per random walk

# The "external simulation code": a tiny Python program run as a command.
WALK_PROGRAM = ('import random, sys; r = random.Random(int(sys.argv[1])); '
                'print(sum(r.choice((-1, 1)) for _ in range(int(sys.argv[2]))))')


def random_walk(seed, steps):
    """The same simulation as a Python function: final position of the walker."""
    rng = random.Random(seed)
    return sum(rng.choice((-1, 1)) for _ in range(steps))


async def main():
    # Run tasks on this machine; commands run as subprocesses.
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=8))
    engine = await WorkflowEngine.create(backend=backend)

    @engine.executable_task
    async def simulate_exe(seed):
        # An executable task returns the shell command to run.
        return f'{shlex.quote(sys.executable)} -c {shlex.quote(WALK_PROGRAM)} {seed} {STEPS}'

    @engine.function_task
    async def simulate_py(seed):
        # Function tasks run on the event loop: hand CPU work to a thread
        # so the engine stays responsive while it computes.
        return await asyncio.to_thread(random_walk, seed, STEPS)

    @engine.function_task
    async def aggregate(*positions):
        # Receives the results of all members (executables give their stdout).
        x = [int(p) for p in positions]
        return {'members': len(x),
                'mean': statistics.fmean(x),
                'msd': statistics.fmean(v * v for v in x)}

    start = time.perf_counter()
    # The ensemble: 64 futures, returned at once; all members are independent.
    members = [simulate_exe(seed) if seed % 2 == 0 else simulate_py(seed)
               for seed in range(MEMBERS)]
    # The aggregation waits for every member (they are its dependencies).
    summary = await aggregate(*members)
    elapsed = time.perf_counter() - start

    await engine.shutdown()

    print(f"ensemble of {summary['members']} random walks "
          f"({MEMBERS // 2} executable + {MEMBERS // 2} function tasks), {STEPS} steps each")
    rows = [('mean final position', f"{summary['mean']:.1f}", 'expected 0'),
            ('mean squared displacement', f"{summary['msd']:.0f}", f'expected {STEPS}'),
            ('MSD / steps', f"{summary['msd'] / STEPS:.2f}", 'expected 1'),
            ('wall time', f'{elapsed:.2f} s', '')]
    for label, value, note in rows:
        print(f'  {label:<26} {value:>8}   {note}')

if __name__ == '__main__':
    asyncio.run(main())
