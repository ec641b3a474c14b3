"""The walk of one task through the package: module hops, threads, engine re-entries.

Runs one function task (``--kind function``) or one executable task on a
backend (``--backend concurrent`` or ``radical``, a local pilot) with a
profile hook on every thread, and counts, from the moment the task is
called until its future is resolved:

* module hops: calls that go from a function of one module of
  radical.asyncflow to a function of another;
* engine re-entries: calls into the engine's module (``core/engine.py``, or
  ``workflow_manager.py`` before the package was split) from another module
  of the package, after the task was registered;
* threads: the threads on which code of the package ran.

The counts are structural (nothing is timed), so they compare two versions
of the package run the same way::

    python benchmarks/walk.py --backend concurrent --kind executable
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor


def package_root() -> str:
    import radical.asyncflow
    return os.path.dirname(radical.asyncflow.__file__)


class Walk:
    """Records the calls between the package's modules while ``active``."""

    def __init__(self) -> None:
        self.root = package_root() + os.sep
        self.active = False
        self.lock = threading.Lock()
        self.hops = 0
        self.reentries = 0
        self.threads = set()
        self.modules = []          # the modules in the order first entered
        self.trail = []            # (from, to) per hop

    def module_of(self, frame) -> str:
        path = frame.f_code.co_filename
        return path[len(self.root):] if path.startswith(self.root) else ''

    def is_engine(self, module: str) -> bool:
        return module in ('core/engine.py', 'workflow_manager.py')

    def hook(self, frame, event, arg):
        if event != 'call' or not self.active:
            return
        callee = self.module_of(frame)
        if not callee:
            return
        caller = self.module_of(frame.f_back) if frame.f_back is not None else ''
        with self.lock:
            self.threads.add(threading.current_thread().name)
            if callee not in self.modules:
                self.modules.append(callee)
            if caller and caller != callee:
                self.hops += 1
                self.trail.append((caller, callee))
                if self.is_engine(callee):
                    self.reentries += 1


async def one_task(backend_name: str, kind: str, walk: Walk) -> None:
    from radical.asyncflow import WorkflowEngine
    if backend_name == 'radical':
        from radical.asyncflow import RadicalExecutionBackend
        backend = await RadicalExecutionBackend({'resource': 'local.localhost', 'cores': 2,
                                                 'runtime': 10})
    else:
        from radical.asyncflow import ConcurrentExecutionBackend
        backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(2))
    engine = await WorkflowEngine.create(backend=backend, progress=False)

    @engine.function_task
    async def function(x):
        return x + 1

    @engine.executable_task
    async def command(x):
        return f'echo {x}'

    task = function if kind == 'function' else command
    await task(0)                               # warm up: first-call costs are no hops
    threading.setprofile(walk.hook)
    sys.setprofile(walk.hook)
    walk.active = True
    result = await task(41)
    walk.active = False
    sys.setprofile(None)
    threading.setprofile(None)
    await engine.shutdown()
    print(f'result: {result!r}', file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--backend', choices=['concurrent', 'radical'], default='concurrent')
    parser.add_argument('--kind', choices=['function', 'executable'], default='executable')
    parser.add_argument('--trail', action='store_true', help='print every hop')
    args = parser.parse_args()
    os.environ.setdefault('RADICAL_ASYNCFLOW_PROFILE', 'False')
    walk = Walk()
    asyncio.run(one_task(args.backend, args.kind, walk))
    if args.trail:
        for caller, callee in walk.trail:
            print(f'  {caller} -> {callee}')
    print(json.dumps({'backend': args.backend, 'kind': args.kind, 'module_hops': walk.hops,
                      'engine_reentries': walk.reentries, 'threads': len(walk.threads),
                      'modules': len(walk.modules), 'thread_names': sorted(walk.threads)}))


if __name__ == '__main__':
    main()
