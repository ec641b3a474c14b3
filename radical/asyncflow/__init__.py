"""radical.asyncflow: an asyncio workflow engine for HPC.

Names are imported on first use, so ``import radical.asyncflow`` stays fast
and works without the optional backends' packages (dask, radical.pilot).
"""

from __future__ import annotations

import importlib
from typing import Any

try:
    from importlib.metadata import PackageNotFoundError, version as _version
    __version__ = _version('radical.asyncflow')
except PackageNotFoundError:          # running from a source tree
    __version__ = '0.0.0+unknown'

_EXPORTS = {
    'WorkflowEngine': '.workflow_manager',
    'Task': '.task',
    'InputFile': '.data',
    'OutputFile': '.data',
    'DependencyFailure': '.errors',
    'DependencyFailureError': '.errors',
    'TasksMainStates': '.constants',
    'StateMapper': '.constants',
    'BaseExecutionBackend': '.backends.execution.base',
    'NoopExecutionBackend': '.backends.execution.noop',
    'ConcurrentExecutionBackend': '.backends.execution.concurrent',
    'LocalExecutionBackend': '.backends.execution.local',
    'DaskExecutionBackend': '.backends.execution.dask_parallel',
    'RadicalExecutionBackend': '.backends.execution.radical_pilot',
}

__all__ = ['__version__', *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(__all__)
