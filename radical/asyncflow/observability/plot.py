"""``radical-asyncflow-plot SESSION_DIR``: timeline and concurrency plots of a run.

Reads the task profile the engine wrote into its work_dir
(``radical.asyncflow.prof``, see :mod:`radical.asyncflow.monitor`) and
writes two PNG files next to it (or into ``--out``):

- ``asyncflow_timeline.png``: one bar per task, from the moment the backend
  ran it (RUNNING, else SUBMITTED) to its end, on rows ("slots") assigned
  greedily so that bars on a row never overlap: the number of rows is the
  concurrency the run reached.  Tasks of workflows (``workflow_id=``,
  ``engine.workflow_scope()``) get a lane of rows per workflow, labelled;
- ``asyncflow_concurrency.png``: tasks in the backend and tasks running over
  time, with the finished tasks as a cumulative count;
- ``asyncflow_nodes.png`` (when the backend said where tasks ran, as
  RADICAL-Pilot does): tasks per node.

Each engine writes into a run directory of its own (``<work_dir>/<engine
uid>/``); given a work directory, the latest run in it is plotted.  A profile
of an older release may hold several runs; the last is plotted unless
``--run`` picks another.
matplotlib is needed: ``pip install 'radical.asyncflow[plot]'``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .monitor import PROFILE_FILE, STATE_EVENT, SUMMARY_FILE, WORKFLOW_MARK
from ..errors import InputFileError, UsageValueError

TIMELINE_FILE = 'asyncflow_timeline.png'
CONCURRENCY_FILE = 'asyncflow_concurrency.png'
NODES_FILE = 'asyncflow_nodes.png'
FINAL_STATES = ('DONE', 'FAILED', 'CANCELED')
COLORS = {'DONE': '#2e7d32', 'FAILED': '#c62828', 'CANCELED': '#9e9e9e'}


@dataclass
class TaskInterval:
    """One task's time in the backend (seconds since the run's first event)."""

    uid: str
    start: float
    end: float
    outcome: str
    slot: int = -1
    workflow: Optional[str] = None


@dataclass
class Run:
    """The per-task state times of one engine run, read from a profile."""

    t0: float = 0.0
    states: Dict[str, Dict[str, float]] = field(default_factory=dict)   # uid -> state -> time
    last: float = 0.0
    workflows: Dict[str, str] = field(default_factory=dict)            # uid -> workflow id
    nodes: Dict[str, List[str]] = field(default_factory=dict)          # uid -> node names


def find_profile(path: str) -> str:
    """The profile of a run directory, or of the latest run in a work directory
    (or ``path`` itself if it is a file)."""
    if os.path.isfile(path):
        return path
    candidate = os.path.join(path, PROFILE_FILE)
    if os.path.isfile(candidate):
        return candidate
    runs = [os.path.join(path, name, PROFILE_FILE) for name in _listdir(path)]
    runs = [run for run in runs if os.path.isfile(run)]
    if runs:
        return max(runs, key=os.path.getmtime)
    summary = os.path.join(path, SUMMARY_FILE)
    hint = (' (its summary says profiling was off: run with profile=True, '
            'RADICAL_PROFILE=True or under radical-asyncflow-run)'
            if os.path.isfile(summary) else
            ': give the run directory <work_dir>/<engine uid>, or its work directory')
    raise InputFileError(f'no {PROFILE_FILE} in {path!r}{hint}')


def _listdir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def read_runs(profile: str) -> List[Run]:
    """Every engine run in a profile file, in order; a run starts at ``engine_start``."""
    runs: List[Run] = []
    current: Optional[Run] = None
    with open(profile, encoding='utf-8', errors='replace') as handle:
        for line in handle:
            if line.startswith('#'):
                continue
            parts = line.split(',', 6)
            if len(parts) < 6:
                continue
            event = parts[1]
            if event == STATE_EVENT:
                if current is None:
                    current = Run()
                    runs.append(current)
                try:
                    ts = float(parts[0])
                except ValueError:
                    continue
                states = current.states.get(parts[4])
                if states is None:
                    states = current.states[parts[4]] = {}
                states[parts[5]] = ts
                if ts > current.last:
                    current.last = ts
                if parts[5] == 'WAITING' and len(parts) > 6 and WORKFLOW_MARK in parts[6]:
                    current.workflows[parts[4]] = \
                        parts[6].split(WORKFLOW_MARK, 1)[1].strip()
                elif parts[5] in ('RUNNING', 'PLACED') and len(parts) > 6 and parts[6].strip():
                    current.nodes[parts[4]] = parts[6].strip().split(';')
            elif event == 'engine_start':
                current = Run()
                runs.append(current)
    runs = [run for run in runs if run.states]
    for run in runs:
        run.t0 = min(min(states.values()) for states in run.states.values())
    return runs


def intervals(run: Run) -> List[TaskInterval]:
    """The tasks that reached the backend, as intervals relative to the run's start."""
    out = []
    t0 = run.t0
    for uid, states in run.states.items():
        if not uid.startswith('task.'):
            continue
        start = states.get('RUNNING', states.get('SUBMITTED'))
        if start is None:
            continue            # never reached the backend (e.g. a dependency failed)
        outcome, end = 'UNFINISHED', run.last
        for state in FINAL_STATES:
            if state in states:
                outcome, end = state, states[state]
                break
        out.append(TaskInterval(uid, start - t0, max(end, start) - t0, outcome,
                                workflow=run.workflows.get(uid)))
    return out


