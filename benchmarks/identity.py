"""The cost of code-aware task identities (radical.asyncflow.campaign.identity).

Per function (once per decorated function and run): the code fingerprint,
first computed and then from the cache.  Per task: the call digest, its
occurrence and key (what every call of a task pays with a journal), for a
small and a larger argument list, with and without a dependency.

    python benchmarks/identity.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from radical.asyncflow.campaign import identity

HELPERS = '''
import math
SCALE = 3

def normalize(v):
    return v / max(1, abs(v))

class Acc:
    def add(self, xs):
        return sum(normalize(x) for x in xs)

async def analyze(x, factor=2, *rest):
    """A task with a helper, a class, a lambda and a comprehension."""
    total = Acc().add([x, *rest])
    values = sorted([v * SCALE for v in rest], key=lambda v: -v)
    if not values:
        return math.sqrt(abs(total)) * factor
    try:
        return total / values[0]
    except ZeroDivisionError:
        return 0
'''


def timed(func, n):
    # CPU time of this process: the machine is shared, wall time counts the others
    start = time.process_time()
    for _ in range(n):
        func()
    return (time.process_time() - start) / n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args(argv)
    ns = {'__name__': 'driver'}
    exec(compile(HELPERS, '/campaign/driver.py', 'exec'), ns)
    analyze = ns['analyze']
    from radical.asyncflow.core.scheduler import Scheduler
    rows = {}

    def first(func):
        return lambda: identity._Fingerprinter().function(func)

    cached = identity._Fingerprinter()
    cached.function(analyze)
    small_args, big_args = (7,), (list(range(100)), {'k': 'v' * 100}, 3.5, 'name')

    class Dep:                      # stands for a dependency future
        pass
    dep = Dep()

    def key_of(v):
        return 'd' * 32 if v is dep else None

    def per_task(args):
        occurrences = identity.Occurrences()

        def one():
            _, whole = identity.call_digest('driver.analyze', args, {}, key_of)
            identity.task_key(whole, occurrences.next(whole))
        return one

    cases = [
        ('function, first time (helper, class, lambda)', first(analyze), 300),
        ('function, first time (Scheduler.prepare: 14 user functions)',
         first(Scheduler.prepare), 20),
        ('function, cached', lambda: cached.function(analyze), 20_000),
        ('task key, 1 int argument', per_task(small_args), 20_000),
        ('task key, 1 dependency + 1 int', per_task((dep, 1)), 20_000),
        ('task key, list of 100 ints, dict, float, str', per_task(big_args), 5_000),
        ('command fingerprint (command + 2 keys)',
         lambda: identity.command_fingerprint('md --seed 7 -n 100',
                                              {'environment': {'A': '1'}, 'ranks': 4}),
         20_000),
    ]
    for label, func, n in cases:
        rows[label] = statistics.median(timed(func, n) for _ in range(args.repeat))
    print(f'Python {sys.version.split()[0]}; CPU time, median of {args.repeat} runs')
    for label, seconds in rows.items():
        print(f'  {label:62s} {seconds * 1e6:9.2f} µs')
    parts = identity._Fingerprinter().function(Scheduler.prepare).parts
    print(f'  (Scheduler.prepare covers {len(parts)} functions/classes)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
