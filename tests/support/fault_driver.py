"""Driver of the fault suite: a seeded random DAG with a barrier in the middle.

``python fault_driver.py WORK_DIR N [JOURNAL]``: without JOURNAL the engine
takes its backend and journal from ``radical-asyncflow-run``.  Node
``N // 2`` depends on every node before it and every node after it depends
on it.  With ``FAULT_BLOCK=1`` that middle node writes ``start`` to
``WORK_DIR/events.log`` and then blocks, so a test can kill the driver at a
point where exactly the first half has finished.  Every task appends
``done I PID`` to the same file as its last statement; at exit the driver
writes how its futures ended to ``outcomes.PID.json``.
"""

import asyncio
import atexit
import json
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor

SEED = 42


def dag(n):
    """The dependencies of every node."""
    rng = random.Random(SEED)
    middle = n // 2
    deps = []
    for i in range(n):
        if i == middle:
            deps.append(list(range(middle)))
            continue
        low = max(0, i - 50)
        picked = rng.sample(range(low, i), k=min(i - low, rng.randint(0, 3)))
        if i > middle and middle not in picked:
            picked.append(middle)
        deps.append(sorted(picked))
    return deps


def value(i, dep_values):
    return (7 * i + sum(dep_values)) % 1000003


def expected_results(n):
    results = []
    for i, deps in enumerate(dag(n)):
        results.append(value(i, [results[d] for d in deps]))
    return results


def is_command(i, n):
    return i % 100 == 99 and i != n // 2


def main(work, n, journal):
    from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

    middle = n // 2
    events = os.path.join(work, 'events.log')
    outcomes = {'done': 0, 'failed': 0, 'cancelled': 0, 'pending': 0}
    futures = []

    def event(kind, i):
        fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f'{kind} {i} {os.getpid()}\n'.encode())
        finally:
            os.close(fd)

    def tally(fut):
        if fut.cancelled():
            outcomes['cancelled'] += 1
        elif fut.exception() is not None:
            outcomes['failed'] += 1
        else:
            outcomes['done'] += 1

    def write_outcomes():
        outcomes['pending'] = sum(1 for fut in futures if not fut.done())
        with open(os.path.join(work, f'outcomes.{os.getpid()}.json'), 'w') as handle:
            json.dump(outcomes, handle)

    async def run():
        if journal:
            backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(4))
            engine = await WorkflowEngine.create(backend=backend, journal=journal)
        else:
            engine = await WorkflowEngine.create()

        @engine.function_task
        async def node(i, *deps):
            result = value(i, [int(d) for d in deps])
            if i == middle:
                event('start', i)
                # read here, not from a closure variable: a closure's constants
                # are part of the task's code identity (journal format 2), and
                # the flag differs between the killed run and its resume
                if os.environ.get('FAULT_BLOCK') == '1':
                    await asyncio.sleep(3600)
            event('done', i)            # the side effect, last
            return result

        @engine.executable_task
        async def command(i, *deps):
            result = value(i, [int(d) for d in deps])
            return f'echo {result}; echo "done {i} $PPID" >> {events}'

        atexit.register(write_outcomes)
        for i, deps in enumerate(dag(n)):
            task = command if is_command(i, n) else node
            fut = task(i, *[futures[d] for d in deps])
            fut.add_done_callback(tally)
            futures.append(fut)
        print('SUBMITTED', flush=True)
        results = [int(r) for r in await asyncio.gather(*futures)]
        with open(os.path.join(work, 'results.json'), 'w') as handle:
            json.dump(results, handle)
        await engine.shutdown()
        print('COMPLETED', flush=True)

    asyncio.run(run())


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
