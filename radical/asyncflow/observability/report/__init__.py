"""``radical-asyncflow-report RUN_DIR``: one HTML page of a run, ``report.html``.

Built from what the run directory holds: the run summary (written however
the run ended), the task profile (``profile=True``), the stderr files of
``capture_stdio=True`` tasks and, for a RADICAL-Pilot run inside RP's
session directory, the pilots' profiles and sandboxes.  The page is one
file that opens offline: no script, no style sheet or font from elsewhere.

It shows the outcome and counts; a timeline of the tasks by node (RP),
workflow or backend, coloured by final state; concurrency (and core
utilisation, when the core count is known) over time; the failed tasks
with their cause and the end of their stderr; the slowest tasks; the
ready-to-running waiting times; retried and replayed tasks; tasks per node
and the pilots' start and end.  A run of 10^5 tasks gives a page of a few
hundred kB: beyond what can be drawn one by one it shows aggregates.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import List, Optional

from .data import RunData, find_run_dir, load
from .page import render

#: The page written into the run directory.
REPORT_FILE = 'report.html'

__all__ = ['REPORT_FILE', 'RunData', 'build_report', 'write_report', 'main']


def build_report(run_dir: str) -> str:
    """The page of the run in ``run_dir`` (or of the latest run in a work_dir)."""
    return render(load(find_run_dir(run_dir)))


def write_report(run_dir: str, out: Optional[str] = None) -> str:
    """Write the page to ``out`` (default ``<run_dir>/report.html``); return its path.

    Written to a temporary file first and renamed: a reader never sees half a page.
    """
    run_dir = find_run_dir(run_dir)
    page = render(load(run_dir))
    path = os.path.abspath(out or os.path.join(run_dir, REPORT_FILE))
    folder = os.path.dirname(path)
    handle, tmp = tempfile.mkstemp(prefix='.report.', suffix='.html', dir=folder)
    try:
        with os.fdopen(handle, 'w', encoding='utf-8') as stream:
            stream.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``radical-asyncflow-report``."""
    parser = argparse.ArgumentParser(
        prog='radical-asyncflow-report',
        description='Write report.html, one self-contained page about a radical.asyncflow '
                    'run, from its run directory.')
    parser.add_argument('run_dir', metavar='RUN_DIR',
                        help='the run directory <work_dir>/<engine uid> (or a work_dir: '
                             'its latest run)')
    parser.add_argument('-o', '--out', metavar='FILE',
                        help=f'write here (default: RUN_DIR/{REPORT_FILE})')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``radical-asyncflow-report``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        path = write_report(args.run_dir, args.out)
    except (OSError, ValueError) as exc:
        print(f'radical-asyncflow-report: error: {exc}', file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
