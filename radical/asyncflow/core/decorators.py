"""The engine's decorators: ``function_task``, ``executable_task``, ``prompt_task``, ``block``.

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

from ..data import File, InputFile, OutputFile
from .policy import TaskPolicy
from .records import (BLOCK, EXECUTABLE, PROMPT, ComponentRecord, ComponentSpec,
                      ComponentType, TaskFuture, TaskType, describe_type)
from .routing import Routes
from ..errors import UsageTypeError

#: ``register(spec, args, kwargs) -> future``: what a call of a decorated function does.
Register = Callable[[ComponentSpec, tuple, Dict[str, Any]], asyncio.Future]

_NO_DESCRIPTION: Dict[str, Any] = {}
#: task_description keys the engine consumes itself (besides the retry policy's).
ROUTE_KEY = 'backend'


def make_decorator(register: Register, routes: Routes, comp_type: ComponentType,
                   task_type: Optional[TaskType] = None) -> Callable:
    """The decorator for blocks (``task_type=None``) or tasks of ``task_type``, whose
    calls go to ``register``; ``backend=`` names one of ``routes``."""
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
            raise UsageTypeError(f"'{name}': service must be True or False, not {service!r}")
        if not isinstance(capture_stdio, bool):
            raise UsageTypeError(f"'{name}': capture_stdio must be True or False, "
                                 f"not {capture_stdio!r}")
        if capture_stdio and task_type is not EXECUTABLE:
            raise UsageTypeError(f"'{name}': capture_stdio=True is for @executable_task: a "
                                 f"{what} has no stdout of its own")
        description = definition_description(func, what)
        if comp_type is BLOCK and (retries or timeout is not None):
            raise UsageTypeError(f"block '{name}' takes no retries= or timeout=: set them on "
                                 f"the tasks inside the block")
        policy = TaskPolicy.build(name, retries, timeout, retry_backoff)
        policy, description = policy.overridden(name, description)
        if ROUTE_KEY in description:
            description = dict(description)
            backend = backend or description.pop(ROUTE_KEY)
        route = routes.named(backend, f"@{what} '{name}'") if backend is not None else None
        if task_type is PROMPT:         # refused here, not when the task would run
            route = routes.for_prompts(route, f"prompt task '{name}'")
        spec = ComponentSpec(
            kind=comp_type, task_type=task_type, func=func, name=func.__name__,
            is_service=service, description=description, policy=policy,
            route=route, capture_stdio=capture_stdio)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> asyncio.Future:
            return register(spec, args, kwargs)

        wrapper.__asyncflow_original__ = func
        return wrapper

    decorator.__name__ = what
    return decorator


def definition_description(func: Any, what: str) -> Dict[str, Any]:
    """The ``task_description`` default of ``func``; TypeError if it cannot be a task."""
    if not callable(func):
        raise UsageTypeError(f'@{what} decorates an async function, not {describe_type(func)}')
    name = getattr(func, '__qualname__', repr(func))
    if getattr(func, '__name__', '') == '<lambda>':
        raise UsageTypeError(f"@{what} needs an 'async def' function: a lambda ('{name}') "
                             f"cannot be a task; define it with 'async def'")
    if not inspect.iscoroutinefunction(func):
        raise UsageTypeError(f"@{what} needs an 'async def' function: '{name}' is not one "
                             f"(write 'async def {getattr(func, '__name__', name)}(...)')")
    try:
        param = inspect.signature(func).parameters.get('task_description')
    except (TypeError, ValueError):
        param = None
    if param is None or param.default is inspect.Parameter.empty:
        return _NO_DESCRIPTION
    default = param.default
    if default is not None and not isinstance(default, dict):
        raise UsageTypeError(f"'{name}': the default of task_description must be a dict, "
                             f"not {describe_type(default)}")
    return dict(default or {})


# ---------------------------------------------------------------- a call

def call_keywords(routes: Routes, spec: ComponentSpec, kwargs: Dict[str, Any],
                  options: Dict[str, Any], route: Any,
                  workflow_id: Optional[str]) -> Tuple[Dict[str, Any], Any, Optional[str]]:
    """Take the engine's keywords out of a call's ``kwargs``: ``task_description``
    (merged over ``options``; its ``backend`` key picks the route) and
    ``workflow_id``.  Returns the options, the route and the workflow id."""
    if 'task_description' in kwargs:
        given = kwargs.pop('task_description')
        if given is not None and not isinstance(given, dict):
            raise UsageTypeError(f"'{spec.name}': task_description must be a dict, "
                                 f"not {describe_type(given)}")
        if given:
            options = {**options, **given}
            if ROUTE_KEY in given:
                route = routes.named(options.pop(ROUTE_KEY),
                                            f"'{spec.name}': task_description")
                if spec.task_type is PROMPT:
                    route = routes.for_prompts(route, f"prompt task '{spec.name}'") or \
                        routes.default
    if 'workflow_id' in kwargs:
        workflow_id = kwargs.pop('workflow_id')
        if workflow_id is not None and (not isinstance(workflow_id, str) or not workflow_id):
            raise UsageTypeError(f"'{spec.name}': workflow_id must be a non-empty str, "
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
        if vtype is TaskFuture:
            record = value._af_record
            if records.get(record.uid) is record:
                dependencies[record] = None
        elif vtype is list or vtype is tuple:
            _scan(records, value, dependencies, files)
        elif vtype is InputFile or vtype is OutputFile:
            files.append(value)
