"""What happens when tasks fail or are cancelled.

1. A function task raises: its future raises that exception.
2. Its dependents are not run: their futures raise DependencyFailure, which
   names the failed dependency and carries the original exception, however
   far down the chain.  Independent tasks are not affected.
3. A command exits non-zero: its future raises a RuntimeError
   (TaskExecutionError) with the exit code and the command's stderr.
4. Cancelling a running task's future kills it in the backend and cancels
   every task that depends on it.

    python examples/05_failure_handling.py
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine
from radical.asyncflow.errors import DependencyFailure


async def main():
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=4))
    engine = await WorkflowEngine.create(backend=backend)

    @engine.function_task
    async def load(path):
        if path.endswith('.bad'):
            raise ValueError(f'{path}: corrupt header')
        return [1.0, 2.0, 3.0]

    @engine.function_task
    async def analyze(data):
        return sum(data) / len(data)

    @engine.function_task
    async def report(value):
        return f'mean = {value}'

    @engine.executable_task
    async def convert(path):
        return f'ls {path}'

    @engine.executable_task
    async def long_simulation():
        return 'sleep 30'

    # -- 1 and 2: a failure and its dependents --------------------------------
    print('1/2. a failing task and the chain behind it')
    good = report(analyze(load('run1.dat')))
    bad_load = load('run2.bad')
    bad_analyze = analyze(bad_load)
    bad_report = report(bad_analyze)
    outcomes = await asyncio.gather(good, bad_load, bad_analyze, bad_report,
                                    return_exceptions=True)
    for label, outcome in zip(['report(run1)', 'load(run2)', 'analyze(run2)',
                               'report(run2)'], outcomes):
        print(f'  {label:<14} -> {type(outcome).__name__}: {outcome}')
    error = outcomes[3]
    if isinstance(error, DependencyFailure):
        print(f'  report(run2).failed_dependencies = {error.failed_dependencies}')
        print(f'  report(run2).root_cause          = {error.root_cause!r}')
        print(f'  root_cause is the same object    : {error.root_cause is outcomes[1]}')

    # -- 3: a command that fails ------------------------------------------------
    print('3. a command exiting non-zero')
    try:
        await convert('/no/such/input.dat')
    except RuntimeError as exc:
        print(f'  {type(exc).__name__}: exit code {exc.exit_code}')
        print(f'  stderr: {exc.stderr}')

    # -- 4: cancellation ----------------------------------------------------------
    print('4. cancelling a running task')
    sim = long_simulation()
    post = analyze(sim)                  # depends on the simulation
    await asyncio.sleep(0.5)             # let the simulation start
    start = time.perf_counter()
    sim.cancel()                         # kills the `sleep 30` process
    for label, fut in (('long_simulation', sim), ('analyze', post)):
        try:
            await fut
        except asyncio.CancelledError:
            print(f'  {label:<16} cancelled')
    print(f'  both settled {time.perf_counter() - start:.3f} s after cancel()')

    await engine.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
