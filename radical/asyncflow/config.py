"""The default backend: what ``WorkflowEngine.create()`` uses without one.

``radical-asyncflow-run`` (or the user) names it through the environment:

* ``RADICAL_ASYNCFLOW_BACKEND``: ``concurrent``, ``dask``, ``radical`` or ``noop``
* ``RADICAL_ASYNCFLOW_RESOURCES``: a JSON object of backend resources
  (for ``concurrent``: ``max_workers`` and ``executor``, ``thread`` or ``process``)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

ENV_BACKEND = 'RADICAL_ASYNCFLOW_BACKEND'
ENV_RESOURCES = 'RADICAL_ASYNCFLOW_RESOURCES'
ENV_JOURNAL = 'RADICAL_ASYNCFLOW_JOURNAL'

BACKEND_NAMES = ('concurrent', 'dask', 'radical', 'noop')


@dataclass
class BackendConfig:
    """Which backend to build and with which resources."""

    name: str
    resources: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {self.name!r}: choose one of "
                             f"{', '.join(BACKEND_NAMES)}")
        if not isinstance(self.resources, dict):
            raise ValueError(f'backend resources must be a JSON object, '
                             f'not {type(self.resources).__name__}')


def configured_backend(environ: Optional[Dict[str, str]] = None) -> Optional[BackendConfig]:
    """The backend named by the environment, or None."""
    environ = os.environ if environ is None else environ
    name = environ.get(ENV_BACKEND, '').strip().lower()
    if not name:
        return None
    raw = environ.get(ENV_RESOURCES, '').strip()
    try:
        resources = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f'{ENV_RESOURCES} is not valid JSON: {exc}') from None
    return BackendConfig(name, resources)


def build_backend(cfg: BackendConfig):
    """A (not yet initialised) backend for ``cfg``."""
    resources = dict(cfg.resources)
    if cfg.name == 'noop':
        from .backends.execution.noop import NoopExecutionBackend
        return NoopExecutionBackend()
    if cfg.name == 'concurrent':
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
        from .backends.execution.concurrent import ConcurrentExecutionBackend
        kind = resources.pop('executor', 'thread')
        workers = resources.pop('max_workers', None)
        if kind not in ('thread', 'process'):
            raise ValueError(f"concurrent backend executor must be 'thread' or 'process', not {kind!r}")
        pool = (ThreadPoolExecutor if kind == 'thread' else ProcessPoolExecutor)(max_workers=workers)
        return ConcurrentExecutionBackend(pool)
    if cfg.name == 'dask':
        from .backends.execution.dask_parallel import DaskExecutionBackend
        return DaskExecutionBackend(resources)
    from .backends.execution.radical_pilot import RadicalExecutionBackend
    raptor = resources.pop('raptor_config', None)
    return RadicalExecutionBackend(resources, raptor_config=raptor)


async def create_default_backend():
    """Build and initialise the configured backend, or raise RuntimeError."""
    cfg = configured_backend()
    if cfg is None:
        raise RuntimeError(
            'WorkflowEngine.create() got no backend and none is configured: pass one '
            '(backend=await ConcurrentExecutionBackend(ThreadPoolExecutor())), use '
            f'dry_run=True, set {ENV_BACKEND}=concurrent|dask|radical|noop, or run the '
            'driver with radical-asyncflow-run')
    return await build_backend(cfg).initialize()
