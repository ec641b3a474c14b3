"""A heterogeneous campaign: simulations on one backend, analysis on another.

An ensemble of executable "simulations" runs on the backend named ``sim``;
each writes a trajectory file (an ``OutputFile``) and prints its last value.
A per-member analysis, a Python function, runs on the backend named
``analysis``: it gets the simulation's stdout as an argument and reads the
trajectory (an ``InputFile``), which crosses from one backend to the other by
path.  A final aggregation (on ``analysis`` too) gets every member's result.
All of it in one dependency graph, each task in its workflow's lane.

    python examples/08_heterogeneous.py           # sim: threads, analysis: Dask
    python examples/08_heterogeneous.py --rp      # sim: a RADICAL-Pilot pilot, analysis: threads

Without dask installed, the first form runs the analysis on threads too.
"""
# requires: dask

import argparse
import asyncio
import shlex
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

from radical.asyncflow import ConcurrentExecutionBackend, InputFile, OutputFile, WorkflowEngine

MEMBERS = 8
STEPS = 200

# The "simulation code": a deterministic walk, one value per line into a file.
SIMULATION = ('import sys; seed, steps, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]; '
              'values = [(seed * 7 + k * 3) % 11 for k in range(steps)]; '
              'open(out, "w").write("\\n".join(map(str, values)) + "\\n"); '
              'print(values[-1])')


def expected(member):
    """What member ``member``'s analysis computes, for checking the run."""
    values = [(member * 7 + k * 3) % 11 for k in range(STEPS)]
    return {'member': member, 'last': values[-1], 'mean': statistics.fmean(values)}


async def make_backends(use_rp):
    """(sim, analysis): the two backends of the engine, by name."""
    if use_rp:
        from radical.asyncflow import RadicalExecutionBackend
        sim = await RadicalExecutionBackend({'resource': 'local.localhost', 'cores': 2,
                                             'runtime': 30}, name='sim')
        analysis = await ConcurrentExecutionBackend(ThreadPoolExecutor(4), name='analysis')
        return sim, analysis
    sim = await ConcurrentExecutionBackend(ThreadPoolExecutor(4), name='sim')
    try:
        from radical.asyncflow import DaskExecutionBackend
        analysis = await DaskExecutionBackend({'n_workers': 2, 'threads_per_worker': 1,
                                               'processes': False}, name='analysis')
    except ImportError:
        analysis = await ConcurrentExecutionBackend(ThreadPoolExecutor(4), name='analysis')
    return sim, analysis


async def main(use_rp):
    sim, analysis = await make_backends(use_rp)
    # The first backend is the default; tasks name the other one.
    engine = await WorkflowEngine.create(backend=[sim, analysis])

    @engine.executable_task(backend='sim')
    async def simulate(member, trajectory):
        return (f'{shlex.quote(sys.executable)} -c {shlex.quote(SIMULATION)} '
                f'{member} {STEPS} {trajectory}')

    @engine.function_task(backend='analysis')
    async def analyze(member, stdout, trajectory):
        with open(trajectory.filename) as handle:          # written on the other backend
            values = [int(line) for line in handle]
        return {'member': member, 'last': int(stdout), 'mean': statistics.fmean(values)}

    @engine.function_task(backend='analysis')
    async def aggregate(*results):
        return {'members': len(results),
                'mean of means': statistics.fmean(r['mean'] for r in results),
                'results': sorted(results, key=lambda r: r['member'])}

    async with engine.workflow_scope('ensemble'):
        analyses = []
        for member in range(MEMBERS):
            name = f'trajectory.{member}.dat'
            run = simulate(member, OutputFile(name))
            analyses.append(analyze(member, run, InputFile(name)))
        summary = await aggregate(*analyses)
    print(f"{summary['members']} members: simulations on {type(sim).__name__}, "
          f"analysis on {type(analysis).__name__}")
    print(f"mean of means {summary['mean of means']:.4f} "
          f"(expected {statistics.fmean(expected(m)['mean'] for m in range(MEMBERS)):.4f})")
    ok = summary['results'] == [expected(m) for m in range(MEMBERS)]
    print('every member as expected' if ok else 'MISMATCH')
    await engine.shutdown()          # both backends
    return 0 if ok else 1


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rp', action='store_true',
                        help='simulations on a local RADICAL-Pilot pilot, analysis on threads')
    sys.exit(asyncio.run(main(parser.parse_args().rp)))
