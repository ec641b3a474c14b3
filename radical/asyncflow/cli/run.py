"""``radical-asyncflow-run``: run a workflow driver with a configured backend,
here or as a SLURM/PBS batch job.

``radical-asyncflow-run [options] DRIVER.py [driver args]`` runs the driver
as ``__main__``; its ``WorkflowEngine.create()`` without a backend uses the
backend chosen here.  Settings come from the options, else the environment
(``RADICAL_ASYNCFLOW_*``), else ``--config FILE`` (TOML), else what is
detected: inside a SLURM or PBS allocation the ``radical`` backend with one
pilot filling the allocation (tasks launched with srun / mpiexec), elsewhere
the local ``concurrent`` backend.

``radical-asyncflow-run --submit slurm|pbs --walltime MIN [--nodes N ...]
DRIVER.py`` writes a batch script that runs the driver that way with
``--resume JOURNAL`` in the work directory, and submits it (``--dry-run``:
print it instead).  The batch system signals the driver before the walltime
(SIGUSR1), so it stops in order; submitting the same script again resumes.

Exit status: 0 when every task succeeded; 1 when a task failed, was
cancelled or the driver raised; 2 for bad usage (missing driver, bad
resources or config, unknown backend, a driver that never created an
engine, no sbatch/qsub for --submit, a bad walltime, and bad input the
driver gave radical.asyncflow); 128+N when signal N interrupted the run
(143 SIGTERM, 138 SIGUSR1: the walltime warning): re-run with ``--resume
JOURNAL`` to finish the campaign.  Errors of radical.asyncflow are one line
(``radical-asyncflow-run: error: ...``); ``--debug`` shows their traceback.

The task profile is on for the drivers it runs (``RADICAL_ASYNCFLOW_PROFILE``
or ``RADICAL_PROFILE`` set to false turns it off).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import runpy
import signal
import sys
import threading
import traceback
import time
from typing import List, Optional

from .. import errors
from .. import config
from . import batch
from ..backends import registry
from ..core.context import RunContext, RunSettings
from ..observability.monitor import PROFILE_VARIABLES

EXIT_OK = 0
EXIT_TASKS_FAILED = 1
EXIT_USAGE = 2

PROG = 'radical-asyncflow-run'


class UsageError(errors.UsageError):
    """Bad command-line input; the message says what to fix."""


def _positive_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f'must be a positive number of minutes, not {text!r}')
    return value


def _count(what: str, minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f'must be a whole number >= {minimum} '
                                             f'({what}), not {text!r}')
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``radical-asyncflow-run``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f'{PROG} [options] DRIVER.py [driver args]\n'
              f'       {PROG} --submit slurm|pbs --walltime MIN [--nodes N ...] '
              f'DRIVER.py [driver args]',
        description='Run a radical.asyncflow workflow driver: WorkflowEngine.create() '
                    'without a backend uses the one configured here. Inside a SLURM/PBS '
                    'allocation the default is the radical backend with one pilot filling '
                    'the allocation; elsewhere the local concurrent backend.',
        epilog='Exit status: 0 all tasks succeeded, 1 a task failed or the driver raised, '
               '2 bad usage, 128+N stopped by signal N (138: SIGUSR1, the walltime '
               'warning; re-run with --resume to continue).')
    parser.add_argument('--backend', choices=config.BACKEND_NAMES,
                        help=f'execution backend (default: ${config.ENV_BACKEND}, the config '
                             f'file, else radical inside an allocation, concurrent elsewhere)')
    parser.add_argument('--resources', metavar='JSON|FILE',
                        help='backend resources as a JSON object or a JSON file (radical: '
                             'PilotDescription keys, e.g. \'{"resource": "asyncflow.slurm", '
                             '"cores": 64, "runtime": 60}\')')
    parser.add_argument('--config', metavar='FILE',
                        help=f'TOML file with the same settings (default: '
                             f'${config.ENV_CONFIG}); options and environment take precedence')
    parser.add_argument('--work-dir', metavar='DIR',
                        help='directory the driver runs in (created if missing)')
    parser.add_argument('--resume', metavar='JOURNAL',
                        help='campaign journal (SQLite): tasks it records as done are not '
                             'run again, new completions are added (created if missing)')
    parser.add_argument('--rerun', metavar='PATTERN', action='append',
                        help='with --resume: forget the recorded tasks whose name matches '
                             'PATTERN (a name or a glob; repeatable), and their dependents, '
                             'so they run again')
    parser.add_argument('--stop-after', metavar='SECONDS', type=_count('seconds', 1),
                        help='send the driver SIGUSR1 after SECONDS (once it has an engine): an orderly stop with '
                             'status 138, as a batch system\'s walltime warning does')
    parser.add_argument('--quiet', action='store_true', default=None,
                        help='print no progress and no run summary')
    parser.add_argument('--debug', action='store_true',
                        help='show the full traceback of an error of radical.asyncflow '
                             '(default: one line)')
    sub = parser.add_argument_group('batch jobs (--submit)')
    sub.add_argument('--submit', choices=[s.value for s in batch.BatchSystem],
                     help='write a batch script that runs the driver with --resume in the '
                          'work directory, and submit it with sbatch/qsub; prints the job id')
    sub.add_argument('--dry-run', action='store_true',
                     help='with --submit: print the script (or write it to -o FILE), '
                          'do not submit it')
    sub.add_argument('-o', '--output', metavar='FILE',
                     help='with --submit: write the script to FILE (default: into the work '
                          'directory, as <job name>.sbatch|.pbs)')
    sub.add_argument('--nodes', type=_count('nodes', 1), help='nodes to ask for (default 1)')
    sub.add_argument('--walltime', type=_positive_minutes, metavar='MIN',
                     help='walltime in minutes')
    sub.add_argument('--account', metavar='A', help='account/project to charge')
    sub.add_argument('--queue', metavar='Q', help='queue (PBS) or partition (SLURM)')
    sub.add_argument('--signal-before', type=_count('seconds', 0), metavar='S',
                     help='SIGUSR1 the driver S seconds before the walltime (default: 300, '
                          'at most a quarter of the walltime)')
    sub.add_argument('--gpus-per-node', type=_count('GPUs', 0), metavar='G',
                     help='GPUs per node to ask for')
    sub.add_argument('--job-name', metavar='NAME', help='job name (default: the driver\'s)')
    sub.add_argument('--batch-option', action='append', metavar='OPT', dest='batch_options',
                     help='extra directive, e.g. "--constraint=cpu" (SLURM) or '
                          '"-l filesystems=home" (PBS); repeatable')
    sub.add_argument('--setup', action='append', metavar='CMD',
                     help='shell line run before the driver, e.g. "module load python"; '
                          'repeatable')
    parser.add_argument('driver', metavar='DRIVER.py', help='the workflow driver script')
    parser.add_argument('driver_args', nargs=argparse.REMAINDER,
                        help='arguments passed on to the driver')
    return parser


# ------------------------------------------------------------------ settings

def resolve_settings(args: argparse.Namespace) -> config.Settings:
    """Command line over environment over config file (not yet detection)."""
    cli = config.Settings(backend=args.backend, work_dir=args.work_dir, journal=args.resume,
                          quiet=args.quiet)
    if args.resources is not None:
        cli.resources = config.parse_resources(args.resources, '--resources')
    for key in config.SUBMIT_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            cli.submit[key] = value
    config_file = args.config or os.environ.get(config.ENV_CONFIG, '').strip() or None
    file_settings = config.load_config_file(config_file) if config_file else config.Settings()
    settings = cli.over(config.settings_from_env().over(file_settings))
    if settings.journal:            # relative to where the command was given
        settings.journal = os.path.abspath(settings.journal)
    return settings


def choose_backends(settings: config.Settings,
                    allocation: Optional[batch.Allocation]) -> List[config.BackendConfig]:
    """The backends to run: the settings', else the detected default.

    A radical backend without a ``resource`` inside an allocation gets one
    pilot that fills the allocation (the keys given, e.g. runtime, win).
    """
    if settings.backends and settings.backend is None:
        chosen = settings.backends
    else:
        kind = settings.backend or ('radical' if allocation else 'concurrent')
        try:
            chosen = [config.BackendConfig(kind, dict(settings.resources or {}))]
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    result = []
    for cfg in chosen:
        resources = dict(cfg.resources)
        if cfg.kind == 'radical' and allocation is not None and 'resource' not in resources:
            resources = {**allocation.pilot_resources(), **resources}
        try:
            registry.check_resources(cfg.kind, resources)
        except ValueError as exc:
            raise UsageError(f'backend {cfg.name!r}: {exc}') from None
        result.append(config.BackendConfig(cfg.kind, resources, cfg.name))
    return result


def run_settings(chosen: List[config.BackendConfig], settings: config.Settings) -> RunSettings:
    """What the driver's engines take from this command (see :class:`RunContext`)."""
    return RunSettings(
        backends=[cfg.choice() for cfg in chosen],
        chosen=bool(settings.backend or settings.backends),
        journal=os.path.abspath(settings.journal) if settings.journal else None,
        progress=False if settings.quiet else None,
        # profiled, unless the environment says otherwise
        profile=None if any(os.environ.get(name, '').strip() for name in PROFILE_VARIABLES)
        else True)


