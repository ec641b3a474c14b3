"""The abstract execution backend every backend implements.

A backend is a thin adapter, like a transport under an HTTP client: it turns
a ready task into its execution system's call and reports each state change
through the callback the engine registered.  It never decides dependency or
failure semantics; the engine does.

Tasks cross this boundary as plain dicts (the form programs written for
radical.asyncflow 0.1/0.2 rely on):

=============================== ===============================================
key                             meaning
=============================== ===============================================
``uid``, ``name``               task id (``task.000001``) and function name
``function``                    the async function of a function task, or None
``executable``                  the shell command of an executable task, or None
``args``, ``kwargs``            arguments, dependency futures replaced by results
``is_service``                  True for ``service=True`` tasks
``metadata``                    ``{'input_files': [...], 'output_files': [...]}``
                                (one shared, read-only value with empty tuples
                                for every task without files: never mutate it)
``task_backend_specific_kwargs`` the merged ``task_description`` dict
=============================== ===============================================

On completion the backend fills in ``return_value`` (function tasks) or
``stdout``/``stderr``/``exit_code`` (executables), or ``exception``, and calls
``callback(task, state)`` with a state of its :class:`StateMapper`.  The
callback may be called from any thread.  Once the engine has taken a task's
DONE report, the dict no longer holds its arguments or result: ``args`` and
``kwargs`` are emptied and ``return_value``/``stdout`` removed (the task's
future has the result).
"""

from __future__ import annotations

import abc
import os
from typing import Any, Callable, Dict, List, Optional

from ...constants import StateMapper

TaskDict = Dict[str, Any]
StateCallback = Callable[..., None]


class Session:
    """Where a backend keeps its files; ``path`` is the engine's work_dir."""

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path or os.getcwd()


class BaseExecutionBackend(abc.ABC):
    """Contract between the engine and an execution system.

    Backends are awaitable (``backend = await SomeBackend(...)``), have an
    async ``create`` factory, and are async context managers that shut down
    on exit.  Subclasses put their asynchronous set-up in ``_async_init``.
    """

    session: Session
    _callback_func: Optional[StateCallback] = None
    _initialized: bool = False
    #: True when the backend reports RUNNING as a task starts to run (after
    #: any queueing of its own); task timeouts then count running time only.
    #: False: the engine counts a timeout from submission.
    reports_running: bool = False

    # -- lifecycle ---------------------------------------------------------

    async def _async_init(self) -> None:
        """Asynchronous set-up (start pools, clusters, pilots)."""

    async def initialize(self) -> 'BaseExecutionBackend':
        """Run the asynchronous set-up once; later calls return at once."""
        if not self._initialized:
            await self._async_init()
            self._initialized = True
        return self

    def __await__(self):
        return self.initialize().__await__()

    @classmethod
    async def create(cls, *args: Any, **kwargs: Any) -> 'BaseExecutionBackend':
        """Construct and initialise the backend."""
        return await cls(*args, **kwargs).initialize()

    async def __aenter__(self) -> 'BaseExecutionBackend':
        return await self.initialize()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.shutdown()

    # -- callbacks ----------------------------------------------------------

    def register_callback(self, func: StateCallback) -> None:
        """Set the function told of every task state change."""
        self._callback_func = func

    def task_state_cb(self, task: TaskDict, state: Any) -> None:
        """Report a state change of ``task`` to the registered callback."""
        if self._callback_func is not None:
            self._callback_func(task, state)

    # -- the contract ---------------------------------------------------------

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


class SharedFileSystemMixin:
    """The data part of the contract for backends whose tasks see the client's files.

    Nothing is staged, and the task dict itself is the task description.
    Put it before :class:`BaseExecutionBackend` among the bases.
    """

    def build_task(self, uid: str, task_desc: TaskDict,
                   task_backend_specific_kwargs: Dict[str, Any]) -> TaskDict:
        """The task dict, unchanged."""
        return task_desc

    def link_implicit_data_deps(self, src_task: TaskDict, dst_task: TaskDict) -> None:
        """Nothing to do: the consumer sees the producer's files where they are."""
        return None

    def link_explicit_data_deps(self, src_task: Optional[TaskDict] = None,
                                dst_task: Optional[TaskDict] = None,
                                file_name: Optional[str] = None,
                                file_path: Optional[str] = None) -> None:
        """Nothing to do: the consumer sees the file where it is."""
        return None
