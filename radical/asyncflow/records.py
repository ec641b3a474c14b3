"""The engine's typed records: what a decorated function and each call of it become.

A :class:`ComponentRecord` is a graph node (unmet dependencies, dependents,
state) plus what the engine needs to run it; a ``_TaskFuture`` is the
``asyncio.Future`` handed to the program, which knows its record.  Nothing
here schedules anything: :mod:`.workflow_manager` does.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .backends.execution.spec import TaskType
from .errors import DependencyCycleError
from .graph import Node, NodeState
from .policy import DEFAULT_POLICY, TaskPolicy


class ComponentType(str, enum.Enum):
    """What a decorated function is: a backend task or a block (sub-workflow)."""

    TASK = 'task'
    BLOCK = 'block'


TASK = ComponentType.TASK
BLOCK = ComponentType.BLOCK
FUNCTION = TaskType.FUNCTION
EXECUTABLE = TaskType.EXECUTABLE


#: The blocks whose function is running in the current context, outermost
#: first: what a task registered or awaited here must not depend on.
_BLOCK_CHAIN: contextvars.ContextVar = contextvars.ContextVar('asyncflow_block_chain',
                                                             default=())
#: The route (backend) of the block whose function runs in the current
#: context: tasks created there run on it unless they name a backend.
_BLOCK_ROUTE: contextvars.ContextVar = contextvars.ContextVar('asyncflow_block_route',
                                                             default=None)
#: The workflow id of the current ``engine.workflow_scope()`` or block.
_WORKFLOW_ID: contextvars.ContextVar = contextvars.ContextVar('asyncflow_workflow_id',
                                                             default=None)


class FutureState(str, enum.Enum):
    """``future.state`` of a task or block future (compares equal to its name)."""

    PENDING = 'PENDING'         # waiting for dependencies, ready, or queued in the backend
    RUNNING = 'RUNNING'         # the backend runs it (a block: its function runs)
    DONE = 'DONE'
    FAILED = 'FAILED'
    CANCELLED = 'CANCELLED'

    def __str__(self) -> str:
        return self.value


class _ComponentSpec:
    """What a decorator captured about the function it wraps."""

    __slots__ = ('kind', 'task_type', 'func', 'name', 'is_service', 'description',
                 'policy', 'calls', 'route', 'capture_stdio')

    def __init__(self, kind: ComponentType, task_type: Optional[TaskType],
                 func: Callable, is_service: bool, description: Dict[str, Any],
                 policy: TaskPolicy = DEFAULT_POLICY) -> None:
        self.kind = kind
        self.task_type = task_type
        self.func = func
        self.name = func.__name__
        self.is_service = is_service
        self.description = description
        self.policy = policy
        self.calls = 0          # how often it was called: part of a task's identity
        self.route: Any = None  # the backend named by the decorator (None: not named)
        self.capture_stdio = False


class _Attempts:
    """Retry, timeout and journal state of a task that needs any of them."""

    __slots__ = ('policy', 'attempt', 'timer', 'identity')

    def __init__(self, policy: TaskPolicy, identity: Optional[str]) -> None:
        self.policy = policy
        self.attempt = 1
        self.timer: Optional[asyncio.TimerHandle] = None
        self.identity = identity


class ComponentRecord(Node):
    """The engine's record of one task or block (a graph node)."""

    __slots__ = ('uid', 'spec', '_future', '_future_ref', 'args', 'kwargs', 'options', 'files',
                 'dependencies', 'block_task', 'backend_final', 'attempts',
                 'upstream_blocks', 'task_spec', 'route', 'implicit_edge', 'workflow_id')

    def __init__(self, uid: str, spec: _ComponentSpec, future: asyncio.Future,
                 args: tuple, kwargs: dict, options: Dict[str, Any],
                 dependencies: List['ComponentRecord'],
                 files: Optional[Tuple[Tuple[str, ...], Tuple[str, ...]]] = None) -> None:
        # Node's fields, set here rather than through super(): this runs per task.
        self.unmet = 0
        self.dependents = None
        self.state = NodeState.WAITING
        self.observer = None           # set by the engine's RunMonitor
        self.uid = uid
        self.spec = spec
        self._future = future
        self._future_ref: Optional[weakref.ref] = None
        self.args = args
        self.kwargs = kwargs
        #: The merged task_description keys meant for the backend.
        self.options = options
        #: (InputFile names, OutputFile names) among the arguments, or None.
        self.files = files
        self.dependencies = dependencies
        self.block_task: Optional[asyncio.Task] = None
        # Unfinished blocks this component waits for, directly or not (None: none).
        self.upstream_blocks: Optional[frozenset] = None
        self.backend_final = False     # the backend reported a final state
        self.attempts: Optional[_Attempts] = None
        #: The TaskSpec of the attempt in the backend (None before and after).
        self.task_spec: Any = None
        #: Where the task runs (a route of the engine; None: the default backend).
        self.route: Any = None
        #: The DataEdge its dependents receive for implicit data (made on first use).
        self.implicit_edge: Any = None
        #: The workflow it belongs to (``workflow_id=``, a workflow scope or its block).
        self.workflow_id: Optional[str] = None

    @property
    def name(self) -> str:
        """The decorated function's name."""
        return self.spec.name

    @property
    def future(self) -> Optional[asyncio.Future]:
        """The component's future; after success, None once the program dropped it."""
        future = self._future
        if future is None and self._future_ref is not None:
            return self._future_ref()
        return future

    @future.setter
    def future(self, future: asyncio.Future) -> None:
        self._future = future
        self._future_ref = None

    def release_future(self) -> None:
        """Keep the future (and so the result) alive only while the program does."""
        future = self._future
        if future is not None:
            self._future_ref = weakref.ref(future)
            self._future = None

    def __repr__(self) -> str:
        return f'<{self.uid} {self.spec.name} {self.state.name}>'