def _say(settings: config.Settings, message: str) -> None:
    if not settings.quiet:
        print(f'{PROG}: {message}', file=sys.stderr, flush=True)


# ------------------------------------------------------------------- submit

def submit(args: argparse.Namespace, settings: config.Settings, driver: str) -> int:
    """``--submit``: write the batch script for the driver and submit it; the exit status."""
    opts = settings.submit
    if opts.get('walltime') is None:
        raise UsageError(f'--submit {args.submit} needs --walltime MINUTES (or walltime in '
                         f'the [submit] table of the config file)')
    try:
        job = batch.BatchJob(
            scheduler=batch.BatchSystem(args.submit), driver=driver,
            driver_args=list(args.driver_args), walltime=opts['walltime'],
            nodes=opts.get('nodes', 1), work_dir=settings.work_dir or os.getcwd(),
            journal=settings.journal, account=opts.get('account'), queue=opts.get('queue'),
            signal_before=opts.get('signal_before'),
            gpus_per_node=opts.get('gpus_per_node', 0), job_name=opts.get('job_name'),
            backend=args.backend, resources=args.resources,
            config=args.config, quiet=bool(args.quiet),
            batch_options=opts.get('batch_options') or (),
            setup=opts.get('setup') or (), script_file=args.output)
        if args.dry_run and not args.output:
            sys.stdout.write(job.script())      # nothing written anywhere
            return EXIT_OK
        path = batch.write_script(job)
        if args.dry_run:
            _say(settings, f'wrote {path} (not submitted: --dry-run)')
            return EXIT_OK
        job_id = batch.submit(job, path)
    except batch.BatchError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f'cannot write the batch script into {args.work_dir or os.getcwd()}: '
                         f'{exc.strerror}') from None
    print(job_id, flush=True)
    _say(settings, f'submitted {path} as {args.submit.upper()} job {job_id}; output: '
                   f'{job.output_path.replace("%j", job_id)}; journal: {job.journal}')
    return EXIT_OK


