"""Which backends an engine uses, and how it talks to each.

:func:`open_backends` turns the ``backend`` argument of
``WorkflowEngine.create`` into initialised backends: the one given, each of
a list, the Noop backend for a dry run, or the backend configured for
``radical-asyncflow-run`` (environment or config file).  Each becomes a
:class:`BackendRoute`: its name, the backend, and the *driver* the engine
submits through: the backend itself when it speaks the native face, else
the one :class:`~.backends.execution.legacy.LegacyAdapter` of that backend.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from .backends.execution.legacy import LegacyAdapter, check_backend, speaks_natively
from .process_wide import warn_once

_log = logging.getLogger('radical.asyncflow')
#: Set by radical-asyncflow-run when the user chose the backend(s): their names.
ENV_CHOSEN = 'RADICAL_ASYNCFLOW_CHOSEN'


@dataclass(eq=False)
class BackendRoute:
    """One backend of an engine (hashable by identity)."""

    name: str
    backend: Any
    #: What the engine calls: ``submit(specs, reporter)``, ``cancel_task(uid)``.
    driver: Any
    #: Whether RUNNING is reported when a task starts (timeouts count from then).
    reports_running: bool
    #: Whether its tasks get implicit data edges: a backend of the dict protocol
    #: (told through link_implicit_data_deps), or one without a shared file system.
    stages_data: bool

    @property
    def states(self) -> Any:
        """The backend's StateMapper (for reports given as task dicts)."""
        return self.backend.get_task_states_map()

    def forget(self, reporter: Any) -> None:
        """Drop what the driver keeps for the engine of ``reporter``."""
        forget = getattr(self.driver, 'forget', None)
        if forget is not None:
            forget(reporter)


def backend_name(backend: Any) -> str:
    """A backend's routing name: its ``name`` attribute, else derived from its class."""
    from .backends.execution.base import default_backend_name
    name = getattr(backend, 'name', None)
    return name if isinstance(name, str) and name else default_backend_name(backend)


def make_route(backend: Any) -> BackendRoute:
    """The route to ``backend``; TypeError naming what a foreign object lacks."""
    if speaks_natively(backend):
        driver = backend
        stages_data = not getattr(backend, 'shared_filesystem', True)
    else:
        driver = LegacyAdapter.for_backend(backend)
        stages_data = True
    return BackendRoute(backend_name(backend), backend, driver,
                        bool(getattr(backend, 'reports_running', False)), stages_data)


async def open_backends(backend: Any, dry_run: bool) -> List[Any]:
    """The initialised backends of a new engine, the default first."""
    from .backends.execution.noop import NoopExecutionBackend
    if not isinstance(dry_run, bool):
        raise TypeError(f'dry_run must be True or False, not {dry_run!r}')
    if backend is None:
        if dry_run:
            return [await NoopExecutionBackend()]
        return await _configured_backends()
    backends = list(backend) if isinstance(backend, (list, tuple)) else [backend]
    if not backends:
        raise ValueError('WorkflowEngine.create(backend=[]): give at least one backend')
    for given in backends:
        check_backend(given)
        if dry_run and not isinstance(given, NoopExecutionBackend):
            raise RuntimeError(f'dry_run=True runs on the Noop backend; leave backend '
                               f'unset instead of passing {type(given).__name__}')
    chosen = os.environ.get(ENV_CHOSEN, '').strip()
    if chosen:
        warn_once(f'radical-asyncflow-run: warning: the driver made its own backend, so '
                  f'{", ".join(type(b).__name__ for b in backends)} runs its tasks, '
                  f'not the {chosen} backend chosen for it')
    return [await initialize(given) for given in backends]


async def initialize(backend: Any) -> Any:
    """Run a backend's asynchronous set-up once (ours: ``initialize``; foreign: await it)."""
    init = getattr(backend, 'initialize', None)
    if init is not None and inspect.iscoroutinefunction(init):
        return await init()
    if getattr(backend, '_initialized', True) is False and inspect.isawaitable(backend):
        result = await backend
        return backend if result is None else result
    return backend


def check_names(backends: Sequence[Any]) -> List[str]:
    """The routing names of ``backends``; ValueError on a duplicate."""
    names: List[str] = []
    for backend in backends:
        name = backend_name(backend)
        if name in names:
            raise ValueError(f"two backends are named {name!r}: give each a distinct "
                             f"name= (e.g. ConcurrentExecutionBackend(pool, name='local'))")
        names.append(name)
    return names


async def _configured_backends() -> List[Any]:
    """Build and initialise the configured backends, or raise RuntimeError."""
    from . import config
    from .backends import registry
    configured = config.configured_backends()
    if configured is None:
        raise RuntimeError(
            'WorkflowEngine.create() got no backend and none is configured: pass one '
            '(backend=await ConcurrentExecutionBackend(ThreadPoolExecutor())), use '
            f'dry_run=True, set {config.ENV_BACKEND}=concurrent|dask|radical|noop (or name a '
            f'config file in {config.ENV_CONFIG}), or run the driver with '
            f'radical-asyncflow-run')
    backends: List[Any] = []
    try:
        for cfg in configured:
            named = {**cfg.resources, 'name': cfg.name} if len(configured) > 1 \
                else cfg.resources
            backends.append(await initialize(registry.build(cfg.kind, named)))
    except BaseException:
        await shutdown_backends([make_route(b) for b in backends], _log)
        raise
    return backends


async def shutdown_backends(routes: Sequence[BackendRoute], log: Any) -> None:
    """Shut every backend down; one that fails does not stop the others."""
    for route in routes:
        try:
            result = route.backend.shutdown()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.error('shutting down backend %r failed: %s', route.name, exc)


def find_route(routes: Sequence[BackendRoute], name: Optional[str]) -> Optional[BackendRoute]:
    """The route called ``name`` (None: not there)."""
    for route in routes:
        if route.name == name:
            return route
    return None
