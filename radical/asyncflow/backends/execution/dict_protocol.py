"""The dict protocol of radical.asyncflow 0.1-0.6 and rhapsody-py.

A backend of that protocol takes task dicts (``submit_tasks(list[dict])``),
is told of data edges by ``link_*_data_deps`` calls, and reports every state
change to the one callback registered with ``register_callback(func)``, in
the state values of its :class:`~radical.asyncflow.constants.StateMapper`.

* :class:`~.base.BaseExecutionBackend` is the abstract class such backends
  may derive from (a convenience: any object with the methods will do; the
  engine drives it through :class:`~.legacy.LegacyAdapter`).
* :class:`DictFace` gives this package's native backends the same methods,
  for programs that call a backend directly through them.
* :func:`spec_from_dict` / :func:`spec_to_dict` translate between task dicts
  and :class:`~.spec.TaskSpec`.

The task dicts:

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
``callback(task, state)`` with a state of its StateMapper.
"""

from __future__ import annotations

import os
import types
from typing import Any, Dict, List, Optional, Sequence

from ...constants import StateMapper
from ...errors import TaskExecutionError, UsageValueError
from .base import BaseExecutionBackend, TaskDict
from .spec import NO_OPTIONS, DataEdge, TaskSpec, TaskType, outcome_fields

#: Key under which data edges given through the link_* calls are collected in
#: a task dict, until the dict becomes a TaskSpec.
EDGES_KEY = '_asyncflow_inputs'


class DictFace(BaseExecutionBackend):
    """The dict protocol on top of a native backend's ``submit``.

    The base of this package's backends, so that programs calling
    ``submit_tasks``, ``register_callback``, ``state()``... directly (or
    checking ``isinstance(backend, BaseExecutionBackend)``) keep working; the
    engine itself uses the native contract.  A subclass that overrides one of
    these methods is driven through its dict face instead, so that its
    override runs (see :func:`~.legacy.speaks_natively`).
    """

    _stopped: bool = False

    async def submit(self, tasks: Sequence[TaskSpec], reporter: Any) -> None:
        """Start ``tasks``; report on each through ``reporter`` (the native contract)."""
        raise NotImplementedError

    def get_task_states_map(self) -> StateMapper:
        """The state values of this backend's reports (the main states' own names)."""
        return StateMapper.defaults(self.name)

    def state(self) -> str:
        """``RUNNING``, or ``STOPPED`` after shutdown."""
        return 'STOPPED' if self._stopped else 'RUNNING'

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
        dst_task.setdefault(EDGES_KEY, []).append(DataEdge(source=src_task['uid']))

    def link_explicit_data_deps(self, src_task: Optional[TaskDict] = None,
                                dst_task: Optional[TaskDict] = None,
                                file_name: Optional[str] = None,
                                file_path: Optional[str] = None) -> Dict[str, Any]:
        """Note the file edge in ``dst_task``; return ``{'source', 'target'}``."""
        if dst_task is None:
            raise UsageValueError('link_explicit_data_deps needs a dst_task')
        if not file_name and not file_path:
            raise UsageValueError('link_explicit_data_deps needs a file_name or a file_path')
        if src_task is not None:
            path = file_path
            for produced in (src_task.get('metadata') or {}).get('output_files') or ():
                if os.path.basename(produced) == file_name:
                    path = produced
            edge = DataEdge(source=src_task['uid'], file_name=file_name,
                            file_path=path or file_name)
        else:
            edge = DataEdge(source=None, file_name=file_name or os.path.basename(file_path),
                            file_path=file_path)
        dst_task.setdefault(EDGES_KEY, []).append(edge)
        return {'source': edge.file_path, 'target': edge.file_name}


#: The methods of the dict face; a subclass overriding any of them is driven through it.
DICT_FACE_METHODS = ('submit_tasks', 'task_state_cb', 'register_callback', 'build_task',
                     'link_implicit_data_deps', 'link_explicit_data_deps')


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

    def __init__(self, backend: Any, tasks: List[TaskDict]) -> None:
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

    def placed(self, task: TaskSpec, where: Sequence[str]) -> None:
        pass

    def done(self, task: TaskSpec, result: Any) -> None:
        self._report(task, self._states.DONE, outcome_fields(task.type, result))

    def failed(self, task: TaskSpec, error: BaseException) -> None:
        self._report(task, self._states.FAILED, failure_fields(error))

    def cancelled(self, task: TaskSpec) -> None:
        self._report(task, self._states.CANCELED, None)


# ----------------------------------------------------------------- dict <-> spec

def spec_from_dict(task: TaskDict) -> TaskSpec:
    """A TaskSpec for a task dict of the dict protocol (``submit_tasks``)."""
    function = task.get('function')
    metadata = task.get('metadata') or {}
    options = task.get('task_backend_specific_kwargs') or {}
    kwargs = task.get('kwargs') or {}
    return TaskSpec(
        uid=task['uid'], name=str(task.get('name') or task['uid']),
        type=TaskType.FUNCTION if function is not None else
        TaskType.PROMPT if task.get('prompt') else TaskType.EXECUTABLE,
        function=function, command=task.get('executable'),
        args=tuple(task.get('args') or ()),
        kwargs=types.MappingProxyType(dict(kwargs)) if kwargs else NO_OPTIONS,
        options=types.MappingProxyType(dict(options)) if options else NO_OPTIONS,
        service=bool(task.get('is_service')), attempt=int(task.get('attempt') or 1),
        inputs=tuple(task.get(EDGES_KEY) or ()),
        input_files=tuple(metadata.get('input_files') or ()),
        output_files=tuple(metadata.get('output_files') or ()),
        workflow_id=task.get('workflow_id'), stdio_dir=task.get('stdio_dir'),
        prompt=task.get('prompt'))


def spec_to_dict(spec: TaskSpec) -> TaskDict:
    """The task dict of the dict protocol for ``spec`` (a new dict)."""
    return {
        'uid': spec.uid,
        'name': spec.name,
        'function': spec.function,
        'executable': spec.command,
        'args': spec.args,
        'kwargs': dict(spec.kwargs),
        'is_service': spec.service,
        'async': True,
        'attempt': spec.attempt,
        'metadata': {'input_files': list(spec.input_files),
                     'output_files': list(spec.output_files)},
        'task_backend_specific_kwargs': dict(spec.options),
        'workflow_id': spec.workflow_id,
        'capture_stdio': spec.stdio_dir is not None,
        'stdio_dir': spec.stdio_dir,
        'prompt': spec.prompt,
    }
