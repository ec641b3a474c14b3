"""Execution backends: adapters from the engine to an execution system.

The names radical.asyncflow 0.6 programs import from ``radical.asyncflow.backends``
are here too, imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    'LocalExecutionBackend': '.execution.local',
    'NoopExecutionBackend': '.execution.noop',
    'ConcurrentExecutionBackend': '.execution.concurrent',
    'BaseExecutionBackend': '.execution.base',
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
