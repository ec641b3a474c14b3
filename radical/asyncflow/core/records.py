"""The engine's typed records: what a decorated function and each call of it become.

A :class:`ComponentSpec` is what a decorator captured about its function; a
:class:`ComponentRecord` is one call of it: a graph node (unmet
dependencies, dependents, state) plus what the engine needs to run it.  Each
attempt of a task in a backend is an :class:`Attempt`, made anew for a
retry.  The program holds a :class:`TaskFuture`, which knows its record.

Who writes what: the engine fills a record when a call registers it; the
scheduler starts its attempts; :mod:`.outcomes` settles it.  Nothing here
schedules anything.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..backends.execution.spec import TaskSpec, TaskType
from ..errors import DependencyCycleError
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
PROMPT = TaskType.PROMPT


#: The blocks whose function is running in the current context, outermost
#: first: what a task registered or awaited here must not depend on.
BLOCK_CHAIN: contextvars.ContextVar = contextvars.ContextVar('asyncflow_block_chain',
                                                            default=())
#: The route (backend) of the block whose function runs in the current
#: context: tasks of its engine created there run on it unless they name a
#: backend.  Per engine: ``((engine key, route), ...)`` (see :func:`scoped`).
BLOCK_ROUTE: contextvars.ContextVar = contextvars.ContextVar('asyncflow_block_route',
                                                            default=())
#: The workflow id of the current ``engine.workflow_scope()`` or block, per
#: engine: a scope of one engine does not stamp another engine's tasks.
WORKFLOW_ID: contextvars.ContextVar = contextvars.ContextVar('asyncflow_workflow_id',
                                                            default=())


def scoped(var: contextvars.ContextVar, key: object) -> Any:
    """The value ``var`` holds for the engine ``key`` in this context (None: none)."""
    for owner, value in var.get():
        if owner is key:
            return value
    return None


def scope_with(var: contextvars.ContextVar, key: object, value: Any) -> contextvars.Token:
    """Set ``var``'s value for engine ``key`` (the other engines' stay); the reset token."""
    return var.set(((key, value),) + tuple(pair for pair in var.get() if pair[0] is not key))


class FutureState(str, enum.Enum):
    """``future.state`` of a task or block future (compares equal to its name)."""

    PENDING = 'PENDING'         # waiting for dependencies, ready, or queued in the backend
    RUNNING = 'RUNNING'         # the backend runs it (a block: its function runs)
    DONE = 'DONE'
    FAILED = 'FAILED'
    CANCELLED = 'CANCELLED'
    #: The spelling of TasksMainStates and NodeState (``future.state`` says CANCELLED, as upstream).
    CANCELED = 'CANCELLED'

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True, eq=False)
class ComponentSpec:
    """What a decorator captured about the function it wraps."""

    kind: ComponentType
    task_type: Optional[TaskType]
    func: Callable[..., Any]
    name: str
    is_service: bool = False
    #: The definition-time ``task_description`` keys meant for the backend.
    description: Dict[str, Any] = None      # type: ignore[assignment]
    policy: TaskPolicy = DEFAULT_POLICY
    #: The backend named by the decorator (None: not named).
    route: Any = None
    capture_stdio: bool = False
    #: How often it was called: part of a task's journal identity.
    calls: int = 0


@dataclass(slots=True, eq=False)
class Attempt:
    """One attempt of a task in its backend: the spec the backend got, and the
    timer of its timeout."""

    spec: TaskSpec
    timer: Optional[asyncio.TimerHandle] = None

    @property
    def number(self) -> int:
        """1 for the first attempt, 2 for the first retry, ..."""
        return self.spec.attempt

    def stop_timer(self) -> None:
        """Cancel the timeout timer, if one runs."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class ComponentRecord(Node):
    """The engine's record of one task or block (a graph node)."""

    __slots__ = ('uid', 'spec', '_future', '_future_ref', 'args', 'kwargs', 'options', 'files',
                 'dependencies', 'policy', 'identity', 'route', 'workflow_id',
                 'upstream_blocks', 'attempt', 'block_task', 'backend_final', 'implicit_edge')

    def __init__(self, *, uid: str, spec: ComponentSpec, future: asyncio.Future,
                 args: tuple, kwargs: Dict[str, Any], options: Dict[str, Any],
                 dependencies: Any, files: Optional[Tuple[Tuple[str, ...], Tuple[str, ...]]],
                 policy: TaskPolicy, route: Any, workflow_id: Optional[str]) -> None:
        # Node's fields, set here rather than through super(): this runs per task.
        self.unmet = 0
        self.dependents = None
        self.state = NodeState.WAITING
        self.observer = None           # set by the engine's run observer
        self.uid = uid
        self.spec = spec
        self._future = future
        self._future_ref: Optional[weakref.ref] = None
        #: The call's arguments, dependency futures still in place.
        self.args = args
        self.kwargs = kwargs
        #: The merged task_description keys meant for the backend.
        self.options = options
        #: (InputFile names, OutputFile names) among the arguments, or None.
        self.files = files
        self.dependencies: List['ComponentRecord'] = dependencies
        self.policy = policy
        #: The journal identity (a campaign's recorder sets it at registration;
        #: opaque to the core).
        self.identity: Optional[Any] = None
        #: Where the task runs (a route of the engine; None: the default backend).
        self.route = route
        #: The workflow it belongs to (``workflow_id=``, a workflow scope or its block).
        self.workflow_id = workflow_id
        # Unfinished blocks this component waits for, directly or not (None: none).
        self.upstream_blocks: Optional[frozenset] = None
        #: The attempt in the backend (None before the first and after the last).
        self.attempt: Optional[Attempt] = None
        self.block_task: Optional[asyncio.Task] = None
        #: The backend reported a final state: it need not be told to cancel.
        self.backend_final = False
        #: The DataEdge its dependents receive for implicit data (made on first use).
        self.implicit_edge: Any = None

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

    def release(self, succeeded: bool) -> None:
        """The component finished: let go of its inputs and, after a success, keep
        the future (and so the result) alive only while the program does."""
        self.args = self.kwargs = None
        self.dependencies = None
        self.attempt = None
        if succeeded and self._future is not None:
            self._future_ref = weakref.ref(self._future)
            self._future = None

    def __repr__(self) -> str:
        return f'<{self.uid} {self.spec.name} {self.state.name}>'