def tasks_per_node(run: Run) -> Dict[str, int]:
    """How many tasks ran on each node (a task on several nodes counts on each)."""
    counts: Dict[str, int] = {}
    for nodes in run.nodes.values():
        for node in nodes:
            counts[node] = counts.get(node, 0) + 1
    return dict(sorted(counts.items()))


def assign_lanes(tasks: Sequence[TaskInterval]) -> Tuple[int, List[Tuple[str, int, int]]]:
    """Rows per workflow, stacked: ``(rows, [(workflow, first row, rows), ...])``.

    Tasks outside any workflow share one lane (labelled ``-``); without
    workflows this is :func:`assign_slots`, with one lane.
    """
    groups: Dict[Optional[str], List[TaskInterval]] = {}
    for task in tasks:
        groups.setdefault(task.workflow, []).append(task)
    if set(groups) <= {None}:
        return assign_slots(tasks), []
    lanes, first = [], 0
    for workflow in sorted(groups, key=lambda w: (w is None, w or '')):
        members = groups[workflow]
        used = assign_slots(members)
        for task in members:
            task.slot += first
        lanes.append((workflow or '-', first, used))
        first += used
    return first, lanes


def assign_slots(tasks: Sequence[TaskInterval]) -> int:
    """Give each interval the lowest free row; return the number of rows used."""
    busy: List[Tuple[float, int]] = []      # (end, slot) of bars still open
    free: List[int] = []
    rows = 0
    for task in sorted(tasks, key=lambda t: (t.start, t.end)):
        while busy and busy[0][0] <= task.start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            task.slot = heapq.heappop(free)
        else:
            task.slot = rows
            rows += 1
        heapq.heappush(busy, (task.end, task.slot))
    return rows


