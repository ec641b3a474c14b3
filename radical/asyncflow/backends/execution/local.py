"""``LocalExecutionBackend``: the local backend under its radical.asyncflow 0.6 name.

Upstream 0.6 renamed the thread/process pool backend and made the executor
optional.  Here it is :class:`~.concurrent.ConcurrentExecutionBackend` with
upstream's signature: ``LocalExecutionBackend(executor=None, name='default')``;
without an executor it makes (and at shutdown stops) a ``ThreadPoolExecutor()``.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Optional

from ...errors import UsageTypeError
from .concurrent import ConcurrentExecutionBackend


class LocalExecutionBackend(ConcurrentExecutionBackend):
    """Local execution on a thread pool (the default) or a process pool."""

    # Tasks share the local file system: nothing to link between them (upstream's values).
    supports_implicit_data_linking = False
    supports_explicit_data_linking = False

    def __init__(self, executor: Optional[Executor] = None, name: str = 'default',
                 **options: Any) -> None:
        if not isinstance(name, str) or not name:
            raise UsageTypeError(f'LocalExecutionBackend name must be a non-empty str, '
                                 f'not {name!r}')
        super().__init__(executor if executor is not None else ThreadPoolExecutor(),
                         name=name, **options)