class _TaskFuture(asyncio.Future):
    """An asyncio.Future that knows the record it belongs to."""

    __slots__ = ('_af_record',)

    @property
    def state(self) -> FutureState:
        """PENDING, RUNNING, DONE, FAILED or CANCELLED, now (no need to await)."""
        if self.done():
            if self.cancelled():
                return FutureState.CANCELLED
            return FutureState.FAILED if self.exception() is not None else FutureState.DONE
        node_state = self._af_record.state
        if node_state is NodeState.RUNNING or (node_state is NodeState.SUBMITTED
                                               and self._af_record.spec.kind is BLOCK):
            return FutureState.RUNNING
        return FutureState.PENDING

    def __await__(self):
        chain = _BLOCK_CHAIN.get()
        if chain and not self.done():
            record = self._af_record
            if record in chain or (record.upstream_blocks is not None and
                                   not record.upstream_blocks.isdisjoint(chain)):
                raise _cycle_error(record, chain)
        return super().__await__()

    __iter__ = __await__


def _cycle_error(record: 'ComponentRecord', chain: tuple) -> DependencyCycleError:
    block = next((b for b in reversed(chain)
                  if b is record or (record.upstream_blocks and b in record.upstream_blocks)),
                 chain[-1])
    what = 'its own result' if block is record else f"'{record.name}' ({record.uid})"
    return DependencyCycleError(
        f"block '{block.name}' ({block.uid}) waits for {what}, which can only finish after "
        f"the block returns: a dependency cycle that would deadlock; do not pass a block's "
        f"own future into the tasks it runs or awaits")


class _ComponentsView(Mapping):
    """``engine.components``: uid -> {'future', 'description', 'type'}."""

    def __init__(self, records: Dict[str, ComponentRecord]) -> None:
        self._records = records

    def __getitem__(self, uid: str) -> Dict[str, Any]:
        rec = self._records[uid]
        return {'future': rec.future, 'description': task_dict(rec), 'type': rec.spec.kind}

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


def task_dict(record: ComponentRecord) -> Dict[str, Any]:
    """The task dict of the dict protocol for ``record``, made anew (a view, not state)."""
    spec = record.spec
    running = record.task_spec
    inputs, outputs = record.files or ((), ())
    return {
        'uid': record.uid,
        'name': spec.name,
        'function': spec.func if spec.task_type is not TaskType.EXECUTABLE else None,
        'executable': running.command if running is not None else None,
        'args': record.args or (),
        'kwargs': record.kwargs or {},
        'is_service': spec.is_service,
        'async': True,
        'attempt': record.attempts.attempt if record.attempts is not None else 1,
        'metadata': {'input_files': list(inputs), 'output_files': list(outputs)},
        'task_backend_specific_kwargs': dict(record.options),
        'workflow_id': record.workflow_id,
        'backend': record.route.name if record.route is not None else None,
    }


def _describe_type(value: Any) -> str:
    return type(value).__name__


def _upstream_blocks(dependencies: List['ComponentRecord']) -> Optional[frozenset]:
    """The unfinished blocks among ``dependencies`` and their own upstream blocks."""
    found = None
    for dep in dependencies:
        if dep.state.is_finished:
            continue
        if dep.spec.kind is BLOCK or dep.upstream_blocks is not None:
            found = set() if found is None else found
            if dep.spec.kind is BLOCK:
                found.add(dep)
            if dep.upstream_blocks is not None:
                found.update(dep.upstream_blocks)
    return frozenset(found) if found else None


def _resolve_one(value: Any) -> Any:
    vtype = type(value)
    if vtype is _TaskFuture:
        return value.result() if value.done() else value
    if vtype is list:
        return [_resolve_one(v) for v in value]
    if vtype is tuple:
        return tuple(_resolve_one(v) for v in value)
    return value


def _resolve(args: tuple) -> tuple:
    """``args`` with every finished engine future replaced by its result."""
    for value in args:
        vtype = type(value)
        if vtype is _TaskFuture or vtype is list or vtype is tuple:
            return tuple(_resolve_one(v) for v in args)
    return args
