"""The scheduler: ready components out of the queue and into the backends.

When the last dependency of a component finishes, the component joins the
:class:`ReadyQueue`, the one place that wakes the scheduler.
:meth:`Scheduler.run` drains it in batches: it resolves each task's
arguments (dependency futures become their results), replays it from the
campaign journal if an earlier run finished it, works out the data it
receives from its dependencies, awaits an executable's command, and hands
the batch to the task's backend as immutable
:class:`~radical.asyncflow.backends.execution.spec.TaskSpec` objects.  A
retried task comes back with its next attempt already made and goes
straight to its backend.  Blocks are started here too.  Nothing polls and
nothing sleeps waiting for state.
"""

from __future__ import annotations

import asyncio
import collections
import os
import types
from typing import Any, Callable, Dict, Iterable, List, Optional

from ..backends.execution.spec import NO_OPTIONS, DataEdge, Reporter, TaskSpec
from ..data import InputFile
from ..errors import BackendError, InputFileError, UsageValueError
from .graph import NodeState, transition
from .interfaces import TaskRecorder
from .records import FUNCTION, PROMPT, TASK, Attempt, ComponentRecord, describe_type, \
    resolve, resolve_one
from .routing import BackendRoute, Routes

#: Ready components handed to a backend per submission batch.
SUBMIT_BATCH = 4096

#: TaskSpec's fields in the order prepare() passes them to _new_spec.
_SPEC_FIELDS = ('uid', 'name', 'type', 'function', 'command', 'args', 'kwargs', 'options',
                'service', 'attempt', 'inputs', 'input_files', 'output_files',
                'workflow_id', 'stdio_dir', 'prompt')
if TaskSpec._fields != _SPEC_FIELDS:      # a field added or moved: fail at import, loudly
    raise ImportError(f'TaskSpec fields {TaskSpec._fields} != the scheduler\'s '
                      f'{_SPEC_FIELDS}: update Scheduler.prepare')
_new_spec = tuple.__new__


class ReadyQueue:
    """Components ready to go to their backends, and the scheduler's wake-up.

    ``retries`` holds tasks whose next attempt is made already: they go to
    their backends as they are (see :meth:`Scheduler.serve_retries`).
    """

    __slots__ = ('items', 'wakeup', 'retries')

    def __init__(self) -> None:
        self.items: collections.deque = collections.deque()
        self.wakeup = asyncio.Event()
        self.retries: asyncio.Queue = asyncio.Queue()

    def push(self, record: ComponentRecord) -> None:
        """Queue one ready component."""
        items = self.items
        if not items:           # else the scheduler is awake or about to be
            self.wakeup.set()
        items.append(record)

    def extend(self, records: Iterable[ComponentRecord]) -> None:
        """Queue several ready components."""
        items = self.items
        if not items:
            self.wakeup.set()
        items.extend(records)


