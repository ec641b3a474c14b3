"""Driving a backend of the dict protocol (radical.asyncflow 0.1-0.5, rhapsody-py).

Such a backend takes task dicts (``submit_tasks(list[dict])``), is told of
data edges by ``link_*_data_deps`` calls, and reports every state change to
the one callback registered with ``register_callback(func)``.  One
:class:`LegacyAdapter` per backend object registers that callback once and
routes each report by task uid (unique in the process) to the reporter of the
engine that submitted the task: a backend may serve several engines, one
after another or at once.  A report about a task no engine tracks any more
(its engine shut down, or an earlier attempt) is dropped.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

from .spec import DataEdge, Reporter, TaskSpec, TaskType, spec_to_dict

#: Methods the engine calls on a dict-protocol backend.
REQUIRED_METHODS = ('submit_tasks', 'register_callback', 'get_task_states_map', 'cancel_task',
                    'shutdown', 'link_implicit_data_deps', 'link_explicit_data_deps')
#: Methods a dict-protocol backend may override on a native one: if it does,
#: the engine drives it through its dict face so that the override runs.
DICT_FACE_METHODS = ('submit_tasks', 'task_state_cb', 'register_callback', 'build_task',
                     'link_implicit_data_deps', 'link_explicit_data_deps')

log = logging.getLogger('radical.asyncflow')


def missing_methods(backend: Any) -> List[str]:
    """The methods of the dict protocol ``backend`` lacks."""
    return [name for name in REQUIRED_METHODS if not callable(getattr(backend, name, None))]


def check_backend(backend: Any) -> None:
    """TypeError naming what ``backend`` lacks to be an execution backend."""
    missing = missing_methods(backend)
    if missing:
        has = [name for name in REQUIRED_METHODS if name not in missing]
        raise TypeError(
            f'backend must be an execution backend (e.g. await ConcurrentExecutionBackend('
            f'ThreadPoolExecutor())), not {type(backend).__name__}: it has no '
            f'{", ".join(m + "()" for m in missing)}'
            + (f' (it has {", ".join(m + "()" for m in has)})' if has else ''))


def speaks_natively(backend: Any) -> bool:
    """Whether the engine may drive ``backend`` through its native face.

    True for this package's backends, unless a subclass overrides one of
    their dict-face methods (then the override is what must run).
    """
    from .base import BaseExecutionBackend
    cls = type(backend)
    if not getattr(cls, '_NATIVE', False) or not callable(getattr(backend, 'submit', None)):
        return False
    for name in DICT_FACE_METHODS:
        for klass in cls.__mro__:
            if name in vars(klass):
                if not (vars(klass).get('_NATIVE', False) or klass is BaseExecutionBackend):
                    return False
                break
    return True


@dataclass
class _Entry:
    """A task this adapter handed to its backend, and whom to tell about it."""

    spec: TaskSpec
    task: Dict[str, Any]
    reporter: Reporter


class LegacyAdapter:
    """Drives one dict-protocol backend for every engine that uses it."""

    _adapters: 'weakref.WeakKeyDictionary[Any, LegacyAdapter]' = weakref.WeakKeyDictionary()
    _adapters_lock = threading.Lock()

    @classmethod
    def for_backend(cls, backend: Any) -> 'LegacyAdapter':
        """The adapter of ``backend`` (made, and its callback registered, on first use)."""
        check_backend(backend)
        with cls._adapters_lock:
            try:
                adapter = cls._adapters.get(backend)
            except TypeError:              # not weak-referenceable or unhashable
                adapter = getattr(backend, '_asyncflow_adapter', None)
            if adapter is None:
                adapter = cls(backend)
                try:
                    cls._adapters[backend] = adapter
                except TypeError:
                    backend._asyncflow_adapter = adapter
        return adapter

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.states = backend.get_task_states_map()
        self.reports_running = bool(getattr(backend, 'reports_running', False))
        # rhapsody-py backends (which declare their data-linking support) run
        # an executable as an argv unless told to use a shell
        self._argv_executables = hasattr(backend, 'supports_implicit_data_linking')
        self._lock = threading.Lock()
        self._live: Dict[str, _Entry] = {}           # uid -> current attempt, until final
        self._dicts: Dict[str, Dict[str, Any]] = {}  # uid -> last dict (a producer's, for links)
        self._owner: Dict[str, Reporter] = {}        # uid -> reporter, while _dicts has it
        backend.register_callback(self.on_report)

    @property
    def name(self) -> str:
        """The backend's name (its ``name`` attribute, else from its class)."""
        from .base import default_backend_name
        name = getattr(self.backend, 'name', None)
        return name if isinstance(name, str) and name else default_backend_name(self.backend)

    # -- engine side -----------------------------------------------------------

    async def submit(self, tasks: Sequence[TaskSpec], reporter: Reporter) -> None:
        """Turn ``tasks`` into dicts, tell the backend their data edges, submit them."""
        dicts = []
        for spec in tasks:
            task = spec_to_dict(spec)
            if self._argv_executables and spec.type is TaskType.EXECUTABLE:
                task['task_backend_specific_kwargs'].setdefault('shell', True)
            try:
                self._link(spec, task)
            except Exception as exc:
                reporter.failed(spec, exc)
                continue
            with self._lock:
                self._live[spec.uid] = _Entry(spec, task, reporter)
                self._dicts[spec.uid] = task
                self._owner[spec.uid] = reporter
            dicts.append(task)
        if not dicts:
            return
        result = self.backend.submit_tasks(dicts)
        if inspect.isawaitable(result):
            await result

    def _link(self, spec: TaskSpec, task: Dict[str, Any]) -> None:
        backend = self.backend
        implicit = getattr(backend, 'supports_implicit_data_linking', True)
        explicit = getattr(backend, 'supports_explicit_data_linking', True)
        for edge in spec.inputs:
            if edge.implicit:
                if implicit:
                    backend.link_implicit_data_deps(self._source(edge), task)
            elif explicit:
                backend.link_explicit_data_deps(
                    src_task=self._source(edge) if edge.source else None, dst_task=task,
                    file_name=edge.file_name,
                    file_path=None if edge.source else edge.file_path)

    def _source(self, edge: DataEdge) -> Dict[str, Any]:
        """The producer's dict (a stand-in if it never ran here: replayed, another backend)."""
        with self._lock:
            task = self._dicts.get(edge.source)
        if task is None:
            outputs = [edge.file_path] if edge.file_path else []
            task = {'uid': edge.source, 'name': edge.source,
                    'metadata': {'input_files': [], 'output_files': outputs}}
        return task

    async def cancel_task(self, uid: str) -> bool:
        """Ask the backend to cancel ``uid``."""
        result = self.backend.cancel_task(uid)
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    def forget(self, reporter: Reporter) -> None:
        """Drop what this adapter keeps for the engine of ``reporter`` (it shut down)."""
        with self._lock:
            uids = [uid for uid, owner in self._owner.items() if owner is reporter]
            for uid in uids:
                self._owner.pop(uid, None)
                self._dicts.pop(uid, None)
                self._live.pop(uid, None)

    # -- backend side (any thread) ---------------------------------------------

    def on_report(self, task: Any, state: Any, service_callback: Any = None) -> None:
        """The callback registered with the backend."""
        if not isinstance(task, dict):
            task = task.as_dict() if hasattr(task, 'as_dict') else dict(task)
        uid = task.get('uid')
        states = self.states
        final = state == states.DONE or state == states.FAILED or state == states.CANCELED
        with self._lock:
            entry = self._live.get(uid)
            if entry is None or not self._current(entry, task):
                entry = None
            elif final:
                del self._live[uid]
        if entry is None:
            log.debug('%s: state %s of %s dropped: no engine tracks that task (attempt)',
                      self.name, state, uid)
            return
        spec, reporter = entry.spec, entry.reporter
        if state == states.DONE:
            value = task.get('return_value' if spec.type is TaskType.FUNCTION else 'stdout')
            if spec.stdio_dir is not None:
                value = _captured(spec.stdio_dir, task)
            _let_go(task)
            reporter.done(spec, value)
        elif state == states.FAILED:
            error = _failure(spec, task)
            _let_go(task)
            reporter.failed(spec, error)
        elif state == states.CANCELED:
            reporter.cancelled(spec)
        elif state == states.RUNNING:
            reporter.running(spec)

    @staticmethod
    def _current(entry: _Entry, task: Dict[str, Any]) -> bool:
        """Whether ``task`` is about the attempt ``entry`` holds (not an earlier one)."""
        return task is entry.task or task.get('attempt', entry.spec.attempt) == entry.spec.attempt