# ---------------------------------------------------------------------- run

def run_driver(path: str, driver_args: List[str], run: RunContext,
               debug: bool = False) -> int:
    """Run the driver as __main__ in ``run``; return its exit status.

    An error radical.asyncflow raised for the driver's bad input is one line
    and exit status 2; a failed workflow (a task's DependencyFailure or
    TaskExecutionError reaching the driver) one line and 1; any other
    exception its traceback and 1.  ``debug``: always the traceback.  A run
    stopped by a shutdown signal ends with 128 + the signal.
    """
    sys.argv = [path, *driver_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        with run.serve():
            runpy.run_path(path, run_name='__main__')
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return EXIT_OK
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return EXIT_TASKS_FAILED
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BaseException as exc:
        if run.signal is not None:      # the driver unwound after a shutdown signal
            return 128 + run.signal
        kind = None if debug else error_kind(exc)
        if kind is None:
            traceback.print_exc()
            return EXIT_TASKS_FAILED
        print(f'{PROG}: error: {one_line(exc, path)}', file=sys.stderr, flush=True)
        return EXIT_USAGE if kind == 'input' else EXIT_TASKS_FAILED
    return EXIT_OK


def error_kind(exc: BaseException) -> Optional[str]:
    """'input' (radical.asyncflow refused what the driver gave it), 'workflow' (a
    failed task's error reached the driver), or None (the driver's own error)."""
    if isinstance(exc, errors.UsageError):
        return 'input'
    if isinstance(exc, errors.AsyncFlowError):
        return 'workflow'
    return None


def one_line(exc: BaseException, driver: str) -> str:
    """``Type: first line of the message (driver.py, line N)``."""
    lines = str(exc).strip().splitlines()
    where = ''
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if os.path.abspath(frame.filename) == os.path.abspath(driver):
            where = f' ({os.path.basename(driver)}, line {frame.lineno})'
            break
    return f'{type(exc).__name__}: {lines[0] if lines else ""}{where}'.rstrip()


def _arm_stop_timer(seconds: int, run: RunContext) -> threading.Thread:
    """SIGUSR1 to this process after ``seconds``, once the driver has an engine.

    Before the first engine exists nothing handles SIGUSR1, and its default
    action would kill the driver without a record (a slow start-up on a
    loaded node takes seconds), so the signal waits for the engine.
    """
    def stop_later() -> None:
        time.sleep(seconds)
        while run.engines_created == 0:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR1)

    thread = threading.Thread(target=stop_later, name='asyncflow-stop-after', daemon=True)
    thread.start()
    return thread


