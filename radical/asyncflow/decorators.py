"""The engine's decorators: ``function_task``, ``executable_task`` and ``block``.

Each takes an ``async def`` function, bare or with options, and returns a
wrapper whose calls register a component with the engine and return its
future.  Everything that can be checked when decorating is checked here, so
that a mistake shows at the line that made it, with the function's name.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable, Dict, List, Optional, Tuple

from .data import File, InputFile, OutputFile
from .policy import TaskPolicy
from .records import (BLOCK, EXECUTABLE, ComponentRecord, ComponentType, TaskType,
                      _ComponentSpec, _describe_type, _TaskFuture)

_NO_DESCRIPTION: Dict[str, Any] = {}
#: task_description keys the engine consumes itself (besides the retry policy's).
ROUTE_KEY = 'backend'


def make_decorator(engine: Any, comp_type: ComponentType,
                   task_type: Optional[TaskType] = None) -> Callable:
    """The decorator of ``engine`` for blocks (``task_type=None``) or tasks of ``task_type``."""
    what = 'block' if task_type is None else f'{task_type.value}_task'

    def decorator(func: Optional[Callable] = None, *, service: bool = False,
                  retries: int = 0, timeout: Optional[float] = None,
                  retry_backoff: float = 1.0, backend: Optional[str] = None,
                  capture_stdio: bool = False) -> Callable:
        if func is None:
            return functools.partial(decorator, service=service, retries=retries,
                                     timeout=timeout, retry_backoff=retry_backoff,
                                     backend=backend, capture_stdio=capture_stdio)
        name = getattr(func, '__qualname__', repr(func))
        if not isinstance(service, bool):
            raise TypeError(f"'{name}': service must be True or False, not {service!r}")
        if not isinstance(capture_stdio, bool):
            raise TypeError(f"'{name}': capture_stdio must be True or False, "
                            f"not {capture_stdio!r}")
        if capture_stdio and task_type is not EXECUTABLE:
            raise TypeError(f"'{name}': capture_stdio=True is for @executable_task: a "
                            f"{what} has no stdout of its own")
        spec = component_spec(func, comp_type, task_type, service)
        if comp_type is BLOCK and (retries or timeout is not None):
            raise TypeError(f"block '{name}' takes no retries= or timeout=: set them on "
                            f"the tasks inside the block")
        policy = TaskPolicy.build(name, retries, timeout, retry_backoff)
        spec.policy, spec.description = policy.overridden(name, spec.description)
        if ROUTE_KEY in spec.description:
            spec.description = dict(spec.description)
            backend = backend or spec.description.pop(ROUTE_KEY)
        if backend is not None:
            spec.route = engine._route_named(backend, f"@{what} '{name}'")
        spec.capture_stdio = capture_stdio

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> asyncio.Future:
            return engine._register(spec, args, kwargs)

        wrapper.__asyncflow_original__ = func
        return wrapper

    decorator.__name__ = what
    return decorator


def component_spec(func: Any, comp_type: ComponentType, task_type: Optional[TaskType],
                   service: bool) -> _ComponentSpec:
    """What a decorator captures of ``func``; TypeError if it cannot be a task."""
    what = 'block' if task_type is None else f'{task_type.value}_task'
    if not callable(func):
        raise TypeError(f'@{what} decorates an async function, not {_describe_type(func)}')
    name = getattr(func, '__qualname__', repr(func))
    if getattr(func, '__name__', '') == '<lambda>':
        raise TypeError(f"@{what} needs an 'async def' function: a lambda ('{name}') "
                        f"cannot be a task; define it with 'async def'")
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"@{what} needs an 'async def' function: '{name}' is not one "
                        f"(write 'async def {getattr(func, '__name__', name)}(...)')")
    description: Dict[str, Any] = _NO_DESCRIPTION
    try:
        param = inspect.signature(func).parameters.get('task_description')
    except (TypeError, ValueError):
        param = None
    if param is not None and param.default is not inspect.Parameter.empty:
        default = param.default
        if default is not None and not isinstance(default, dict):
            raise TypeError(f"'{name}': the default of task_description must be a dict, "
                            f"not {_describe_type(default)}")
        description = dict(default or {})
    return _ComponentSpec(comp_type, task_type, func, service, description)


# ---------------------------------------------------------------- a call

def call_keywords(engine: Any, spec: _ComponentSpec, kwargs: Dict[str, Any],
                  options: Dict[str, Any], route: Any,
                  workflow_id: Optional[str]) -> Tuple[Dict[str, Any], Any, Optional[str]]:
    """Take the engine's keywords out of a call's ``kwargs``: ``task_description``
    (merged over ``options``; its ``backend`` key picks the route) and
    ``workflow_id``.  Returns the options, the route and the workflow id."""
    if 'task_description' in kwargs:
        given = kwargs.pop('task_description')
        if given is not None and not isinstance(given, dict):
            raise TypeError(f"'{spec.name}': task_description must be a dict, "
                            f"not {_describe_type(given)}")
        if given:
            options = {**options, **given}
            if ROUTE_KEY in given:
                route = engine._route_named(options.pop(ROUTE_KEY),
                                            f"'{spec.name}': task_description")
    if 'workflow_id' in kwargs:
        workflow_id = kwargs.pop('workflow_id')
        if workflow_id is not None and (not isinstance(workflow_id, str) or not workflow_id):
            raise TypeError(f"'{spec.name}': workflow_id must be a non-empty str, "
                            f"not {workflow_id!r}")
    return options, route, workflow_id


def scan_arguments(records: Dict[str, ComponentRecord], args: tuple,
                   kwargs: Dict[str, Any]) -> Tuple[Any, Any]:
    """The dependencies (futures of the engine with ``records``) and the files
    (``(InputFile names, OutputFile names)``, or None) among a call's arguments."""
    found: Dict[ComponentRecord, None] = {}
    file_args: List[File] = []
    if args:
        _scan(records, args, found, file_args)
    if kwargs:
        _scan(records, kwargs.values(), found, file_args)
    files = None
    if file_args:
        files = (tuple(f.filename for f in file_args if type(f) is InputFile),
                 tuple(f.filename for f in file_args if type(f) is OutputFile))
    return (list(found) if found else ()), files


def _scan(records: Dict[str, ComponentRecord], values: Any,
          dependencies: Dict[ComponentRecord, None], files: List[File]) -> None:
    for value in values:
        vtype = type(value)
        if vtype is _TaskFuture:
            record = value._af_record
            if records.get(record.uid) is record:
                dependencies[record] = None
        elif vtype is list or vtype is tuple:
            _scan(records, value, dependencies, files)
        elif vtype is InputFile or vtype is OutputFile:
            files.append(value)
