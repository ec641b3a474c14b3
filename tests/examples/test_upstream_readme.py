"""Upstream radical.asyncflow 0.6.0's README example runs unchanged (issue 22).

The program is the README's (from the 0.6.0 wheel's METADATA), character
for character: its imports, its ``LocalExecutionBackend(ThreadPoolExecutor())``,
its executable and function tasks.  It runs as a program of its own, as a
user would run it, and prints 20.
"""

import os
import subprocess
import sys

README_EXAMPLE = '''\
import asyncio

from radical.asyncflow import WorkflowEngine, LocalExecutionBackend
from concurrent.futures import ThreadPoolExecutor


async def main():
    # Create backend and workflow
    backend = await LocalExecutionBackend(ThreadPoolExecutor())
    flow = await WorkflowEngine.create(backend=backend)

    @flow.executable_task
    async def task1():
        return "/bin/echo 5"

    @flow.function_task
    async def task2(t1_result):
        return int(t1_result.strip()) * 2 * 2

    # create the workflow
    t1_fut = task1()
    t2_result = await task2(t1_fut)  # t2 depends on t1 (waits for it)

    print(t2_result)
    # shutdown the execution backend
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
'''


def test_the_upstream_readme_example_prints_20(tmp_path):
    program = tmp_path / 'readme_example.py'
    program.write_text(README_EXAMPLE)
    proc = subprocess.run([sys.executable, str(program)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120,
                          env=dict(os.environ, RADICAL_ASYNCFLOW_PROFILE='0'))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['20'], proc.stdout
