# requires: radical.pilot
"""An MPI task and a service task on a RADICAL-Pilot pilot.

``task_description={'ranks': 2}`` makes RP start the command on two MPI
ranks (with ``mpiexec`` on this machine); the result is the stdout of all
ranks.  A service task (``service=True``) resolves as soon as the service is
up, with what its ``info_pattern`` matched; tasks that depend on it then run
while it keeps running, and it is stopped at shutdown.

Needs an MPI library and mpi4py for the MPI part (``bash tests/setup_system.sh``,
``pip install mpi4py``); without them only the service part runs.

    python examples/rp_mpi_service.py
"""

import asyncio
import os
import shutil
import sys

from radical.asyncflow import RadicalExecutionBackend, WorkflowEngine

PROGRAM = '''
import sys
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank())
sys.stdout.write(f"rank {comm.Get_rank()} of {comm.Get_size()}: sum of ranks {total}\\n")
'''


def have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return shutil.which('mpiexec') is not None


async def main():
    backend = await RadicalExecutionBackend({'resource': 'local.localhost', 'cores': 4,
                                             'runtime': 30, 'sandbox': os.getcwd()})
    engine = await WorkflowEngine.create(backend=backend)

    @engine.executable_task(service=True)
    async def key_value_store(task_description={'info_pattern': r'stdout:port=(\d+)'}):
        return ('echo "port=5555"; '
                'exec python3 -c "import time; time.sleep(3600)"')

    @engine.executable_task
    async def client(port):
        return f'echo "would connect to localhost:{port}"'

    @engine.executable_task
    async def mpi_job(task_description={'ranks': 2}):
        with open('ranks.py', 'w') as f:
            f.write(PROGRAM)
        return f'{sys.executable} {os.path.abspath("ranks.py")}'

    port = await key_value_store()
    print('service up, port', port)
    print((await client(port)).strip())
    if have_mpi():
        print(''.join(sorted((await mpi_job()).splitlines(keepends=True))), end='')
    else:
        print('no MPI here: skipped the MPI task')

    await engine.shutdown()         # stops the service too


if __name__ == '__main__':
    asyncio.run(main())
