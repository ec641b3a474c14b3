"""Executable tasks that exchange files, declared with OutputFile/InputFile.

    params.txt (a file on this machine) ──> simulate x3 ──> run{0,1,2}.dat
    run{0,1,2}.dat ──> find_minimum ──> minimum.txt ──> show

``OutputFile('run0.dat')`` among a task's arguments says the task writes that
file; ``InputFile('run0.dat')`` in a dependent task asks for it, and the engine
tells the backend to stage it.  ``InputFile('/abs/path')`` of a file that
exists on this machine stages it in from the client side.  On the local
Concurrent backend all tasks share the file system, so staging is a no-op:
the tasks simply run in the same directory, their ``sandbox``.

    python examples/03_explicit_files.py
"""

import asyncio
import os
import shlex
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from radical.asyncflow import (ConcurrentExecutionBackend, InputFile, OutputFile,
                               WorkflowEngine)

PYTHON = shlex.quote(sys.executable)

# "The simulation code": reads key/value parameters, writes "step energy" lines.
SIMULATE = '''
import math, random, sys
params = dict(line.split() for line in open(sys.argv[1]) if line.strip())
seed, out = int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed)
T, steps = float(params["temperature"]), int(params["steps"])
with open(out, "w") as f:
    for step in range(steps):
        energy = -math.log(step + 2) * T / 100 + rng.gauss(0, 0.2)
        f.write(f"{step} {energy:.4f} seed={seed}\\n")
'''


async def main():
    with tempfile.TemporaryDirectory(prefix='asyncflow-files-') as workdir:
        await run_workflow(workdir)


async def run_workflow(workdir):

    # An input that already exists on this machine (not made by any task).
    params = os.path.join(workdir, 'params.txt')
    with open(params, 'w') as f:
        f.write('temperature 300\nsteps 50\n')

    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(max_workers=4))
    engine = await WorkflowEngine.create(backend=backend)

    # Every command runs in `workdir`: the task_description default applies to
    # all calls of the task; a call can override it with task_description={...}.
    @engine.executable_task
    async def simulate(seed, params, out, task_description={'sandbox': workdir}):
        return f'{PYTHON} -c {shlex.quote(SIMULATE)} {params} {seed} {out}'

    @engine.executable_task
    async def find_minimum(runs, *inputs, out, task_description={'sandbox': workdir}):
        # `runs` (the simulate futures) makes this task depend on them, so the
        # InputFiles below match their OutputFiles.
        files = ' '.join(str(f) for f in inputs)
        return f'sort -g -k2 {files} | head -n 1 > {out}'

    @engine.executable_task
    async def show(step, minimum, task_description={'sandbox': workdir}):
        return f'cat {minimum}'

    names = [f'run{seed}.dat' for seed in range(3)]
    runs = [simulate(seed, InputFile(params), OutputFile(name))
            for seed, name in enumerate(names)]
    step = find_minimum(runs, *[InputFile(n) for n in names], out=OutputFile('minimum.txt'))
    lowest = await show(step, InputFile('minimum.txt'))

    await engine.shutdown()

    print(f'work directory: {workdir} (removed at exit)')
    for name in ['params.txt', *names, 'minimum.txt']:
        size = os.path.getsize(os.path.join(workdir, name))
        print(f'  {name:<12} {size:6d} bytes')
    step_no, energy, seed = lowest.split()
    print(f'lowest energy {energy} at step {step_no} ({seed})')


if __name__ == '__main__':
    asyncio.run(main())
