"""A small DAG whose tasks pass results to each other.

    make_data(1) ─┐
    make_data(2) ─┼─> fit ─┬─> residuals ──┬─> report
    make_data(3) ─┘        │  (+ the data)  │
                           └─> describe ────┘   (an executable task)

Passing a task's future as an argument makes it a dependency; when the task
runs, the argument has been replaced by the dependency's result.  Futures
work as positional or keyword arguments, and inside lists and tuples.

    python examples/02_dag_implicit_data.py
"""

import asyncio
import random
import statistics
from concurrent.futures import ThreadPoolExecutor

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

TRUE_SLOPE, TRUE_INTERCEPT = 2.5, 1.0


async def main():
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=4))
    engine = await WorkflowEngine.create(backend=backend)

    @engine.function_task
    async def make_data(seed, n=200):
        # Noisy measurements of y = 2.5 x + 1.
        rng = random.Random(seed)
        xs = [rng.uniform(0, 10) for _ in range(n)]
        return [(x, TRUE_SLOPE * x + TRUE_INTERCEPT + rng.gauss(0, 0.5)) for x in xs]

    @engine.function_task
    async def fit(batches):
        # `batches` was a list of three futures; here it is a list of three data sets.
        points = [p for batch in batches for p in batch]
        mx = statistics.fmean(x for x, _ in points)
        my = statistics.fmean(y for _, y in points)
        slope = (sum((x - mx) * (y - my) for x, y in points)
                 / sum((x - mx) ** 2 for x, _ in points))
        intercept = my - slope * mx
        return {'slope': slope, 'intercept': intercept, 'n': len(points)}

    @engine.function_task
    async def residuals(batches, model):
        # Depends on the data and on the fit (a diamond in the DAG).
        return [y - (model['slope'] * x + model['intercept'])
                for batch in batches for x, y in batch]

    @engine.executable_task
    async def describe(model):
        # Executable tasks receive results too: here to build the command line.
        return f"echo 'y = {model['slope']:.3f} x + {model['intercept']:.3f}'"

    @engine.function_task
    async def report(model, res, formula):
        # Keyword-argument dependencies; `formula` is the command's stdout.
        return (f"fit of {model['n']} points: {formula.strip()}\n"
                f"true model:        y = {TRUE_SLOPE:.3f} x + {TRUE_INTERCEPT:.3f}\n"
                f"residual std dev:  {statistics.stdev(res):.3f} (noise was 0.500)")

    # Build the whole DAG first: each call returns a future immediately.
    data = [make_data(seed) for seed in (1, 2, 3)]
    model = fit(data)
    res = residuals(data, model)
    text = report(model=model, res=res, formula=describe(model))

    # Only the final result needs awaiting; the engine runs the rest in order.
    print(await text)
    print(f"tasks run: {len(engine.components)}")
    await engine.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
