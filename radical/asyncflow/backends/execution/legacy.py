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
import shlex
import shutil
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

from ...errors import BackendError, UsageValueError
from .base import NATIVE_METHODS, BaseExecutionBackend, backend_name, check_backend
from .dict_protocol import DICT_FACE_METHODS, DictFace, spec_to_dict
from .spec import DataEdge, Reporter, TaskSpec, TaskType

log = logging.getLogger('radical.asyncflow')


_PACKAGE = 'radical.asyncflow.'


def speaks_natively(backend: Any) -> bool:
    """Whether the engine may drive ``backend`` through the native contract.

    True when it has the native methods and no dict-protocol method written
    outside this package: a backend with its own ``submit_tasks`` (a
    dict-protocol backend, or a program's subclass of one of ours that
    overrides a dict-face method) is driven through that face, so that its
    own code runs.
    """
    cls = type(backend)
    if not all(inspect.iscoroutinefunction(getattr(cls, name, None)) for name in NATIVE_METHODS):
        return False
    for name in DICT_FACE_METHODS:
        owner = next((klass for klass in cls.__mro__ if name in vars(klass)), None)
        # Our backends may shape their own dict face (RP's build_task); a method
        # written outside the package is a program's and must run.
        if owner is not None and owner is not DictFace \
                and not owner.__module__.startswith(_PACKAGE):
            return False
    return True


def is_rhapsody_backend(backend: Any) -> bool:
    """Whether ``backend`` derives from rhapsody-py's ``BaseBackend`` (without importing it)."""
    return any(cls.__module__.startswith('rhapsody.') and cls.__name__ == 'BaseBackend'
               for cls in type(backend).__mro__)


def split_command(spec: TaskSpec) -> 'tuple[str, list]':
    """``(executable, arguments)`` of an executable task's command, split as a shell
    would split its words (``shlex``), as radical.asyncflow 0.6 hands it to a backend."""
    try:
        words = shlex.split(spec.command or '')
    except ValueError as exc:
        raise UsageValueError(f"task '{spec.name}' ({spec.uid}): its command cannot be split "
                              f"into words ({exc}): {spec.command!r}") from None
    if not words:
        raise UsageValueError(f"task '{spec.name}' ({spec.uid}): its command is empty")
    return words[0], words[1:]


def data_linking(backend: Any) -> 'tuple[bool, bool]':
    """Whether the engine calls ``backend``'s implicit and explicit ``link_*`` methods.

    As the backend declares (``supports_implicit_data_linking``,
    ``supports_explicit_data_linking``); undeclared means no, as in
    radical.asyncflow 0.6, except for subclasses of :class:`BaseExecutionBackend`,
    the abstract class of 0.1-0.5, whose engines always linked.
    """
    default = isinstance(backend, BaseExecutionBackend)
    return (bool(getattr(backend, 'supports_implicit_data_linking', default)),
            bool(getattr(backend, 'supports_explicit_data_linking', default)))


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

    #: Adapters of backends that cannot be weakly referenced, by id, while in use.
    _strong: Dict[int, 'LegacyAdapter'] = {}

    @classmethod
    def for_backend(cls, backend: Any) -> 'LegacyAdapter':
        """The adapter of ``backend`` (made, and its callback registered, on first use).

        A backend has one callback slot: the one adapter of a backend object
        owns it for every engine that uses the backend.
        """
        check_backend(backend)
        with cls._adapters_lock:
            try:
                adapter = cls._adapters.get(backend)
                weak = True
            except TypeError:              # not weak-referenceable or unhashable
                adapter = cls._strong.get(id(backend))
                weak = False
            if adapter is None:
                adapter = cls(backend)
                if weak:
                    cls._adapters[backend] = adapter
                else:
                    cls._strong[id(backend)] = adapter
        return adapter

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.states = backend.get_task_states_map()
        self._engines: List[Any] = []
        self.reports_running = bool(getattr(backend, 'reports_running', False))
        # rhapsody-py's backends (radical.asyncflow 0.6's) take a command as
        # executable + arguments, split as 0.6 splits it, and run it without a
        # shell unless told; backends of the 0.1-0.5 protocol take the whole line.
        self._argv_executables = is_rhapsody_backend(backend)
        self.implicit_linking, self.explicit_linking = data_linking(backend)
        self._lock = threading.Lock()
        self._live: Dict[str, _Entry] = {}           # uid -> current attempt, until final
        self._dicts: Dict[str, Dict[str, Any]] = {}  # uid -> last dict (a producer's, for links)
        self._owner: Dict[str, Reporter] = {}        # uid -> reporter, while _dicts has it
        backend.register_callback(self.on_report)

    @property
    def name(self) -> str:
        """The backend's name (its ``name`` attribute, else from its class)."""
        return backend_name(self.backend)

    def attach(self, engine: Any) -> None:
        """An engine uses the backend from now on."""
        with self._lock:
            self._engines.append(engine)

    def detach(self, engine: Any) -> bool:
        """The engine is done with the backend; True if no other engine uses it."""
        with self._lock:
            if engine in self._engines:
                self._engines.remove(engine)
            last = not self._engines
        if last:
            with self._adapters_lock:
                if self._strong.get(id(self.backend)) is self:
                    del self._strong[id(self.backend)]
        return last

    # -- engine side -----------------------------------------------------------

    async def submit(self, tasks: Sequence[TaskSpec], reporter: Reporter) -> None:
        """Turn ``tasks`` into dicts, tell the backend their data edges, submit them."""
        dicts = []
        for spec in tasks:
            task = spec_to_dict(spec)
            task['target_backend'] = self.name
            try:
                if spec.type is TaskType.EXECUTABLE:
                    if self._argv_executables:
                        task['executable'], task['arguments'] = split_command(spec)
                    else:
                        task['arguments'] = []
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
        implicit, explicit = self.implicit_linking, self.explicit_linking
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
            if spec.type is TaskType.PROMPT and task.get('response') is not None:
                value = _answer(task['response'])
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


def _answer(response: Any) -> Any:
    """A prompt's answer: rhapsody's AI backends answer a list, one per prompt."""
    if isinstance(response, (list, tuple)) and len(response) == 1:
        return response[0]
    return response


def _let_go(task: Dict[str, Any]) -> None:
    """Drop a finished task's arguments and result from the dict kept for data links."""
    task['args'] = ()
    task['kwargs'] = {}
    task.pop('return_value', None)
    task.pop('stdout', None)


def _failure(spec: TaskSpec, task: Dict[str, Any]) -> BaseException:
    error = task.get('exception') or task.get('stderr')
    if error is None or error == '':
        code = task.get('exit_code')
        error = f"task '{spec.name}' ({spec.uid}) failed" + \
            (f' with exit code {code}' if code not in (None, '') else ' with an unknown error')
    if isinstance(error, Exception):
        return error
    if isinstance(error, BaseException):
        # rhapsody's Dragon backend reports a non-zero exit as SystemExit: raised
        # from await it would end the program instead of failing one task.
        return BackendError(f"task '{spec.name}' ({spec.uid}) failed: its process ended with "
                            f"{error!r}")
    return RuntimeError(str(error))
