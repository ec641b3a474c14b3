"""The scheduler: ready components out of the queue and into the backends.

When the last dependency of a component finishes, the component joins the
ready queue.  :meth:`Scheduler.run` drains that queue in batches: it
resolves each task's arguments (dependency futures become their results),
replays it from the campaign journal if an earlier run finished it, works
out the data it receives from its dependencies, awaits an executable's
command, and hands the batch to the task's backend as immutable
:class:`~.backends.execution.spec.TaskSpec` objects.  Blocks are started
here too.  Nothing polls and nothing sleeps waiting for state.
"""

from __future__ import annotations

import asyncio
import collections
import os
import types
from typing import Any, Dict, List, Optional

from .backends.execution.spec import NO_OPTIONS, DataEdge, TaskSpec
from .data import InputFile
from .errors import BackendError
from .graph import NodeState, transition
from .records import BLOCK, EXECUTABLE, TASK, ComponentRecord, _describe_type, _resolve, \
    _resolve_one

#: Ready components handed to a backend per submission batch.
SUBMIT_BATCH = 4096

_new_spec = tuple.__new__


class Scheduler:
    """Drains one engine's ready queue into its backends."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.ready: collections.deque = collections.deque()
        self.wakeup = asyncio.Event()
        #: Batches of prepared components queued from outside the scheduler.
        self.queue: asyncio.Queue = asyncio.Queue()

    def push(self, record: ComponentRecord) -> None:
        """Queue a ready component."""
        ready = self.ready
        if not ready:           # else the scheduler is awake or about to be
            self.wakeup.set()
        ready.append(record)

    async def run(self) -> None:
        """Prepare ready components and submit them in batches; runs until cancelled."""
        ready = self.ready
        prepare = self.prepare
        wakeup = self.wakeup
        while True:
            await wakeup.wait()
            wakeup.clear()
            drained = 0
            while ready:
                batch = []
                count = min(len(ready), SUBMIT_BATCH)
                for _ in range(count):
                    record = ready.popleft()
                    if record.future.done() or not prepare(record):
                        continue
                    if record.spec.task_type is EXECUTABLE and \
                            not await self.build_command(record):
                        continue
                    batch.append(record)
                if batch:
                    await self.dispatch(batch)
                # A backend that finishes tasks at once (Noop) refills the queue
                # while it is drained: hand the loop over every SUBMIT_BATCH
                # components, not after every (possibly one-task) batch.
                drained += count
                if ready and drained >= SUBMIT_BATCH:
                    drained = 0
                    await asyncio.sleep(0)

    async def serve_queue(self) -> None:
        """Dispatch the batches put on :attr:`queue`; runs until cancelled."""
        while True:
            batch = await self.queue.get()
            await self.dispatch([r for r in batch if not r.future.done()])

    # ---------------------------------------------------------------- prepare

    def prepare(self, record: ComponentRecord) -> bool:
        """Resolve a ready component's arguments and data; False if it is settled.

        Synchronous: only an executable task's command needs awaiting, which
        :meth:`build_command` does next.
        """
        try:
            args = record.args
            if args:
                args = _resolve(args)
            kwargs = record.kwargs
            if kwargs:
                kwargs = {k: _resolve_one(v) for k, v in kwargs.items()}
            elif kwargs is None:
                kwargs = {}
            record.args = args
            record.kwargs = kwargs
            if record.spec.kind is not TASK:
                return True
            engine = self._engine
            if engine._recorder is not None and record.attempts is not None \
                    and engine._recorder.replay(record):
                return False
            inputs = self._data_edges(record) \
                if record.dependencies or record.files else ()
            spec = record.spec
            files = record.files
            # tuple.__new__ directly: a TaskSpec per task, without the Python-level __new__
            record.task_spec = _new_spec(TaskSpec, (
                record.uid, spec.name, spec.task_type,
                spec.func if spec.task_type is not EXECUTABLE else None, None, args,
                types.MappingProxyType(kwargs) if kwargs else NO_OPTIONS,
                types.MappingProxyType(record.options) if record.options else NO_OPTIONS,
                spec.is_service,
                record.attempts.attempt if record.attempts is not None else 1,
                inputs, files[0] if files else (), files[1] if files else (),
                record.workflow_id,
                os.path.join(engine.run_dir, record.uid) if spec.capture_stdio else None))
            return True
        except Exception as exc:
            if not record.future.done():
                record.future.set_exception(exc)
            return False

    async def build_command(self, record: ComponentRecord) -> bool:
        """Await an executable task's function for its command; False if it failed."""
        spec = record.spec
        try:
            command = await spec.func(*record.args, **record.kwargs)
            if not isinstance(command, str):
                raise ValueError(
                    f"executable task '{spec.name}' must return its shell command "
                    f"as a str, but returned {_describe_type(command)}: {command!r:.80}")
        except Exception as exc:
            if not record.future.done():
                record.future.set_exception(exc)
            return False
        if record.future.done():        # cancelled while its command was built
            return False
        record.task_spec = record.task_spec._replace(command=command)
        return True

    def _data_edges(self, record: ComponentRecord) -> tuple:
        """The data edges into ``record``: implicit per dependency, one per InputFile."""
        engine = self._engine
        edges: List[DataEdge] = []
        produced: Dict[str, Any] = {}
        route = record.route or engine._default_route
        # Implicit edges go to the backends that stage data; a task of a shared
        # file system sees its producers' files where they are.
        implicit = engine.implicit_data_mode and route.stages_data
        for dep in record.dependencies:
            if dep.spec.kind is not TASK:
                continue
            if implicit:
                edge = dep.implicit_edge
                if edge is None:        # made once per producer, shared by its consumers
                    edge = dep.implicit_edge = _new_spec(DataEdge, (
                        dep.uid, None, None, (dep.route or engine._default_route).name))
                edges.append(edge)
            if dep.files:
                for name in dep.files[1]:
                    produced[os.path.basename(name)] = (dep, name)
        for name in record.files[0] if record.files else ():
            base = os.path.basename(name)
            found = produced.get(base)
            if found is not None:
                dep, path = found
                source = engine._route_of(dep)
                export = getattr(source.driver, 'export_output', None)
                if source is not route and export is not None:
                    path = export(dep.uid, path)     # where a task elsewhere finds it
                edges.append(DataEdge(dep.uid, base, path, source.name))
                continue
            infile = InputFile(name)
            if not infile.is_url and not os.path.exists(name):
                raise FileNotFoundError(
                    f"task '{record.name}': InputFile('{name}') is neither an OutputFile of "
                    f"one of its dependencies nor an existing path or URL")
            edges.append(DataEdge(None, infile.basename, name))
        return tuple(edges)

    # --------------------------------------------------------------- dispatch

    async def dispatch(self, batch: List[ComponentRecord]) -> None:
        """Hand tasks to their backends and start blocks."""
        engine = self._engine
        by_route: Optional[Dict[Any, List[ComponentRecord]]] = None
        default: List[ComponentRecord] = []
        for record in batch:
            transition(record, NodeState.SUBMITTED)
            if record.spec.kind is BLOCK:
                record.block_task = engine.loop.create_task(engine.execute_block(
                    record.future, record.spec.func, *record.args, **record.kwargs))
                continue
            route = record.route
            if route is None:
                default.append(record)
            else:
                if by_route is None:
                    by_route = {}
                by_route.setdefault(route, []).append(record)
            attempts = record.attempts
            if attempts is not None and attempts.policy.timeout \
                    and not engine._route_of(record).reports_running:
                engine._outcomes.arm_timeout(record)      # no RUNNING report will come
        if default:
            await self._submit(engine._default_route, default)
        if by_route:
            for route, records in by_route.items():
                await self._submit(route, records)

    async def _submit(self, route: Any, records: List[ComponentRecord]) -> None:
        engine = self._engine
        engine._monitor.batch_submitted(records)
        try:
            await route.driver.submit([r.task_spec for r in records], engine._reporter)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for record in records:
                future = record.future      # None: it succeeded, and was let go of
                if future is not None and not future.done():
                    error = BackendError(f"{type(route.backend).__name__} could not submit "
                                         f"task '{record.name}' ({record.uid}): {exc}")
                    error.__cause__ = exc
                    future.set_exception(error)

