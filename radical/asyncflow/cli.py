"""``radical-asyncflow-run``: run a workflow driver with a configured backend.

Exit status: 0 when every task succeeded; 1 when a task failed, was
cancelled or the driver raised; 2 for bad usage (missing driver, bad
resources, a driver that never created an engine); 128+N when signal N
interrupted the run (143 for SIGTERM, 138 for SIGUSR1): re-run with
``--resume JOURNAL`` to finish the campaign.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import traceback
from typing import List, Optional

from . import config
from .run_stats import STATS

EXIT_OK = 0
EXIT_TASKS_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input; the message says what to fix."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='radical-asyncflow-run',
        description='Run a radical.asyncflow workflow driver with a configured backend: '
                    'WorkflowEngine.create() without a backend uses it.')
    parser.add_argument('--backend', choices=config.BACKEND_NAMES,
                        help='execution backend (default: concurrent, or the '
                             f'{config.ENV_BACKEND} environment variable)')
    parser.add_argument('--resources', metavar='JSON|FILE',
                        help='backend resources as a JSON object or a JSON file')
    parser.add_argument('--work-dir', metavar='DIR',
                        help='directory the driver runs in (created if missing)')
    parser.add_argument('--resume', metavar='JOURNAL',
                        help='campaign journal (SQLite): tasks it records as done are not '
                             'run again, new completions are added (created if missing)')
    parser.add_argument('--quiet', action='store_true', help='print no run summary')
    parser.add_argument('driver', help='the workflow driver script (a .py file)')
    parser.add_argument('driver_args', nargs=argparse.REMAINDER,
                        help='arguments passed on to the driver')
    return parser


def load_resources(value: Optional[str]) -> dict:
    """Parse ``--resources``: inline JSON or the path of a JSON file."""
    if not value:
        return {}
    text = value
    if not value.lstrip().startswith('{'):
        if not os.path.isfile(value):
            raise UsageError(f'--resources: {value!r} is neither a JSON object nor a file')
        with open(value, encoding='utf-8') as handle:
            text = handle.read()
    try:
        resources = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f'--resources is not valid JSON: {exc}') from None
    if not isinstance(resources, dict):
        raise UsageError('--resources must be a JSON object, e.g. \'{"max_workers": 8}\'')
    return resources


def configure(args: argparse.Namespace) -> str:
    """Export the backend choice for the driver's WorkflowEngine.create()."""
    backend = args.backend or os.environ.get(config.ENV_BACKEND) or 'concurrent'
    if backend not in config.BACKEND_NAMES:
        raise UsageError(f'unknown backend {backend!r}: choose one of '
                         f'{", ".join(config.BACKEND_NAMES)}')
    os.environ[config.ENV_BACKEND] = backend
    if args.resources is not None:
        os.environ[config.ENV_RESOURCES] = json.dumps(load_resources(args.resources))
    if args.resume:
        os.environ[config.ENV_JOURNAL] = os.path.abspath(args.resume)
    return backend


def run_driver(path: str, driver_args: List[str]) -> int:
    """Run the driver as __main__; return its exit status."""
    sys.argv = [path, *driver_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
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
        return 130
    except BaseException:
        traceback.print_exc()
        return EXIT_TASKS_FAILED
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        driver = os.path.abspath(args.driver)
        if not os.path.isfile(driver):
            raise UsageError(f'driver {args.driver!r} does not exist')
        backend = configure(args)
        if args.work_dir:
            os.makedirs(args.work_dir, exist_ok=True)
            os.chdir(args.work_dir)
    except UsageError as exc:
        print(f'radical-asyncflow-run: error: {exc}', file=sys.stderr)
        return EXIT_USAGE

    status = run_driver(driver, args.driver_args)
    if STATS.engines_created == 0 and status == EXIT_OK:
        print(f'radical-asyncflow-run: error: {args.driver} never created a '
              f'WorkflowEngine (await WorkflowEngine.create())', file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        print(f'radical-asyncflow-run: backend {backend}: {STATS.done} done, '
              f'{STATS.failed} failed, {STATS.canceled} cancelled', file=sys.stderr)
    if status == EXIT_OK and (STATS.failed or STATS.canceled):
        return EXIT_TASKS_FAILED
    return status


if __name__ == '__main__':
    sys.exit(main())
