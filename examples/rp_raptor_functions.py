# requires: radical.pilot
"""Python functions on RAPTOR workers of a RADICAL-Pilot pilot.

With ``raptor_config`` the backend starts a RAPTOR master and its workers on
the pilot, and every function task runs there: the async function, its
arguments, its return value and any exception it raises travel pickled, so
a dict comes back as a dict and a ValueError as a ValueError.  Without
``raptor_config`` function tasks still work: each runs as an ordinary RP task
with the driver's Python (slower to start, but each can use ``ranks``,
``pre_exec`` and the rest of the task description).

    python examples/rp_raptor_functions.py
"""

import asyncio
import os

from radical.asyncflow import RadicalExecutionBackend, WorkflowEngine

RAPTOR = {'masters': [{'ranks': 1,
                       'workers': [{'ranks': 2, 'worker_type': 'DefaultWorker'}]}]}


async def main():
    backend = await RadicalExecutionBackend({'resource': 'local.localhost', 'cores': 4,
                                             'runtime': 30, 'sandbox': os.getcwd()}, RAPTOR)
    engine = await WorkflowEngine.create(backend=backend)

    @engine.function_task
    async def collatz_steps(n):
        steps = 0
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            steps += 1
        return steps

    @engine.function_task
    async def longest(steps):
        best = max(range(len(steps)), key=steps.__getitem__)
        return {'start': best + 1, 'steps': steps[best], 'worker_pid': os.getpid()}

    @engine.function_task
    async def checked(x):
        if x < 0:
            raise ValueError(f'{x} is negative')
        return x

    steps = [collatz_steps(n) for n in range(1, 101)]
    best = await longest(steps)
    print(f"longest Collatz chain below 101 starts at {best['start']}: {best['steps']} steps "
          f"(computed in process {best['worker_pid']}, the driver is {os.getpid()})")
    assert best['start'] == 97 and best['steps'] == 118

    try:
        await checked(-3)
    except ValueError as exc:
        print('the worker raised:', repr(exc))

    await engine.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
