"""Dry run: check a workflow's shape and command lines without running it.

``WorkflowEngine.create(dry_run=True)`` uses the Noop backend: every task is
reported done as soon as its dependencies are, without running anything.
Function tasks give None and executable tasks an empty stdout, but the
executable tasks' functions *are* called, so the commands that would run can
be inspected, here through ``engine.components``.

    python examples/07_dry_run.py
"""

import asyncio

from radical.asyncflow import WorkflowEngine


async def main():
    engine = await WorkflowEngine.create(dry_run=True)
    print(f'backend: {type(engine.backend).__name__}')

    @engine.executable_task
    async def prepare(system):
        return f'gmx grompp -f md.mdp -c {system}.gro -o {system}.tpr'

    @engine.executable_task
    async def simulate(system, replica, prepared,
                       task_description={'ranks': 4, 'gpus_per_rank': 1}):
        return f'gmx mdrun -s {system}.tpr -deffnm {system}_r{replica}'

    @engine.function_task
    async def analyze(*trajectories):
        return len(trajectories)

    systems = ['lysozyme', 'barnase']
    results = []
    for system in systems:
        prepared = prepare(system)
        runs = [simulate(system, r, prepared) for r in range(3)]
        results.append(analyze(*runs))

    # Completes at once: nothing is executed.
    print(f'analyze results in a dry run: {await asyncio.gather(*results)}')

    print('planned tasks:')
    for uid, component in engine.components.items():
        desc = component['description']
        what = desc['executable'] or f"python function {desc['name']}()"
        resources = desc['task_backend_specific_kwargs']
        print(f"  {uid}  {what}" + (f'   {resources}' if resources else ''))

    await engine.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
