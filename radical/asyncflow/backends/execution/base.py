"""The execution backend contract, in its two faces.

A backend is a thin adapter, like a transport under an HTTP client: it turns
a ready task into its execution system's call and reports each state
change back.  It never decides dependency or failure semantics; the engine
does.

* :class:`ExecutionBackend` is the native face, which this package's
  backends implement: ``submit(tasks, reporter)`` receives immutable
  :class:`~.spec.TaskSpec` objects and reports through the
  :class:`~.spec.Reporter` given with them (any thread).
* :class:`BaseExecutionBackend` is the dict face of radical.asyncflow 0.1-0.5
  and rhapsody-py: ``submit_tasks(list[dict])`` and one callback registered
  with ``register_callback``.  Any object with those methods is a backend
  (see :mod:`.legacy`, which drives it); this class is a convenience.

Every backend is awaitable (``backend = await SomeBackend(...)``), has an
async ``create`` factory, and is an async context manager that shuts down on
exit.  A native backend speaks the dict face too (for programs that call it
directly), through :class:`_DictReporter`.

The task dicts of the dict face:

=============================== ===============================================
key                             meaning
=============================== ===============================================
``uid``, ``name``               task id (``task.000001``) and function name
``function``                    the async function of a function task, or None
``executable``                  the shell command of an executable task, or None
``args``, ``kwargs``            arguments, dependency futures replaced by results
``is_service``                  True for ``service=True`` tasks
``attempt``                     1, 2, ... for retries of the same uid
``metadata``                    ``{'input_files': [...], 'output_files': [...]}``
``task_backend_specific_kwargs`` the merged ``task_description`` dict
=============================== ===============================================

On completion the backend fills in ``return_value`` (function tasks) or
``stdout``/``stderr``/``exit_code`` (executables), or ``exception``, and calls
``callback(task, state)`` with a state of its :class:`StateMapper`.
"""

from __future__ import annotations

import abc
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence

from ...constants import StateMapper
from ...errors import TaskExecutionError
from .spec import (EDGES_KEY, DataEdge, Reporter, TaskSpec, outcome_fields, spec_from_dict)

TaskDict = Dict[str, Any]
StateCallback = Callable[..., None]


class Session:
    """Where a backend keeps its files; ``path`` is the engine's default work_dir."""

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path or os.getcwd()


class BaseExecutionBackend(abc.ABC):
    """The dict face: what radical.asyncflow 0.1-0.5 backends implement.

    Subclasses put their asynchronous set-up in ``_async_init``.
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


def default_backend_name(backend: Any) -> str:
    """``ConcurrentExecutionBackend`` -> ``concurrent``: a backend's default name."""
    name = type(backend).__name__
    for suffix in ('ExecutionBackend', 'Backend'):
        if name.endswith(suffix) and name != suffix:
            name = name[:-len(suffix)]
            break
    return re.sub(r'(?<=[a-z0-9])(?=[A-Z])', '_', name).lower()


