"""The one registry of backends: name -> how to build one from resources.

``radical-asyncflow-run --backend NAME``, ``RADICAL_ASYNCFLOW_BACKEND``, the
config file and ``WorkflowEngine.create()`` without a backend all build
backends through here.  A backend's module is imported only when one is
built, so naming the registry imports none of them.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Tuple
from ..errors import UsageValueError

#: resources -> a (not yet initialised) backend.
Factory = Callable[[Dict[str, Any]], Any]


@dataclass(frozen=True)
class BackendEntry:
    """One registered backend."""

    name: str
    factory: Factory
    #: What it runs on, for help texts.
    summary: str = ''
    #: The package its pip extra installs, if any.
    extra: Optional[str] = None
    #: The resource keys it takes (None: not checked ahead).
    keys: Optional[Callable[[], Iterable[str]]] = None


_REGISTRY: Dict[str, BackendEntry] = {}


def register(name: str, factory: Factory, summary: str = '', extra: Optional[str] = None,
             keys: Optional[Callable[[], Iterable[str]]] = None) -> None:
    """Make ``name`` buildable (a later registration of the same name replaces it)."""
    _REGISTRY[name] = BackendEntry(name, factory, summary, extra, keys)


def names() -> Tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_REGISTRY)


def entry(name: str) -> BackendEntry:
    """The entry of ``name``; ValueError naming the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageValueError(f"unknown backend {name!r}: choose one of "
                              f"{', '.join(_REGISTRY)}") from None


def check_resources(name: str, resources: Dict[str, Any]) -> None:
    """ValueError naming a resource key backend ``name`` does not take, and the closest
    one it does (before anything is built: a typo must not cost a pilot start)."""
    found = entry(name)
    if found.keys is None:
        return
    try:
        valid = set(found.keys())
    except ImportError:                 # its package is missing: building says so
        return
    for key in resources:
        if key in valid:
            continue
        close = difflib.get_close_matches(key, sorted(valid), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ''
        raise UsageValueError(f"the {name} backend takes no resource '{key}'{hint}; it takes "
                              f"{', '.join(sorted(valid))}")


def build(name: str, resources: Optional[Dict[str, Any]] = None) -> Any:
    """A backend ``name`` made from ``resources`` (await it to initialise it)."""
    return entry(name).factory(dict(resources or {}))


def _cls(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module, __package__), name)


# ------------------------------------------------------------ the builtins

#: Resource keys of the concurrent backend.
CONCURRENT_KEYS = ('max_workers', 'executor', 'name')


def _noop(resources: Dict[str, Any]) -> Any:
    # a dry run of a driver configured for another backend: its resources do not apply
    return _cls('.execution.noop', 'NoopExecutionBackend')(name=resources.get('name'))


def _concurrent(resources: Dict[str, Any]) -> Any:
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
    unknown = sorted(set(resources) - set(CONCURRENT_KEYS))
    if unknown:
        raise UsageValueError(f'unknown concurrent backend resource '
                              f'{", ".join(map(repr, unknown))}: use {", ".join(CONCURRENT_KEYS)}')
    kind = resources.pop('executor', 'thread')
    workers = resources.pop('max_workers', None)
    if kind not in ('thread', 'process'):
        raise UsageValueError(f"concurrent backend executor must be 'thread' or 'process', "
                              f"not {kind!r}")
    pool = (ThreadPoolExecutor if kind == 'thread' else ProcessPoolExecutor)(max_workers=workers)
    return _cls('.execution.concurrent', 'ConcurrentExecutionBackend')(pool, **resources)


def _dask(resources: Dict[str, Any]) -> Any:
    name = resources.pop('name', None)
    return _cls('.execution.dask_parallel', 'DaskExecutionBackend')(resources, name=name)


def _radical(resources: Dict[str, Any]) -> Any:
    raptor = resources.pop('raptor_config', None)
    name = resources.pop('name', None)
    replace = resources.pop('replace_pilots', False)
    pilots = resources.pop('pilots', None) or [resources]   # several: a list of descriptions
    return _cls('.execution.radical_pilot', 'RadicalExecutionBackend')(
        pilots if len(pilots) > 1 else pilots[0], raptor_config=raptor, name=name,
        replace_pilots=replace)


def _dask_keys() -> Iterable[str]:
    return _cls('.execution.dask_parallel', 'resource_keys')()


def _radical_keys() -> Iterable[str]:
    import radical.pilot as rp
    from ..radical_compat import pilot_description_keys
    return {*pilot_description_keys(rp), 'raptor_config', 'name', 'pilots', 'replace_pilots'}


register('concurrent', _concurrent, 'local threads or processes',
         keys=lambda: CONCURRENT_KEYS)
register('dask', _dask, 'a dask.distributed cluster', extra='dask', keys=_dask_keys)
register('radical', _radical, 'RADICAL-Pilot pilots', extra='radical', keys=_radical_keys)
register('noop', _noop, 'nothing: a dry run')
