"""Calling a task's function in another process.

The decorator replaces a module-level function with its wrapper, so plain
pickle cannot ship the original by reference ("not the same object").  A
:class:`FunctionRef` names it by module and qualified name instead and, in
the worker, unwraps the decorator again.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple
from ...errors import UsageTypeError


@dataclass(frozen=True)
class FunctionRef:
    """A module-level function, by name."""

    module: str
    qualname: str

    @classmethod
    def of(cls, func: Callable, task_name: str) -> 'FunctionRef':
        """A reference to ``func``, or TypeError if it is not module-level."""
        qualname = getattr(func, '__qualname__', '')
        module = getattr(func, '__module__', None)
        if not module or not qualname or '<locals>' in qualname or '<lambda>' in qualname:
            raise UsageTypeError(
                f"task '{task_name}': a ProcessPoolExecutor can only run functions "
                f"defined at module level, and {qualname or func!r} is defined inside "
                f"another function; move it to module level or use a ThreadPoolExecutor")
        return cls(module, qualname)

    def resolve(self) -> Callable:
        """The original (undecorated) function."""
        module = sys.modules.get(self.module) or importlib.import_module(self.module)
        obj: Any = module
        for part in self.qualname.split('.'):
            obj = getattr(obj, part)
        return getattr(obj, '__asyncflow_original__', obj)


def call_function(func: Callable, args: Tuple, kwargs: Dict[str, Any]) -> Any:
    """Call ``func``; a coroutine function runs to completion on a fresh loop."""
    if inspect.iscoroutinefunction(func):
        return asyncio.run(func(*args, **kwargs))
    return func(*args, **kwargs)
