"""Which backends an engine uses, and how it talks to each.

Each backend of an engine becomes a :class:`BackendRoute`: its name, the
backend, the *driver* the engine submits through (the backend itself when it
speaks the native contract, else the one
:class:`~radical.asyncflow.backends.execution.legacy.LegacyAdapter` of that
backend), and whether this engine owns it (closes it at shutdown).
:class:`Routes` holds them, the default first.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sequence

from ..backends.execution.base import backend_name, check_backend
from ..constants import StateMapper
from ..backends.execution.legacy import LegacyAdapter, speaks_natively
from ..backends.execution.spec import answers_prompts
from ..errors import UsageValueError


@dataclass(eq=False, slots=True)
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
    #: Whether the engine closes the backend when it shuts down.
    owned: bool = True

    @property
    def states(self) -> Any:
        """The backend's StateMapper (for reports given as task dicts)."""
        states = getattr(self.driver, 'states', None)
        if states is not None:
            return states
        get_map = getattr(self.backend, 'get_task_states_map', None)
        return get_map() if get_map is not None else StateMapper.defaults(self.name)

    def attach(self, engine: Any) -> None:
        """The engine uses the backend from now on."""
        attach = getattr(self.driver, 'attach', None)
        if attach is not None:
            attach(engine)

    def detach(self, engine: Any) -> bool:
        """The engine is done with the backend; True if no other engine uses it."""
        detach = getattr(self.driver, 'detach', None)
        return detach(engine) if detach is not None else True

    def forget(self, reporter: Any) -> None:
        """Drop what the driver keeps for the engine of ``reporter``."""
        forget = getattr(self.driver, 'forget', None)
        if forget is not None:
            forget(reporter)


def make_route(backend: Any, owned: bool = True) -> BackendRoute:
    """The route to ``backend``; TypeError naming what a foreign object lacks."""
    if speaks_natively(backend):
        driver = backend
        stages_data = not getattr(backend, 'shared_filesystem', True)
    else:
        driver = LegacyAdapter.for_backend(backend)
        stages_data = True
    return BackendRoute(backend_name(backend), backend, driver,
                        bool(getattr(backend, 'reports_running', False)), stages_data, owned)


class Routes:
    """The backends of one engine by name, the default first."""

    __slots__ = ('all', 'default')

    def __init__(self, routes: Sequence[BackendRoute]) -> None:
        names: List[str] = []
        for route in routes:
            if route.name in names:
                raise UsageValueError(f"two backends are named {route.name!r}: give each a "
                                      f"distinct name= (e.g. ConcurrentExecutionBackend(pool, "
                                      f"name='local'))")
            names.append(route.name)
        self.all = tuple(routes)
        self.default = self.all[0]

    def __iter__(self) -> Iterator[BackendRoute]:
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)

    def of(self, record: Any) -> BackendRoute:
        """The route a record runs on."""
        return record.route or self.default

    def find(self, name: Optional[str]) -> Optional[BackendRoute]:
        """The route called ``name`` (None: not there)."""
        for route in self.all:
            if route.name == name:
                return route
        return None

    def for_prompts(self, route: Optional[BackendRoute], what: str) -> Optional[BackendRoute]:
        """The route of a prompt task: ``route`` if given (it must answer prompts), else
        None when the default backend answers them, else the first backend that does;
        ValueError if none does."""
        if route is not None:
            if not answers_prompts(route.backend):
                raise UsageValueError(f"{what}: backend {route.name!r} "
                                      f"({type(route.backend).__name__}) does not answer "
                                      f"prompts; name one that does")
            return route
        for candidate in self.all:
            if answers_prompts(candidate.backend):
                return None if candidate is self.default else candidate
        raise UsageValueError(f"{what}: no backend of this engine answers prompts "
                              f"({self.describe()}); add one that does (e.g. rhapsody's "
                              f"DragonVllmInferenceBackend, or a backend declaring "
                              f"answers_prompts = True)")

    def named(self, name: Any, what: str) -> BackendRoute:
        """The route called ``name``; ValueError naming the known ones."""
        route = self.find(name)
        if route is None:
            raise UsageValueError(f"{what}: no backend named {name!r} in this engine (it has "
                                  f"{', '.join(repr(r.name) for r in self.all)})")
        return route

    def describe(self) -> str:
        """The backend's class; for several: ``name (Class), ...``."""
        if len(self.all) == 1:
            return type(self.default.backend).__name__
        return ', '.join(f'{r.name} ({type(r.backend).__name__})' for r in self.all)


def backends_given(backend: Any) -> List[Any]:
    """``create(backend=...)`` as a list; ValueError for an empty one, TypeError for a
    foreign object that is no backend."""
    backends = list(backend) if isinstance(backend, (list, tuple)) else [backend]
    if not backends:
        raise UsageValueError('WorkflowEngine.create(backend=[]): give at least one backend')
    for given in backends:
        check_backend(given)
    return backends


async def initialize(backend: Any) -> Any:
    """Run a backend's asynchronous set-up once (ours: ``initialize``; foreign: await it)."""
    init = getattr(backend, 'initialize', None)
    if init is not None and inspect.iscoroutinefunction(init):
        return await init()
    if getattr(backend, '_initialized', True) is False and inspect.isawaitable(backend):
        result = await backend
        return backend if result is None else result
    return backend


async def shutdown_backends(backends: Sequence[Any], log: Any) -> None:
    """Shut every backend down; one that fails does not stop the others."""
    for backend in backends:
        try:
            result = backend.shutdown()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.error('shutting down backend %r failed: %s', backend_name(backend), exc)
