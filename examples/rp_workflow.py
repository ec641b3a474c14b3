# requires: radical.pilot
"""A small pipeline on a RADICAL-Pilot pilot: commands, data between them, a failure.

Eight ensemble members each write a file (executable tasks, one RP task
each); a merge step depends on all of them and finds their files in its own
sandbox (implicit data: the backend links every producer's outputs in); a
report step gets exactly one file through an explicit OutputFile/InputFile
pair; a step that exits non-zero fails with its exit code and stderr, and the
step depending on it is not run.

The pilot runs on this machine (``local.localhost``); its sandboxes and the
session directory are created in the current directory.

    python examples/rp_workflow.py
"""

import asyncio
import os

from radical.asyncflow import InputFile, OutputFile, RadicalExecutionBackend, WorkflowEngine
from radical.asyncflow.errors import DependencyFailure, TaskExecutionError

MEMBERS = 8


async def main():
    backend = await RadicalExecutionBackend({'resource': 'local.localhost', 'cores': 2,
                                             'runtime': 30, 'sandbox': os.getcwd()})
    engine = await WorkflowEngine.create(backend=backend)

    @engine.executable_task
    async def member(i):
        return f'echo "member {i}: $(({i} * {i}))" > member_{i}.txt; hostname'

    @engine.executable_task
    async def merge(*members):
        return 'cat member_*.txt | sort -V > merged.txt; wc -l < merged.txt'

    @engine.executable_task
    async def summary(merged, out):
        return 'tail -n 1 merged.txt > summary.txt; cat summary.txt'

    @engine.executable_task
    async def report(inp, dep):
        return 'echo "report on: $(cat summary.txt)"; ls merged.txt 2>/dev/null || echo "(no merged.txt here)"'

    @engine.executable_task
    async def broken():
        return 'echo "disk full" >&2; exit 28'

    @engine.executable_task
    async def never(dep):
        return 'echo unreachable'

    members = [member(i) for i in range(MEMBERS)]
    merged = merge(*members)
    made = summary(merged, OutputFile('summary.txt'))
    print('hosts:', sorted({h.strip() for h in await asyncio.gather(*members)}))
    print('merged lines:', (await merged).strip())
    print((await report(InputFile('summary.txt'), made)).strip())

    failed = broken()
    blocked = never(failed)
    try:
        await failed
    except TaskExecutionError as exc:
        print(f'broken exited {exc.exit_code}: {exc.stderr.strip()}')
    try:
        await blocked
    except DependencyFailure as exc:
        print(f'never was not run: {exc.failed_dependencies}')

    await engine.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