class Scheduler:
    """Drains one engine's ready queue into its backends."""

    def __init__(self, *, ready: ReadyQueue, routes: Routes, reporter: Reporter,
                 run_dir: str, implicit_data: bool,
                 start_block: Callable[[ComponentRecord, tuple, Dict[str, Any]], asyncio.Task],
                 arm_timeout: Callable[[ComponentRecord], None],
                 batch_submitted: Callable[[List[ComponentRecord]], None],
                 recorder: Optional[TaskRecorder] = None) -> None:
        self._ready = ready
        self._routes = routes
        self._reporter = reporter
        self._run_dir = run_dir
        self._implicit_data = implicit_data
        self._start_block = start_block
        self._arm_timeout = arm_timeout
        self._batch_submitted = batch_submitted
        self._recorder = recorder

    async def run(self) -> None:
        """Prepare ready components and submit them in batches; runs until cancelled."""
        ready = self._ready.items
        wakeup = self._ready.wakeup
        prepare = self.prepare
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
                    if record.spec.task_type is not FUNCTION and \
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

    async def serve_retries(self) -> None:
        """Dispatch the retried tasks put on the ready queue's ``retries``; runs until
        cancelled."""
        retries = self._ready.retries
        while True:
            batch = await retries.get()
            batch = [r for r in batch if r.future is not None and not r.future.done()]
            if batch:
                await self.dispatch(batch)

    # ---------------------------------------------------------------- prepare

    def prepare(self, record: ComponentRecord) -> bool:
        """Resolve a ready component's arguments and data and make its first
        attempt; False if it is settled instead.

        Synchronous: only an executable task's command needs awaiting, which
        :meth:`build_command` does next.
        """
        try:
            args = record.args
            if args:
                args = resolve(args)
            kwargs = record.kwargs
            if kwargs:
                kwargs = {k: resolve_one(v) for k, v in kwargs.items()}
            spec = record.spec
            if spec.kind is not TASK:          # a block: its function starts now
                transition(record, NodeState.SUBMITTED)
                record.block_task = self._start_block(record, args, kwargs or {})
                return False
            recorder = self._recorder
            if recorder is not None and record.identity is not None \
                    and recorder.replay(record):
                return False
            inputs = self._data_edges(record) \
                if record.dependencies or record.files else ()
            files = record.files
            # Positional through tuple.__new__ (a keyword TaskSpec(...) costs ~10% of a
            # no-op task); _SPEC_FIELDS pins the order, checked when this module loads.
            record.attempt = Attempt(_new_spec(TaskSpec, (
                record.uid, spec.name, spec.task_type,
                spec.func if spec.task_type is FUNCTION else None,
                None, args,
                types.MappingProxyType(kwargs) if kwargs else NO_OPTIONS,
                types.MappingProxyType(record.options) if record.options else NO_OPTIONS,
                spec.is_service, 1, inputs,
                files[0] if files else (), files[1] if files else (),
                record.workflow_id,
                os.path.join(self._run_dir, record.uid) if spec.capture_stdio else None,
                None)))
            return True
        except Exception as exc:
            if not record.future.done():
                record.future.set_exception(exc)
            return False

    async def build_command(self, record: ComponentRecord) -> bool:
        """Await an executable (prompt) task's function for its command (prompt), once its
        dependencies are done; False if it failed."""
        spec = record.spec
        attempt = record.attempt
        prompt = spec.task_type is PROMPT
        try:
            command = await spec.func(*attempt.spec.args, **attempt.spec.kwargs)
            if prompt and (not isinstance(command, str) or not command.strip()):
                raise UsageValueError(
                    f"prompt task '{spec.name}' must return its prompt as a non-empty str, "
                    f"but returned {describe_type(command)}: {command!r:.80}")
            if not isinstance(command, str):
                raise UsageValueError(
                    f"executable task '{spec.name}' must return its shell command "
                    f"as a str, but returned {describe_type(command)}: {command!r:.80}")
        except Exception as exc:
            if not record.future.done():
                record.future.set_exception(exc)
            return False
        if record.future.done():        # cancelled while its command was built
            return False
        recorder = self._recorder
        if recorder is not None and recorder.checks_command and record.identity is not None \
                and recorder.replay(record, command):
            return False                # replayed: the same command is recorded
        attempt.spec = attempt.spec._replace(prompt=command) if prompt else \
            attempt.spec._replace(command=command)
        return True

    def _data_edges(self, record: ComponentRecord) -> tuple:
        """The data edges into ``record``: implicit per dependency, one per InputFile."""
        routes = self._routes
        edges: List[DataEdge] = []
        produced: Dict[str, Any] = {}
        route = routes.of(record)
        # Implicit edges go to the backends that stage data; a task of a shared
        # file system sees its producers' files where they are.
        implicit = self._implicit_data and route.stages_data
        for dep in record.dependencies:
            if dep.spec.kind is not TASK:
                continue
            if implicit:
                edge = dep.implicit_edge
                if edge is None:        # made once per producer, shared by its consumers
                    edge = dep.implicit_edge = DataEdge(
                        source=dep.uid, source_backend=routes.of(dep).name)
                edges.append(edge)
            if dep.files:
                for name in dep.files[1]:
                    produced[os.path.basename(name)] = (dep, name)
        for name in record.files[0] if record.files else ():
            base = os.path.basename(name)
            found = produced.get(base)
            if found is not None:
                dep, path = found
                source = routes.of(dep)
                export = getattr(source.driver, 'export_output', None)
                if source is not route and export is not None:
                    path = export(dep.uid, path)     # where a task elsewhere finds it
                edges.append(DataEdge(source=dep.uid, file_name=base, file_path=path,
                                      source_backend=source.name))
                continue
            infile = InputFile(name)
            if not infile.is_url and not os.path.exists(name):
                raise InputFileError(
                    f"task '{record.name}': InputFile('{name}') is neither an OutputFile of "
                    f"one of its dependencies nor an existing path or URL")
            edges.append(DataEdge(source=None, file_name=infile.basename, file_path=name))
        return tuple(edges)

    # --------------------------------------------------------------- dispatch

    async def dispatch(self, batch: List[ComponentRecord]) -> None:
        """Hand tasks (each with its attempt made) to their backends."""
        routes = self._routes
        default_route = routes.default
        by_route: Optional[Dict[BackendRoute, List[ComponentRecord]]] = None
        default: List[ComponentRecord] = []
        arm_timeout = self._arm_timeout
        for record in batch:
            transition(record, NodeState.SUBMITTED)
            route = record.route
            if route is None:
                default.append(record)
                route = default_route
            else:
                if by_route is None:
                    by_route = {}
                by_route.setdefault(route, []).append(record)
            if record.policy.timeout and not route.reports_running:
                arm_timeout(record)      # no RUNNING report will come
        if default:
            await self._submit(default_route, default)
        if by_route:
            for route, records in by_route.items():
                await self._submit(route, records)

    async def _submit(self, route: BackendRoute, records: List[ComponentRecord]) -> None:
        self._batch_submitted(records)
        try:
            await route.driver.submit([r.attempt.spec for r in records], self._reporter)
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