class TaskFuture(asyncio.Future):
    """An asyncio.Future that knows the record it belongs to."""

    __slots__ = ('_af_record',)

    @property
    def uid(self) -> str:
        """The uid of the task or block (``task.000001``)."""
        return self._af_record.uid

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
        chain = BLOCK_CHAIN.get()
        if chain and not self.done():
            record = self._af_record
            if record in chain or (record.upstream_blocks is not None and
                                   not record.upstream_blocks.isdisjoint(chain)):
                raise cycle_error(record, chain)
        return super().__await__()

    __iter__ = __await__


def cycle_error(record: ComponentRecord, chain: tuple) -> DependencyCycleError:
    """The error of a block that waits for ``record``, which waits for the block."""
    block = next((b for b in reversed(chain)
                  if b is record or (record.upstream_blocks and b in record.upstream_blocks)),
                 chain[-1])
    what = 'its own result' if block is record else f"'{record.name}' ({record.uid})"
    return DependencyCycleError(
        f"block '{block.name}' ({block.uid}) waits for {what}, which can only finish after "
        f"the block returns: a dependency cycle that would deadlock; do not pass a block's "
        f"own future into the tasks it runs or awaits")


def describe_type(value: Any) -> str:
    """The type name of ``value``, for error messages."""
    return type(value).__name__


def upstream_blocks(dependencies: List[ComponentRecord]) -> Optional[frozenset]:
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


def resolve_one(value: Any) -> Any:
    """``value`` with a finished engine future (also inside lists/tuples) replaced by its result."""
    vtype = type(value)
    if vtype is TaskFuture:
        return value.result() if value.done() else value
    if vtype is list:
        return [resolve_one(v) for v in value]
    if vtype is tuple:
        return tuple(resolve_one(v) for v in value)
    return value


def resolve(args: tuple) -> tuple:
    """``args`` with every finished engine future replaced by its result."""
    for value in args:
        vtype = type(value)
        if vtype is TaskFuture or vtype is list or vtype is tuple:
            return tuple(resolve_one(v) for v in args)
    return args