def _captured(folder: str, task: Dict[str, Any]) -> Any:
    """The stdout and stderr a capture_stdio task left, as files in ``folder``.

    rhapsody-py backends write them to files and report the paths; a backend
    that reported the text instead gets it written there.
    """
    from ._command import CommandSpec
    os.makedirs(folder, exist_ok=True)
    for stream in ('stdout', 'stderr'):
        value, target = task.get(stream), os.path.join(folder, stream)
        if isinstance(value, str) and value and os.path.isfile(value):
            if os.path.abspath(value) != target:
                shutil.move(value, target)
        else:
            with open(target, 'w', encoding='utf-8') as handle:
                handle.write(value or '')
    return CommandSpec('', stdio_dir=folder).captured(int(task.get('exit_code') or 0))


def _let_go(task: Dict[str, Any]) -> None:
    """Drop a finished task's arguments and result from the dict kept for data links."""
    task['args'] = ()
    task['kwargs'] = {}
    task.pop('return_value', None)
    task.pop('stdout', None)


def _failure(spec: TaskSpec, task: Dict[str, Any]) -> BaseException:
    error = task.get('exception') or task.get('stderr') or \
        f"task '{spec.name}' ({spec.uid}) failed with an unknown error"
    if isinstance(error, BaseException):
        return error
    return RuntimeError(str(error))
