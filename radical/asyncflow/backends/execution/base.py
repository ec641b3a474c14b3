"""The execution backend contract.

A backend is a thin adapter, like a transport under an HTTP client: it turns
a ready task into its execution system's call and reports each state
change back.  It never decides dependency or failure semantics; the engine
does.

:class:`ExecutionBackend` is the whole native contract: ``submit(tasks,
reporter)`` receives immutable :class:`~.spec.TaskSpec` objects and reports
on each through the :class:`~.spec.Reporter` given with it (from any
thread); ``cancel_task(uid)``; ``shutdown()``; a ``name`` and its
capabilities as attributes.  :class:`BackendBase` is a convenience for
writing one: the name, the awaitable set-up (``backend = await
SomeBackend(...)``, ``await SomeBackend.create(...)``), ``async with``
(which also keeps the backend out of the engines' hands: an engine never
closes a backend the program holds in an ``async with`` block), and the
count of engines using it.

:class:`BaseExecutionBackend` is the abstract class of the dict protocol of
radical.asyncflow 0.1-0.6 and rhapsody-py (``submit_tasks(list[dict])``
and one registered callback), which backends of those releases derive
from; the protocol itself lives in :mod:`.dict_protocol` and the engine
drives such backends through :mod:`.legacy`.
"""

from __future__ import annotations

import abc
import os
import re
import threading
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, runtime_checkable

from ...constants import StateMapper

from .spec import Reporter, TaskSpec
from ...errors import UsageTypeError

#: Seconds a backend's shutdown() waits for work still running (threads cannot be killed).
BACKEND_STOP_WAIT = 10.0
#: Methods the engine calls on a dict-protocol backend.
DICT_METHODS = ('submit_tasks', 'register_callback', 'get_task_states_map', 'cancel_task',
                'shutdown', 'link_implicit_data_deps', 'link_explicit_data_deps')
#: Methods the engine calls on a native backend.
NATIVE_METHODS = ('submit', 'cancel_task', 'shutdown')


@runtime_checkable
class ExecutionBackend(Protocol):
    """What the engine needs of a backend it drives natively.

    The same backend object may serve any number of engines, one after
    another and at once: everything it needs to report on a task comes with
    the task, and reports go to the reporter given with it.
    """

    #: The name tasks route to it by (``backend='name'``).
    name: str
    #: Tasks see the client's file system at the same paths: no staging, and
    #: no implicit data edges in the specs.  False: implicit edges come with
    #: each spec.
    shared_filesystem: bool
    #: RUNNING is reported as a task starts to run (after any queueing of the
    #: backend's own): task timeouts then count running time only.
    reports_running: bool

    async def submit(self, tasks: Sequence[TaskSpec], reporter: Reporter) -> None:
        """Start ``tasks`` (their dependencies are done); report on each through ``reporter``."""

    async def cancel_task(self, uid: str) -> bool:
        """Cancel a submitted task; True if it will not complete normally."""

    async def shutdown(self) -> None:
        """Stop everything the backend started; nothing may be left running."""


class Session:
    """Where a backend keeps its files; ``path`` is the engine's default work_dir."""

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path or os.getcwd()


class BackendBase:
    """A convenience base of native backends: name, set-up, ``async with``, engines."""

    shared_filesystem: bool = True
    reports_running: bool = False
    _name: Optional[str] = None
    _initialized: bool = False
    #: In an ``async with`` block of the program: no engine closes it.
    held: bool = False

    @property
    def name(self) -> str:
        """The name tasks route to it by (``name=`` of the constructor, else from the class)."""
        return self._name or default_backend_name(self)

    # -- lifecycle ---------------------------------------------------------

    async def _async_init(self) -> None:
        """Asynchronous set-up (start pools, clusters, pilots)."""

    async def initialize(self) -> 'BackendBase':
        """Run the asynchronous set-up once; later calls return at once."""
        if not self._initialized:
            await self._async_init()
            self._initialized = True
        return self

    def __await__(self):
        return self.initialize().__await__()

    @classmethod
    async def create(cls, *args: Any, **kwargs: Any) -> 'BackendBase':
        """Construct and initialise the backend."""
        return await cls(*args, **kwargs).initialize()

    async def __aenter__(self) -> 'BackendBase':
        self.held = True
        return await self.initialize()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.held = False
        await self.shutdown()

    # -- engines using it ----------------------------------------------------

    def attach(self, engine: Any) -> None:
        """An engine uses this backend from now on."""
        with _attach_lock:
            self.__dict__.setdefault('_engines', []).append(engine)

    def detach(self, engine: Any) -> bool:
        """The engine is done with it; True if no other engine uses it."""
        with _attach_lock:
            engines = self.__dict__.get('_engines', [])
            if engine in engines:
                engines.remove(engine)
            return not engines

    def export_output(self, uid: str, file_path: str) -> str:
        """Where a file task ``uid`` produced is on the client, for a task of another backend.

        Called before such a consumer runs.  With a shared file system the
        file is where the task declared it; a backend with task sandboxes
        makes it reachable there (or raises BackendError saying why not).
        """
        return file_path


