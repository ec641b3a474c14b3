"""The public :class:`WorkflowEngine`: the engine core with its run record, its
display, its journal and its backends put together.

The engine itself lives in :mod:`radical.asyncflow.core`; this module builds
what it works with (backends given, configured or for a dry run; the run
directory, log and profiler; the run observer of
:mod:`radical.asyncflow.observability`; the campaign recorder of
:mod:`radical.asyncflow.campaign`) and hands it over.  The names programs of
every release import from this module are here too.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, List, Optional, Tuple

from .backends.execution.spec import TaskType
from .campaign.identity_recorder import IdentityRecorder
from .campaign.task_journal import TaskJournal
from .core.context import RunContext, RunSettings
from .core.engine import Engine, running_loop
from .core.process_wide import SHUTDOWN_SIGNALS, uid_counter, warn_once
from .core.records import BLOCK, EXECUTABLE, FUNCTION, PROMPT, TASK, FutureState
from .core.routing import Routes, backends_given, initialize, make_route, shutdown_backends
from .core.scheduler import SUBMIT_BATCH
from .observability.monitor import RunMonitor, make_profiler, profiling_wanted
from .observability.progress import progress_enabled
from .errors import (MissingDependencyError, RunDirectoryExists, UsageStateError,
                     UsageTypeError)

__all__ = ['WorkflowEngine', 'TASK', 'BLOCK', 'FUNCTION', 'EXECUTABLE', 'PROMPT', 'SUBMIT_BATCH',
           'SHUTDOWN_SIGNALS', 'FutureState', 'TaskType', '_get_event_loop_or_raise']


# The 0.1 name of the loop check; tests and old programs patch it here.
_get_event_loop_or_raise = running_loop


class WorkflowEngine(Engine):
    """Runs tasks and blocks on execution backends as their dependencies finish.

    Create it with ``await WorkflowEngine.create(backend)``; decorate ``async
    def`` functions with :attr:`function_task`, :attr:`executable_task` or
    :attr:`block`; call them to get futures; ``await engine.shutdown()`` at
    the end.
    """

    @classmethod
    async def create(cls, backend: Any = None, dry_run: bool = False,
                     implicit_data: bool = True, *, uid: Optional[str] = None,
                     work_dir: Optional[str] = None, journal: Optional[str] = None,
                     progress: Optional[bool] = None,
                     profile: Optional[bool] = None) -> 'WorkflowEngine':
        """Create an engine on ``backend`` and start its scheduler.

        ``backend`` is one backend or a list of them (the first is the
        default; tasks name the others with ``backend='name'``); the engine
        closes them at shutdown unless the program holds one in an ``async
        with`` block or another engine still uses it.  ``backend=None`` means
        the Noop backend with ``dry_run=True``, else the backend(s) chosen
        by ``radical-asyncflow-run``, the environment or the config file
        (:mod:`radical.asyncflow.config`), which the engine builds and
        owns; where nothing chose one, a ``LocalExecutionBackend`` (with a
        one-line warning on stderr, as radical.asyncflow 0.6 does).  ``uid`` names the engine (default: made from the time and the
        process id); ``work_dir`` is where it writes (default: the default
        backend's session directory, else the current directory).
        ``journal`` is the path of a campaign journal (default:
        ``$RADICAL_ASYNCFLOW_JOURNAL``): tasks recorded there as done are not
        run again.  ``progress``: show live progress and print the run
        summary at shutdown (default: unless ``$RADICAL_ASYNCFLOW_PROGRESS``
        is ``0``).  ``profile``: record the task profile (default: as
        ``$RADICAL_ASYNCFLOW_PROFILE`` or ``$RADICAL_PROFILE`` say, else off).
        """
        _get_event_loop_or_raise('WorkflowEngine')
        run = RunContext.current()
        settings = run.settings if run is not None else RunSettings()
        # TypeErrors before anything starts
        progress = progress_enabled(settings.progress if progress is None else progress)
        profile = profiling_wanted(settings.profile if profile is None else profile)
        _check_bool('dry_run', dry_run)
        _check_bool('implicit_data', implicit_data)
        _check_names(uid, work_dir)
        journal = journal or settings.journal or _journal_from_environment()
        opened = TaskJournal(journal) if journal else None    # fails before any backend starts
        built: List[Any] = []
        try:
            backends, owned = await _open_backends(backend, dry_run, settings, built)
            instance = cls(backends, dry_run, implicit_data, uid=uid, work_dir=work_dir,
                           profile=profile, progress=progress, journal=opened, owned=owned)
        except BaseException:
            if opened is not None:
                opened.close()
            await shutdown_backends(built, _StderrLog())
            raise
        await instance._start_async_components()
        if progress:
            print(f'radical.asyncflow: run {instance.uid} in {instance.run_dir}',
                  file=sys.stderr, flush=True)
        return instance

    def __init__(self, backend: Any, dry_run: bool = False, implicit_data: bool = True, *,
                 uid: Optional[str] = None, work_dir: Optional[str] = None,
                 profile: Optional[bool] = None, progress: bool = False,
                 journal: Optional[TaskJournal] = None,
                 owned: Optional[List[bool]] = None) -> None:
        """Private: use :meth:`create`, which also starts the scheduler."""
        loop = _get_event_loop_or_raise('WorkflowEngine')
        _check_bool('dry_run', dry_run)
        _check_bool('implicit_data', implicit_data)
        _check_names(uid, work_dir)
        backends = list(backend) if isinstance(backend, (list, tuple)) else [backend]
        owned = owned or [True] * len(backends)
        routes = Routes([make_route(b, own) for b, own in zip(backends, owned)])
        uid = uid or _engine_uid()
        session = getattr(routes.default.backend, 'session', None)
        if work_dir is not None:
            os.makedirs(work_dir, exist_ok=True)
        work_dir = os.path.abspath(work_dir) if work_dir is not None else \
            getattr(session, 'path', None) or os.getcwd()
        run_dir = make_run_dir(work_dir, uid)

        import radical.utils as ru   # deferred: keeps "import radical.asyncflow" fast
        log = ru.Logger(name='radical.asyncflow', ns='radical.asyncflow', path=run_dir)
        prof = make_profiler(run_dir, profiling_wanted(profile))
        observer = RunMonitor(loop, log, prof, routes.describe(), work_dir, run_dir,
                              progress=progress, keepers=(_write_report,))
        recorder = None
        if journal is not None:
            noop = all(type(r.backend).__name__ == 'NoopExecutionBackend' for r in routes)
            # Code-aware identities (format 2); rows are committed on a writer
            # thread and a task's future settles once its row is durable.
            recorder = IdentityRecorder(journal, loop, log, work_dir,
                                        read_only=dry_run or noop, run=uid)
        super().__init__(routes=routes, dry_run=dry_run, implicit_data=implicit_data, uid=uid,
                         work_dir=work_dir, run_dir=run_dir, log=log, prof=prof,
                         observer=observer, recorder=recorder, run=RunContext.current())


    async def start_telemetry(self, resource_poll_interval: float = 5.0,
                              checkpoint_interval: Optional[float] = None,
                              checkpoint_path: Optional[str] = None,
                              span_processors: Optional[List[Any]] = None,
                              metric_readers: Optional[List[Any]] = None,
                              resource: Any = None) -> Any:
        """Start OpenTelemetry spans, events and metrics for this engine (upstream 0.4-0.6).

        Returns the :class:`~radical.asyncflow.observability.telemetry.TelemetryManager`:
        ``await telemetry.stop()`` ends it (so does ``engine.shutdown()``).
        ``resource_poll_interval``: seconds between CPU/memory readings of the
        node; ``checkpoint_interval``/``checkpoint_path``: the JSONL file's
        period and directory (None: written at stop only / no file);
        ``span_processors``, ``metric_readers``, ``resource``: handed to the
        SDK's providers (an OTLP exporter goes in ``span_processors``).
        """
        if getattr(self, '_telemetry', None) is not None:
            raise UsageStateError(f'{self.uid}: telemetry runs already: stop it before '
                                  f'starting it again')
        if self._shutdown_event.is_set():
            raise UsageStateError(f'{self.uid}: start_telemetry() after shutdown()')
        try:
            from .observability.telemetry import TelemetryManager
        except ImportError as exc:
            raise MissingDependencyError('start_telemetry()', 'opentelemetry-sdk',
                                         'telemetry') from exc

        def detach() -> None:
            self._observer.watch(None)
            self._telemetry = None

        manager = TelemetryManager(
            session_id=self.uid, backend=self._routes.describe(), loop=self.loop, log=self.log,
            detach=detach, resource_poll_interval=resource_poll_interval,
            checkpoint_interval=checkpoint_interval, checkpoint_path=checkpoint_path,
            span_processors=span_processors, metric_readers=metric_readers, resource=resource)
        manager.start()
        self._telemetry = manager
        self._observer.watch(manager)
        return manager


async def _open_backends(backend: Any, dry_run: bool, settings: RunSettings,
                         built: List[Any]) -> Tuple[List[Any], List[bool]]:
    """The initialised backends of a new engine, the default first, and whether the
    engine owns each; those it builds go into ``built`` as they are made."""
    from .backends import registry
    from .backends.execution.noop import NoopExecutionBackend
    if backend is None:
        if dry_run:
            built.append(NoopExecutionBackend())
            return [await initialize(built[0])], [True]
        from .config import chosen_backends
        choices = chosen_backends()
        if not choices:
            # As radical.asyncflow 0.6: run locally, and say so.
            from . import config
            from .backends.execution.local import LocalExecutionBackend
            warn_once(f'radical.asyncflow: warning: WorkflowEngine.create() got no backend and '
                      f'none is configured: running on LocalExecutionBackend (a local thread '
                      f'pool); pass backend=, set {config.ENV_BACKEND}, or use '
                      f'radical-asyncflow-run to choose another')
            built.append(LocalExecutionBackend())
            return [await initialize(built[0])], [True]
        for choice in choices:
            named = {**choice.resources, 'name': choice.name} if len(choices) > 1 \
                else choice.resources
            built.append(registry.build(choice.kind, named))
            await initialize(built[-1])
        return list(built), [True] * len(built)
    backends = backends_given(backend)
    if dry_run:
        for given in backends:
            if not isinstance(given, NoopExecutionBackend):
                raise UsageStateError(f'dry_run=True runs on the Noop backend; leave backend '
                                      f'unset instead of passing {type(given).__name__}')
    if settings.chosen and settings.backends:
        warn_once(f'radical-asyncflow-run: warning: the driver made its own backend, so '
                  f'{", ".join(type(b).__name__ for b in backends)} runs its tasks, not the '
                  f'{", ".join(c.name for c in settings.backends)} backend chosen for it')
    # A backend the program holds in "async with" stays the program's to close.
    owned = [not getattr(given, 'held', False) for given in backends]
    return [await initialize(given) for given in backends], owned


def _write_report(run_dir: str) -> None:
    """``report.html`` into the run directory, next to the summary."""
    from .observability.report import write_report   # deferred: only at the run's end
    write_report(run_dir)


def _journal_from_environment() -> Optional[str]:
    from .config import ENV_JOURNAL
    return os.environ.get(ENV_JOURNAL) or None


class _StderrLog:
    """What shutdown_backends logs to when the engine (and its log) never came to be."""

    @staticmethod
    def error(message: str, *args: Any) -> None:
        print('radical.asyncflow: ' + message % args, file=sys.stderr, flush=True)


def make_run_dir(work_dir: str, uid: str) -> str:
    """``<work_dir>/<uid>``, made for the owner only; an existing one is an error
    (a run never writes into another run's record)."""
    path = os.path.join(work_dir, uid)
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        raise RunDirectoryExists(f'the run directory {path} exists already: give the engine '
                                 f'a new uid= (each run keeps its own record)') from None
    os.chmod(path, 0o700)           # makedirs' mode is filtered by the umask
    return path


def _engine_uid() -> str:
    """A name for an engine unique across runs: ``asyncflow.YYYYMMDD-HHMMSS.<pid>.<n>``."""
    return (f'asyncflow.{time.strftime("%Y%m%d-%H%M%S")}.{os.getpid()}.'
            f'{uid_counter("engine")():04d}')


def _check_names(uid: Any, work_dir: Any) -> None:
    if uid is not None and (not isinstance(uid, str) or not uid or os.sep in uid):
        raise UsageTypeError(f'uid must be a non-empty str without {os.sep!r}, not {uid!r}')
    if work_dir is not None and not isinstance(work_dir, (str, os.PathLike)):
        raise UsageTypeError(f'work_dir must be a path, not {type(work_dir).__name__}')


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise UsageTypeError(f'{name} must be True or False, not {value!r}')