class ExecutionBackend(BaseExecutionBackend):
    """The native face: task specs in, reports out through a reporter.

    A subclass implements :meth:`submit`, ``cancel_task``, ``shutdown``,
    ``state`` and ``get_task_states_map``.  The same backend object may
    serve any number of engines, one after another and at once: everything
    it needs to report on a task comes with the task.
    """

    #: Marks the classes whose dict-face methods are the bridges below, not
    #: a subclass's own: the engine drives such a backend natively.
    _NATIVE = True
    #: Tasks see the client's file system at the same paths (Noop, Concurrent,
    #: Dask on one machine or a shared FS): no staging, and no implicit data
    #: edges in the specs.  False: implicit edges come with each spec.
    shared_filesystem: bool = True
    _name: Optional[str] = None

    @property
    def name(self) -> str:
        """The name tasks route to it by (``name=`` of the constructor, else from the class)."""
        return self._name or default_backend_name(self)

    @abc.abstractmethod
    async def submit(self, tasks: Sequence[TaskSpec], reporter: Reporter) -> None:
        """Start ``tasks`` (their dependencies are done); report on each through ``reporter``."""

    def export_output(self, uid: str, file_path: str) -> str:
        """Where a file task ``uid`` produced is on the client, for a task of another backend.

        Called before such a consumer runs.  With a shared file system the
        file is where the task declared it; a backend with task sandboxes
        makes it reachable there (or raises BackendError saying why not).
        """
        return file_path

    # -- the dict face, on top of the native one ------------------------------

    async def submit_tasks(self, tasks: List[TaskDict]) -> None:
        """Run task dicts: results go into them, states to the registered callback."""
        await self.submit([spec_from_dict(task) for task in tasks], _DictReporter(self, tasks))

    def build_task(self, uid: str, task_desc: TaskDict,
                   task_backend_specific_kwargs: Dict[str, Any]) -> Any:
        """The TaskSpec this backend would run for ``task_desc``."""
        return spec_from_dict({**task_desc, 'uid': uid,
                               'task_backend_specific_kwargs': task_backend_specific_kwargs})

    def link_implicit_data_deps(self, src_task: TaskDict, dst_task: TaskDict) -> None:
        """Note the implicit data edge in ``dst_task``; it travels with its spec."""
        dst_task.setdefault(EDGES_KEY, []).append(DataEdge(src_task['uid']))

    def link_explicit_data_deps(self, src_task: Optional[TaskDict] = None,
                                dst_task: Optional[TaskDict] = None,
                                file_name: Optional[str] = None,
                                file_path: Optional[str] = None) -> Dict[str, Any]:
        """Note the file edge in ``dst_task``; return ``{'source', 'target'}``."""
        if dst_task is None:
            raise ValueError('link_explicit_data_deps needs a dst_task')
        if not file_name and not file_path:
            raise ValueError('link_explicit_data_deps needs a file_name or a file_path')
        if src_task is not None:
            path = file_path
            for produced in (src_task.get('metadata') or {}).get('output_files') or ():
                if os.path.basename(produced) == file_name:
                    path = produced
            edge = DataEdge(src_task['uid'], file_name, path or file_name)
        else:
            edge = DataEdge(None, file_name or os.path.basename(file_path), file_path)
        dst_task.setdefault(EDGES_KEY, []).append(edge)
        return {'source': edge.file_path, 'target': edge.file_name}


def failure_fields(error: BaseException) -> Dict[str, Any]:
    """The task-dict keys of a failure: ``exception``, and a command's stderr/exit code."""
    fields: Dict[str, Any] = {'exception': error}
    if isinstance(error, TaskExecutionError):
        fields['stdout'] = error.stdout
        fields['stderr'] = error.stderr
        fields['exit_code'] = error.exit_code
    return fields


class _DictReporter:
    """Turns a native backend's reports on task dicts into the dict face:
    the results written into the dicts, the states to ``task_state_cb``."""

    def __init__(self, backend: BaseExecutionBackend, tasks: List[TaskDict]) -> None:
        self._backend = backend
        self._states = backend.get_task_states_map()
        self._tasks = {task['uid']: task for task in tasks}

    def _report(self, spec: TaskSpec, state: Any, fields: Optional[Dict[str, Any]]) -> None:
        task = self._tasks.get(spec.uid)
        if task is None:
            return
        if fields:
            task.update(fields)
        self._backend.task_state_cb(task, state)

    def running(self, task: TaskSpec, where: Optional[Sequence[str]] = None) -> None:
        self._report(task, self._states.RUNNING, None)

    def done(self, task: TaskSpec, result: Any) -> None:
        self._report(task, self._states.DONE, outcome_fields(task.type, result))

    def failed(self, task: TaskSpec, error: BaseException) -> None:
        self._report(task, self._states.FAILED, failure_fields(error))

    def cancelled(self, task: TaskSpec) -> None:
        self._report(task, self._states.CANCELED, None)
