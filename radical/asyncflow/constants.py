"""Task states shared by the engine and every backend.

Each backend speaks its own state vocabulary (RADICAL-Pilot says ``DONE`` and
``AGENT_EXECUTING``, Dask says ``finished``...).  A :class:`StateMapper` is the
per-backend translation table between those values and the four states the
engine cares about, :class:`TasksMainStates`.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Dict, Tuple, Union
from .errors import UsageValueError


class TasksMainStates(enum.Enum):
    """The states the engine acts on."""

    DONE = 'DONE'
    FAILED = 'FAILED'
    CANCELED = 'CANCELED'
    RUNNING = 'RUNNING'
    #: The other spelling (``future.state`` says CANCELLED).
    CANCELLED = 'CANCELED'


_MAIN_STATE_ARGS = {
    TasksMainStates.DONE: 'done_state',
    TasksMainStates.FAILED: 'failed_state',
    TasksMainStates.CANCELED: 'canceled_state',
    TasksMainStates.RUNNING: 'running_state',
}


def _backend_key(backend: Any) -> str:
    """Registry key for a backend given as a name, a class or an instance."""
    if isinstance(backend, str):
        return backend.lower()
    cls = backend if isinstance(backend, type) else type(backend)
    name = cls.__name__.lower()
    for suffix in ('executionbackend', 'backend'):
        if name.endswith(suffix) and name != suffix:
            return name[: -len(suffix)]
    return name


def _states(done: Any, failed: Any, canceled: Any, running: Any,
            extra: Dict[str, Any]) -> Dict[str, Any]:
    states = {'DONE': done, 'FAILED': failed, 'CANCELED': canceled, 'RUNNING': running}
    states.update({k.upper(): v for k, v in extra.items()})
    return states


class StateMapper:
    """Maps one backend's state values to and from :class:`TasksMainStates`.

    ``StateMapper(backend)`` looks up what ``register_backend_states`` stored
    for that backend (a name, a backend class or instance).  The backend's
    values are attributes: ``mapper.DONE``, ``mapper.FAILED``, and so on.
    """

    _registry: ClassVar[Dict[str, Dict[str, Any]]] = {}

    def __init__(self, backend: Union[str, Any]) -> None:
        key = _backend_key(backend)
        if key not in self._registry:
            raise UsageValueError(
                f"no task states registered for backend {key!r}: call "
                f"StateMapper.register_backend_states({key!r}, done_state=..., "
                f"failed_state=..., canceled_state=..., running_state=...) first")
        self._set_states(key, self._registry[key])

    @classmethod
    def of(cls, backend: Union[str, Any], done_state: Any, failed_state: Any,
           canceled_state: Any, running_state: Any, **extra: Any) -> 'StateMapper':
        """A mapper with these values for ``backend``, without registering them
        (how a backend makes its own mapper: the registry is the programs')."""
        mapper = cls.__new__(cls)
        mapper._set_states(_backend_key(backend),
                           _states(done_state, failed_state, canceled_state, running_state,
                                   extra))
        return mapper

    @classmethod
    def defaults(cls, backend: Union[str, Any]) -> 'StateMapper':
        """A mapper whose values are the main states' own names."""
        return cls.of(backend, **{arg: main.value for main, arg in _MAIN_STATE_ARGS.items()})

    def _set_states(self, key: str, states: Dict[str, Any]) -> None:
        self.backend_name = key
        self._by_name = dict(states)
        # Plain attributes: ``mapper.DONE`` is read on every state report, and
        # a lookup that falls through to __getattr__ costs an exception.
        self.__dict__.update(self._by_name)
        self._to_main = {}
        for main in TasksMainStates:
            self._to_main[self._by_name[main.name]] = main
        self._terminal = (self._by_name['DONE'], self._by_name['FAILED'],
                          self._by_name['CANCELED'])

    @classmethod
    def register_backend_states(cls, backend: Union[str, Any], done_state: Any,
                                failed_state: Any, canceled_state: Any,
                                running_state: Any, **extra: Any) -> None:
        """Register the values ``backend`` uses for the four main states.

        Extra keyword states (``INITIAL='new'``...) become attributes too.
        """
        cls._registry[_backend_key(backend)] = _states(done_state, failed_state,
                                                       canceled_state, running_state, extra)

    @classmethod
    def register_backend_states_with_defaults(cls, backend: Union[str, Any]) -> None:
        """Register the main states' own names as ``backend``'s values."""
        cls.register_backend_states(backend, **{
            arg: main.value for main, arg in _MAIN_STATE_ARGS.items()})

    def __getattr__(self, name: str) -> Any:
        by_name = self.__dict__.get('_by_name', {})
        if name in by_name:
            return by_name[name]
        raise AttributeError(
            f"backend {self.__dict__.get('backend_name')!r} has no state {name!r}")

    @property
    def terminal_states(self) -> Tuple[Any, Any, Any]:
        """The backend's DONE, FAILED and CANCELED values."""
        return self._terminal

    def to_main_state(self, backend_state: Any) -> TasksMainStates:
        """The main state for a backend value (ValueError if unknown)."""
        if isinstance(backend_state, TasksMainStates):
            return backend_state
        try:
            return self._to_main[backend_state]
        except (KeyError, TypeError):
            raise UsageValueError(f"unknown state {backend_state!r} for backend "
                                  f"{self.backend_name!r}") from None

    def get_backend_state(self, main_state: Union[TasksMainStates, str]) -> Any:
        """The backend value for a main state."""
        name = main_state.name if isinstance(main_state, TasksMainStates) else str(main_state).upper()
        return self._by_name[name]

    def __repr__(self) -> str:
        return f'StateMapper({self.backend_name!r}, {self._by_name!r})'