_attach_lock = threading.Lock()

TaskDict = Dict[str, Any]
StateCallback = Callable[..., None]


class BaseExecutionBackend(BackendBase, abc.ABC):
    """The dict protocol: what radical.asyncflow 0.1-0.5 backends implement.

    Subclasses put their asynchronous set-up in ``_async_init``.
    """

    _callback_func: Optional[StateCallback] = None

    def register_callback(self, func: StateCallback) -> None:
        """Set the function told of every task state change."""
        self._callback_func = func

    def task_state_cb(self, task: TaskDict, state: Any) -> None:
        """Report a state change of ``task`` to the registered callback."""
        if self._callback_func is not None:
            self._callback_func(task, state)

    @abc.abstractmethod
    async def submit_tasks(self, tasks: List[TaskDict]) -> None:
        """Start ``tasks``, whose dependencies are all done."""

    @abc.abstractmethod
    async def cancel_task(self, uid: str) -> bool:
        """Cancel a submitted task; True if it will not complete normally."""

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """Stop everything the backend started; nothing may be left running."""

    @abc.abstractmethod
    def state(self) -> str:
        """A short word for the backend's own state (``RUNNING``...)."""

    @abc.abstractmethod
    def get_task_states_map(self) -> StateMapper:
        """The mapper between this backend's task states and the main ones."""

    @abc.abstractmethod
    def build_task(self, uid: str, task_desc: TaskDict,
                   task_backend_specific_kwargs: Dict[str, Any]) -> Any:
        """Translate a task dict into the execution system's description."""

    @abc.abstractmethod
    def link_implicit_data_deps(self, src_task: TaskDict, dst_task: TaskDict) -> Any:
        """Make what ``src_task`` produced visible to ``dst_task``."""

    @abc.abstractmethod
    def link_explicit_data_deps(self, src_task: Optional[TaskDict] = None,
                                dst_task: Optional[TaskDict] = None,
                                file_name: Optional[str] = None,
                                file_path: Optional[str] = None) -> Any:
        """Stage one file into ``dst_task``'s sandbox.

        From ``src_task``'s outputs when given, else from ``file_path`` (a
        local path or URL on the client side).
        """



def default_backend_name(backend: Any) -> str:
    """``ConcurrentExecutionBackend`` -> ``concurrent``: a backend's default name."""
    name = type(backend).__name__
    for suffix in ('ExecutionBackend', 'Backend'):
        if name.endswith(suffix) and name != suffix:
            name = name[:-len(suffix)]
            break
    return re.sub(r'(?<=[a-z0-9])(?=[A-Z])', '_', name).lower()


def backend_name(backend: Any) -> str:
    """A backend's routing name: its ``name`` attribute, else derived from its class."""
    name = getattr(backend, 'name', None)
    return name if isinstance(name, str) and name else default_backend_name(backend)


def missing_methods(backend: Any, methods: Sequence[str]) -> List[str]:
    """Which of ``methods`` ``backend`` lacks."""
    return [name for name in methods if not callable(getattr(backend, name, None))]


def check_backend(backend: Any) -> None:
    """TypeError naming what ``backend`` lacks to be an execution backend of either kind."""
    native = missing_methods(backend, NATIVE_METHODS)
    legacy = missing_methods(backend, DICT_METHODS)
    if not native or not legacy:
        return
    has = [name for name in DICT_METHODS if name not in legacy]
    raise UsageTypeError(
        f'backend must be an execution backend (e.g. await ConcurrentExecutionBackend('
        f'ThreadPoolExecutor())), not {type(backend).__name__}: it has no '
        f'{", ".join(m + "()" for m in legacy)}'
        + (f' (it has {", ".join(m + "()" for m in has)})' if has else ''))