def concurrency(tasks: Sequence[TaskInterval], run: Run) -> Tuple[list, list, list, list]:
    """Step series (times, in-backend counts, running counts, finished counts)."""
    changes: List[Tuple[float, int, int, int]] = []
    t0 = run.t0
    for uid, states in run.states.items():
        if not uid.startswith('task.'):
            continue
        submitted = states.get('SUBMITTED')
        running = states.get('RUNNING')
        end = next((states[s] for s in FINAL_STATES if s in states), None)
        if submitted is not None:
            changes.append((submitted - t0, 1, 0, 0))
            if end is not None:
                changes.append((end - t0, -1, 0, 0))
        if running is not None:
            changes.append((running - t0, 0, 1, 0))
            if end is not None:
                changes.append((end - t0, 0, -1, 0))
        if end is not None:
            changes.append((end - t0, 0, 0, 1))
    changes.sort(key=lambda c: c[0])
    times, active, running_n, finished = [0.0], [0], [0], [0]
    a = r = f = 0
    for when, da, dr, df in changes:
        a += da
        r += dr
        f += df
        if when == times[-1]:
            active[-1], running_n[-1], finished[-1] = a, r, f
        else:
            times.append(when)
            active.append(a)
            running_n.append(r)
            finished.append(f)
    return times, active, running_n, finished


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("radical-asyncflow-plot needs matplotlib: "
                         "pip install 'radical.asyncflow[plot]'") from None
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_timeline(tasks: Sequence[TaskInterval], rows: int, path: str, title: str,
                  dpi: int = 100, lanes: Sequence[Tuple[str, int, int]] = ()) -> str:
    """Write the task timeline PNG; return its path."""
    plt = _pyplot()
    import numpy as np
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    height = min(max(4.0, 2.0 + rows * 0.12), 12.0)
    fig, ax = plt.subplots(figsize=(11, height))
    if tasks:
        start = np.fromiter((t.start for t in tasks), float, len(tasks))
        end = np.fromiter((t.end for t in tasks), float, len(tasks))
        slot = np.fromiter((t.slot for t in tasks), float, len(tasks))
        span = max(float(end.max()), 1e-6)
        end = np.maximum(end, start + span * 1e-4)     # instant tasks stay visible
        low, high = slot + 0.1, slot + 0.9
        verts = np.stack([np.stack([start, low], 1), np.stack([end, low], 1),
                          np.stack([end, high], 1), np.stack([start, high], 1)], 1)
        colors = [COLORS.get(t.outcome, '#1565c0') for t in tasks]
        ax.add_collection(PolyCollection(verts, facecolors=colors, edgecolors='none'))
        ax.set_xlim(0, span * 1.02)
        ax.set_ylim(0, max(rows, 1))
        present = sorted({t.outcome for t in tasks})
        ax.legend(handles=[Patch(color=COLORS.get(o, '#1565c0'), label=o.lower())
                           for o in present], loc='upper right', fontsize=8)
    ax.set_xlabel('seconds since the first task was created')
    ax.set_ylabel(f'slot ({rows} used: the concurrency reached)')
    if lanes:                     # one lane of rows per workflow, labelled
        for _, first, used in lanes[1:]:
            ax.axhline(first, color='#616161', linewidth=0.8)
        ax.set_yticks([first + used / 2 for _, first, used in lanes])
        ax.set_yticklabels([name for name, _, _ in lanes], fontsize=8)
        ax.set_ylabel(f'workflow ({rows} slots)')
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis='x', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_concurrency(series: Tuple[list, list, list, list], path: str, title: str,
                     dpi: int = 100) -> str:
    """Write the concurrency-over-time PNG; return its path."""
    plt = _pyplot()
    times, active, running, finished = series
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.step(times, active, where='post', color='#1565c0', label='in the backend (submitted + running)')
    if any(running):
        ax.step(times, running, where='post', color='#ef6c00', label='running')
    ax.set_xlabel('seconds since the first task was created')
    ax.set_ylabel('tasks at once')
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    done_ax = ax.twinx()
    done_ax.plot(times, finished, color='#2e7d32', alpha=0.6, label='finished (cumulative)')
    done_ax.set_ylabel('tasks finished')
    done_ax.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = done_ax.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc='upper left', fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_nodes(per_node: Dict[str, int], path: str, title: str, dpi: int = 100) -> str:
    """Write the tasks-per-node bar chart PNG; return its path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(max(4.0, 1.0 + 0.4 * len(per_node)), 16.0), 4.0))
    ax.bar(list(per_node), list(per_node.values()), color='#1565c0')
    ax.set_xlabel('node')
    ax.set_ylabel('tasks')
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis='x', labelsize=8, rotation=45 if len(per_node) > 8 else 0)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_session(session: str, out_dir: Optional[str] = None, run_index: int = -1,
                 dpi: int = 100) -> Dict[str, str]:
    """Plot one run of a session directory; return ``{'timeline': path, 'concurrency': path}``."""
    profile = find_profile(session)
    runs = read_runs(profile)
    if not runs:
        raise UsageValueError(f'{profile} holds no task events: was profiling off?')
    try:
        run = runs[run_index]
    except IndexError:
        raise UsageValueError(f'{profile} holds {len(runs)} runs; --run {run_index} is not one') from None
    tasks = intervals(run)
    rows, lanes = assign_lanes(tasks)
    out_dir = out_dir or os.path.dirname(os.path.abspath(profile))
    os.makedirs(out_dir, exist_ok=True)
    label = _title(os.path.dirname(os.path.abspath(profile)), len(tasks), rows)
    written = {
        'timeline': plot_timeline(tasks, rows, os.path.join(out_dir, TIMELINE_FILE),
                                  f'task timeline: {label}', dpi, lanes),
        'concurrency': plot_concurrency(concurrency(tasks, run),
                                        os.path.join(out_dir, CONCURRENCY_FILE),
                                        f'concurrency: {label}', dpi),
    }
    per_node = tasks_per_node(run)
    if per_node:
        written['nodes'] = plot_nodes(per_node, os.path.join(out_dir, NODES_FILE),
                                      f'tasks per node: {label}', dpi)
    return written


def _title(session_dir: str, n_tasks: int, rows: int) -> str:
    backend = ''
    try:
        with open(os.path.join(session_dir, SUMMARY_FILE), encoding='utf-8') as handle:
            backend = f", {json.load(handle).get('backend', '')}"
    except (OSError, ValueError):
        pass
    return f'{n_tasks} tasks on {rows} slots{backend} ({session_dir})'


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``radical-asyncflow-plot``."""
    parser = argparse.ArgumentParser(
        prog='radical-asyncflow-plot',
        description='Plot the task timeline and the concurrency of a radical.asyncflow run '
                    f'from the {PROFILE_FILE} in its session (work) directory.')
    parser.add_argument('session', metavar='SESSION_DIR',
                        help=f'the engine\'s work_dir (or a {PROFILE_FILE} file)')
    parser.add_argument('--out', metavar='DIR', help='write the PNG files here '
                        '(default: next to the profile)')
    parser.add_argument('--run', type=int, default=-1, metavar='N',
                        help='which run of the profile to plot: 0 the first, -1 the last (default)')
    parser.add_argument('--dpi', type=int, default=100, help='resolution (default 100)')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``radical-asyncflow-plot``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        written = plot_session(args.session, args.out, args.run, args.dpi)
    except (OSError, ValueError) as exc:
        print(f'radical-asyncflow-plot: error: {exc}', file=sys.stderr)
        return 2
    for path in written.values():
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
