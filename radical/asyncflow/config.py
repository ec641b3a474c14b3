"""Settings of a run, and the default backend ``WorkflowEngine.create()`` uses.

A setting comes from, highest precedence first: the command line of
``radical-asyncflow-run``, the environment, a TOML config file, and what
``radical-asyncflow-run`` detects (the batch allocation it runs in).

Environment:

* ``RADICAL_ASYNCFLOW_BACKEND``: ``concurrent``, ``dask``, ``radical`` or ``noop``
* ``RADICAL_ASYNCFLOW_RESOURCES``: a JSON object of backend resources
  (``concurrent``: ``max_workers`` and ``executor``, ``thread`` or
  ``process``; ``dask``: LocalCluster/Client keys; ``radical``:
  PilotDescription keys and ``raptor_config``)
* ``RADICAL_ASYNCFLOW_BACKENDS``: several named backends, a JSON list of
  ``{"name": ..., "type": ..., "resources": {...}}`` (the first is the default)
* ``RADICAL_ASYNCFLOW_JOURNAL``: the campaign journal (``--resume``)
* ``RADICAL_ASYNCFLOW_CONFIG``: a TOML config file

Config file (every key optional; relative paths are relative to the file)::

    backend = "radical"
    work_dir = "runs/today"
    resume = "campaign.journal"
    quiet = false

    [resources]              # or: resources = "resources.json"
    resource = "asyncflow.slurm"
    cores = 64
    runtime = 60

Several named backends instead of ``backend``/``resources`` (the first is
the default; tasks pick the others with ``backend='local'``)::

    [backends.sim]
    type = "radical"         # a registry name; default: the table's name
    resource = "local.localhost"
    cores = 4

    [backends.local]
    type = "concurrent"
    max_workers = 4

    [submit]                 # radical-asyncflow-run --submit slurm|pbs
    nodes = 2
    walltime = 120           # minutes
    account = "abc123"
    queue = "debug"
    signal_before = 300      # seconds
    gpus_per_node = 0
    job_name = "campaign"
    batch_options = ["--constraint=cpu"]
    setup = ["module load python"]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from .backends import registry
from .core.context import BackendChoice, RunContext
from .errors import UsageValueError

ENV_BACKEND = 'RADICAL_ASYNCFLOW_BACKEND'
ENV_RESOURCES = 'RADICAL_ASYNCFLOW_RESOURCES'
ENV_CONFIG = 'RADICAL_ASYNCFLOW_CONFIG'
#: The campaign journal of a run (``radical-asyncflow-run --resume``).
ENV_JOURNAL = 'RADICAL_ASYNCFLOW_JOURNAL'

#: The names --backend and RADICAL_ASYNCFLOW_BACKEND take (the backend registry's).
BACKEND_NAMES = registry.names()

#: Keys of a config file's ``[submit]`` table and their types.
SUBMIT_KEYS: Dict[str, type] = {
    'nodes': int, 'walltime': float, 'account': str, 'queue': str, 'signal_before': int,
    'gpus_per_node': int, 'job_name': str, 'batch_options': list, 'setup': list}
_TOP_KEYS = ('backend', 'resources', 'backends', 'work_dir', 'resume', 'quiet', 'submit')
#: A JSON list of named backends, ``[{"name": ..., "type": ..., "resources": {...}}]``.
ENV_BACKENDS = 'RADICAL_ASYNCFLOW_BACKENDS'


class ConfigError(UsageValueError):
    """A setting is malformed; the message names it and says what is expected."""


@dataclass(slots=True)
class Settings:
    """One layer of settings (command line, environment or config file);
    None means "not set here"."""

    backend: Optional[str] = None
    resources: Optional[Dict[str, Any]] = None
    #: Several named backends (the first is the default); ``backend`` is the
    #: one-backend shortcut, and whichever a layer sets hides the other below it.
    backends: Optional[List['BackendConfig']] = None
    work_dir: Optional[str] = None
    journal: Optional[str] = None
    quiet: Optional[bool] = None
    submit: Dict[str, Any] = field(default_factory=dict)

    def over(self, lower: 'Settings') -> 'Settings':
        """These settings, with what is unset here taken from ``lower``."""
        here = self.backend is not None or self.backends is not None
        return Settings(
            backend=self.backend if here else lower.backend,
            backends=self.backends if here else lower.backends,
            resources=self.resources if self.resources is not None else lower.resources,
            work_dir=self.work_dir if self.work_dir is not None else lower.work_dir,
            journal=self.journal if self.journal is not None else lower.journal,
            quiet=self.quiet if self.quiet is not None else lower.quiet,
            submit={**lower.submit, **self.submit})


def check_backend(name: str, source: str = '') -> str:
    """The backend name, normalised; ConfigError naming ``source`` if it is unknown."""
    name = name.strip().lower()
    if name not in BACKEND_NAMES:
        where = f' (from {source})' if source else ''
        raise ConfigError(f"unknown backend {name!r}{where}: choose one of "
                          f"{', '.join(BACKEND_NAMES)}")
    return name


def parse_resources(value: Any, what: str, base_dir: Optional[str] = None) -> Dict[str, Any]:
    """Resources given as a dict, a JSON object, or the path of a JSON file."""
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str):
        raise ConfigError(f'{what} must be a JSON object or a JSON file, '
                          f'not {type(value).__name__}')
    text = value
    if not value.lstrip().startswith('{'):
        path = os.path.join(base_dir or '', os.path.expanduser(value))
        if not os.path.isfile(path):
            raise ConfigError(f'{what}: {value!r} is neither a JSON object nor a file')
        try:
            with open(path, encoding='utf-8') as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(f'{what}: cannot read {path}: {exc.strerror}') from None
    return _json_object(text, what)


def _json_object(text: str, what: str) -> Dict[str, Any]:
    """``text`` parsed as a JSON object; errors name ``what`` it came from."""
    try:
        resources = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f'{what} is not valid JSON: {exc}') from None
    if not isinstance(resources, dict):
        raise ConfigError(f'{what} must be a JSON object, e.g. \'{{"max_workers": 8}}\', '
                          f'not {type(resources).__name__}')
    return resources


def settings_from_env(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """The settings given by ``RADICAL_ASYNCFLOW_*`` environment variables."""
    env = os.environ if environ is None else environ
    settings = Settings()
    if env.get(ENV_BACKEND, '').strip():
        settings.backend = check_backend(env[ENV_BACKEND], ENV_BACKEND)
    if env.get(ENV_RESOURCES, '').strip():
        settings.resources = _json_object(env[ENV_RESOURCES].strip(), ENV_RESOURCES)
    if env.get(ENV_JOURNAL, '').strip():
        settings.journal = env[ENV_JOURNAL].strip()
    if env.get(ENV_BACKENDS, '').strip():
        settings.backends = _backends_from_json(env[ENV_BACKENDS], ENV_BACKENDS)
    return settings


def _backends_from_json(text: str, what: str) -> List['BackendConfig']:
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f'{what} is not valid JSON: {exc}') from None
    if not isinstance(entries, list) or not entries or \
            not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f'{what} must be a non-empty JSON list of objects '
                          f'{{"name": ..., "type": ..., "resources": {{...}}}}')
    return [_backend_entry(e.get('name'), e.get('type'), e.get('resources') or {}, what)
            for e in entries]


def _backend_entry(name: Any, kind: Any, resources: Any, where: str) -> 'BackendConfig':
    if not isinstance(name, str) or not name:
        raise ConfigError(f'{where}: every backend needs a name, not {name!r}')
    if not isinstance(kind, str):
        raise ConfigError(f"{where}: backend {name!r} needs a type, one of "
                          f"{', '.join(BACKEND_NAMES)}")
    if not isinstance(resources, dict):
        raise ConfigError(f'{where}: the resources of backend {name!r} must be a table')
    return BackendConfig(check_backend(kind, f'{where}: backend {name!r}'), dict(resources),
                         name)


def load_config_file(path: str) -> Settings:
    """The settings of a TOML config file (see the module docstring)."""
    import tomllib
    try:
        with open(path, 'rb') as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f'config file {path!r} does not exist') from None
    except OSError as exc:
        raise ConfigError(f'cannot read config file {path!r}: {exc.strerror}') from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f'config file {path!r} is not valid TOML: {exc}') from None
    base = os.path.dirname(os.path.abspath(path))
    where = f'config file {path}'
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(f'{where}: unknown setting {", ".join(map(repr, unknown))} '
                          f'(known: {", ".join(_TOP_KEYS)})')
    settings = Settings()
    if 'backend' in data:
        settings.backend = check_backend(_typed(data, 'backend', str, where), where)
    if 'resources' in data:
        settings.resources = parse_resources(data['resources'], f'{where}: resources', base)
    if 'backends' in data:
        if 'backend' in data or 'resources' in data:
            raise ConfigError(f'{where}: give either backend (and resources) or [backends.NAME] '
                              f'tables, not both')
        settings.backends = _backend_tables(data['backends'], where)
    if 'work_dir' in data:
        settings.work_dir = os.path.join(base, _typed(data, 'work_dir', str, where))
    if 'resume' in data:
        settings.journal = os.path.join(base, _typed(data, 'resume', str, where))
    if 'quiet' in data:
        settings.quiet = _typed(data, 'quiet', bool, where)
    submit = data.get('submit', {})
    if not isinstance(submit, dict):
        raise ConfigError(f'{where}: submit must be a table ([submit])')
    unknown = sorted(set(submit) - set(SUBMIT_KEYS))
    if unknown:
        raise ConfigError(f'{where}: unknown [submit] setting {", ".join(map(repr, unknown))} '
                          f'(known: {", ".join(SUBMIT_KEYS)})')
    for key, kind in SUBMIT_KEYS.items():
        if key in submit:
            settings.submit[key] = _typed(submit, key, kind, f'{where}: [submit]')
    return settings


def _backend_tables(tables: Any, where: str) -> List['BackendConfig']:
    """``[backends.NAME]`` tables: ``type = "radical"`` (default: NAME) and the resources."""
    if not isinstance(tables, dict) or not tables or \
            not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f'{where}: backends must be tables [backends.NAME] with a type and '
                          f'the backend\'s resources, e.g. [backends.sim] type = "radical"')
    entries = []
    for name, table in tables.items():      # in the file's order: the first is the default
        resources = {k: v for k, v in table.items() if k != 'type'}
        entries.append(_backend_entry(name, table.get('type', name), resources, where))
    return entries


def _typed(table: Dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)) \
            or kind is list:
        expected = 'a list of strings' if kind is list else f'a {kind.__name__}'
        raise ConfigError(f'{where}: {key} must be {expected}, not {value!r}')
    return value


# ------------------------------------------------------------ configured backend

@dataclass
class BackendConfig:
    """Which backend to build (``kind``: a registry name), with which resources,
    and the name tasks route to it by (default: ``kind``)."""

    kind: str
    resources: Dict[str, Any] = field(default_factory=dict)
    name: str = ''

    def __post_init__(self) -> None:
        if self.kind not in BACKEND_NAMES:
            raise UsageValueError(f"unknown backend {self.kind!r}: choose one of "
                                  f"{', '.join(BACKEND_NAMES)}")
        if not isinstance(self.resources, dict):
            raise UsageValueError(f'backend resources must be a JSON object, '
                                  f'not {type(self.resources).__name__}')
        self.name = self.name or self.kind

    def as_json(self) -> Dict[str, Any]:
        """The entry of this backend in ``RADICAL_ASYNCFLOW_BACKENDS``."""
        return {'name': self.name, 'type': self.kind, 'resources': self.resources}

    def choice(self) -> BackendChoice:
        """The backend to build, as the engine takes it."""
        return BackendChoice(self.kind, dict(self.resources), self.name)


def chosen_backends() -> Optional[List[BackendChoice]]:
    """The backends ``WorkflowEngine.create()`` without a backend builds here: those
    ``radical-asyncflow-run`` chose for this run, else those the environment or the
    config file it names choose; None where nothing chose any.

    A driver that makes its own backend unless one was chosen for it asks this.
    """
    run = RunContext.current()
    if run is not None and run.settings.backends is not None:
        return list(run.settings.backends)
    configured = configured_backends()
    return [cfg.choice() for cfg in configured] if configured else None


def configured_backends(environ: Optional[Mapping[str, str]] = None
                        ) -> Optional[List[BackendConfig]]:
    """The backends named by the environment or the config file it names, or None."""
    env = os.environ if environ is None else environ
    settings = settings_from_env(env)
    if env.get(ENV_CONFIG, '').strip():
        settings = settings.over(load_config_file(env[ENV_CONFIG].strip()))
    if settings.backends:
        return settings.backends
    if settings.backend is None:
        return None
    return [BackendConfig(settings.backend, settings.resources or {})]


__all__: List[str] = [
    'ENV_BACKEND', 'ENV_RESOURCES', 'ENV_BACKENDS', 'ENV_JOURNAL', 'ENV_CONFIG',
    'BACKEND_NAMES', 'Settings', 'ConfigError', 'BackendConfig', 'configured_backends',
    'chosen_backends',
    'load_config_file',
    'settings_from_env', 'parse_resources']