_SUBMIT_FLAGS = {'batch_options': '--batch-option'}


def prepare(args: argparse.Namespace) -> tuple:
    """Check the input and resolve the settings; raise UsageError."""
    driver = os.path.abspath(args.driver)
    if not os.path.isfile(driver):
        raise UsageError(f'driver {args.driver!r} does not exist')
    if (args.dry_run or args.output) and not args.submit:
        raise UsageError(f'{"--dry-run" if args.dry_run else "--output"} goes with '
                         f'--submit slurm|pbs')
    if not args.submit:
        given = [_SUBMIT_FLAGS.get(k, f'--{k.replace("_", "-")}')
                 for k in config.SUBMIT_KEYS if getattr(args, k, None) is not None]
        if given:
            raise UsageError(f'{", ".join(given)} only apply with --submit slurm|pbs')
    try:
        settings = resolve_settings(args)
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    return driver, settings


def _forget_for_rerun(patterns: List[str], settings: config.Settings) -> None:
    """``--rerun``: forget the matching tasks and their dependents before the run."""
    from ..campaign.journal import JournalError
    from .journal import forget, open_journal
    if not settings.journal:
        raise UsageError('--rerun goes with --resume JOURNAL (the journal to forget tasks in)')
    if not os.path.exists(settings.journal):
        return                      # nothing recorded yet: everything runs anyway
    try:
        db = open_journal(settings.journal, write=True)
        try:
            matched, dependents, names = forget(db, patterns)
        finally:
            db.close()
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    if not matched:
        raise UsageError(f'--rerun {" ".join(patterns)!r}: no task recorded in '
                         f'{settings.journal} matches (radical-asyncflow-journal list shows them)')
    _say(settings, f'--rerun: forgot {matched} tasks matching and {dependents} dependents '
                   f'({", ".join(names)}); they run again')


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``radical-asyncflow-run``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        driver, settings = prepare(args)
        if args.submit:
            return submit(args, settings, driver)
        allocation = None
        if settings.backend == 'radical' or (settings.backend is None and (
                not settings.backends or any(b.kind == 'radical' for b in settings.backends))):
            try:
                allocation = batch.detect_allocation(walltime=True)
            except batch.BatchError as exc:
                raise UsageError(f'cannot use this batch allocation: {exc}') from None
        chosen = choose_backends(settings, allocation)
        if settings.work_dir:
            try:
                os.makedirs(settings.work_dir, exist_ok=True)
                os.chdir(settings.work_dir)
            except OSError as exc:
                raise UsageError(f'--work-dir {settings.work_dir!r}: {exc.strerror}') from None
        run = RunContext(settings=run_settings(chosen, settings))
        if allocation is not None and any(cfg.resources.get('resource') ==
                                          allocation.scheduler.rp_resource for cfg in chosen):
            try:
                os.environ.update(allocation.pilot_environment(os.getcwd()))
            except OSError as exc:
                raise UsageError(f'cannot write the pilot\'s node file into '
                                 f'{os.getcwd()}: {exc.strerror}') from None
        if args.rerun:
            _forget_for_rerun(args.rerun, settings)
    except UsageError as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return EXIT_USAGE

    if allocation is not None:
        _say(settings, f'in {allocation.describe()}')
    for cfg in chosen:
        if cfg.kind == 'radical' and \
                str(cfg.resources.get('resource', '')).startswith('asyncflow.'):
            _say(settings, f'backend {cfg.name}: one pilot on {cfg.resources["resource"]} '
                           f'({json.dumps(cfg.resources)})')
    if args.stop_after:
        _arm_stop_timer(args.stop_after, run)
    status = run_driver(driver, args.driver_args, run, args.debug)
    if run.signal is not None:
        status = 128 + run.signal
    if run.engines_created == 0 and status == EXIT_OK:
        print(f'{PROG}: error: {args.driver} never created a WorkflowEngine '
              f'(await WorkflowEngine.create())', file=sys.stderr)
        return EXIT_USAGE
    counts = {state: sum(s['states'].get(state, 0) for s in run.summaries)
              for state in ('DONE', 'FAILED', 'CANCELED')}
    if status == EXIT_OK and (counts['FAILED'] or counts['CANCELED']):
        status = EXIT_TASKS_FAILED
    ran = list(dict.fromkeys(s['backend'] for s in run.summaries)) or \
        [cfg.name for cfg in chosen]
    _say(settings, f'backend {", ".join(ran)}: {counts["DONE"]} done, '
                   f'{counts["FAILED"]} failed, '
                   f'{counts["CANCELED"]} cancelled; exit status {status}')
    journals = [s['journal'] for s in run.summaries if s.get('journal')]
    if journals:                        # what --resume replayed, and why the others ran
        from ..campaign.identity_recorder import summary_line
        causes: collections.Counter = collections.Counter()
        for journal in journals:
            causes.update(journal['causes'])
        _say(settings, summary_line(sum(j['replayed'] for j in journals),
                                    sum(j['ran'] for j in journals), causes))
    for summary in run.summaries:       # one per engine (radical.asyncflow.observability)
        if summary.get('summary_file'):
            plot = (f'; plot: radical-asyncflow-plot {os.path.dirname(summary["summary_file"])}'
                    if summary.get('profile') else '')
            _say(settings, f'run summary: {summary["summary_file"]}{plot}')
    return status


if __name__ == '__main__':
    sys.exit(main())
