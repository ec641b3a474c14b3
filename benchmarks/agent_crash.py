"""Does RADICAL-Pilot's agent_executing component die under a burst of short tasks?

Issue 25: with ~1,024 concurrent workflows of nested blocks (~8,900 short
executable and function tasks) on one local pilot, RP 1.103.2's executing
component aborted ("double free or corruption (out)" in
``agent_executing.0000.err``) and the run hung with the pilot still ACTIVE.
This program runs that shape of workload and reports, per run, whether the
component died, when (seconds into the run, tasks done), and what its
``.err`` holds.

The workload (``--workflows`` W, ``--stages`` S, ``--replicas`` R)::

    workflow(w)                         W blocks, all at once
      └─ stage x S, one after the other
           └─ replica x R, concurrently
                └─ simulate (executable: echo) ──> analyse (function task)
      └─ summary (function task) of the last stage

so W * (S * R * 2 + 1) tasks; the defaults (1024, 2, 2) make 9,216.

``--mode engine`` runs it through WorkflowEngine + RadicalExecutionBackend;
``--mode raw`` submits the same tasks in the same order to the backend's
TaskManager directly (no engine: state callbacks drive the DAG), with a
function task as an executable running the client's Python.

A run ends when every workflow is done, when the executing component is dead
and no task finished for ``--stall`` seconds, or after ``--max-seconds``.
Each run is a fresh interpreter; ``--runs N`` repeats and summarises.

    python benchmarks/agent_crash.py --quick                 # one small run, ~1 min
    python benchmarks/agent_crash.py --runs 4 --json a.json  # the issue's shape
    python benchmarks/agent_crash.py --mode raw --runs 2
    python benchmarks/agent_crash.py --publish lock --runs 4  # with the fix
    python benchmarks/agent_crash.py --publish probe --quick  # count concurrent sends

``--publish lock`` starts the pilot with :mod:`...radical_pilot.agent_fix`
(ZeroMQ publishers of the agent's components serialised by a lock);
``--publish probe`` counts, without a lock, how often two threads of one
process are inside ``Publisher.put`` of one publisher at once.
PYTHONFAULTHANDLER=1 is set for the pilot (``--no-faulthandler``: not), so
an aborting component writes every thread's Python stack to its ``.err``.

The race is rare at a few tasks per second; ``--stress`` amplifies it (one
more thread in agent_executing publishes empty state updates every
``--stress-ms``; ``--stress-threads 2`` also race each other), and
``--subreaper`` reads how the component ended (a SIGSEGV in libzmq's I/O
thread leaves its ``.err`` empty)::

    python benchmarks/agent_crash.py --workflows 128 --max-seconds 240 \
        --stress --stress-ms 1 --stress-threads 2 --subreaper --publish none
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

#: The component whose death issue 25 is about.
COMPONENT = 'agent_executing.0000'


# ------------------------------------------------------------ the component

def component_pid(sandbox: str, name: str = COMPONENT) -> Optional[int]:
    """The PID of the pilot's component ``name`` (RP sets its title to ``rp.<name>``
    and starts it in the pilot sandbox), or None if no such process runs."""
    sandbox = os.path.realpath(sandbox)
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as f:
                cmdline = f.read().split(b'\0')[0].decode(errors='replace').strip()
            if cmdline != f'rp.{name}':
                continue
            if os.path.realpath(os.readlink(f'/proc/{entry}/cwd')) == sandbox:
                return int(entry)
        except OSError:
            continue
    return None


def last_prof_stamp(path: str) -> Optional[float]:
    """The time stamp of the last event in a ``.prof`` file (None: none)."""
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode(errors='replace').strip().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return float(line.split(',', 1)[0])
        except ValueError:
            continue
    return None


def read_tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, errors='replace') as f:
            return f.read()[-limit:]
    except OSError:
        return ''


def overlaps(sandbox: str, executing_pid: Optional[int]) -> Dict[str, Any]:
    """What ``--publish probe`` saw: concurrent ``Publisher.put`` per process, and
    the executing component's by channel and pair of threads."""
    per_pid: Dict[str, int] = {}
    executing: Dict[str, int] = {}
    try:
        names = [n for n in os.listdir(sandbox) if n.startswith('asyncflow_publish_overlap.')]
    except OSError:
        names = []
    for name in names:
        pid = name.split('.')[1]
        with open(os.path.join(sandbox, name), errors='replace') as f:
            lines = [line.split() for line in f if line.strip()]
        per_pid[pid] = max(int(parts[1]) for parts in lines) if lines else 0
        if executing_pid is not None and pid == str(executing_pid):
            for parts in lines:
                key = ' '.join(parts[2:])       # channel, thread 'with' threads
                executing[key] = executing.get(key, 0) + 1
    return {'per_pid': per_pid, 'executing_first_200': executing}


class Watch:
    """Polls the component and the run's progress once a second (a thread)."""

    def __init__(self, sandbox: str, start: float, done: List[int], total: int,
                 log_every: float) -> None:
        self.sandbox = sandbox
        self.start = start
        self.done = done
        self.total = total
        self.log_every = log_every
        self.pid: Optional[int] = None
        self.died_at: Optional[float] = None          # seconds into the run
        self.done_at_death: Optional[int] = None
        self.last_progress = time.monotonic()
        self.loads: List[float] = []
        self.exit_status: Optional[str] = None      # with --subreaper: how it ended
        self.reap = False
        self._last_done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name='crash-watch')

    def begin(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        last_log = 0.0
        while not self._stop.wait(1.0):
            now = time.monotonic()
            if self.done[0] != self._last_done:
                self._last_done = self.done[0]
                self.last_progress = now
            self.loads.append(os.getloadavg()[0])
            if self.reap and self.pid is not None and self.exit_status is None:
                self._try_reap()
            alive = self.pid is not None and os.path.exists(f'/proc/{self.pid}')
            if self.pid is None:
                self.pid = component_pid(self.sandbox)
            elif not alive or _is_zombie(self.pid):
                if self.died_at is None:
                    self.died_at = now - self.start
                    self.done_at_death = self.done[0]
                    print(f'  !! {COMPONENT} (pid {self.pid}) gone at {self.died_at:.0f} s, '
                          f'{self.done_at_death} tasks done', flush=True)
            if now - last_log >= self.log_every:
                last_log = now
                print(f'  {now - self.start:6.0f} s  {self.done[0]:6d}/{self.total} done  '
                      f'load {os.getloadavg()[0]:5.2f}  executing '
                      f'{"dead" if self.died_at is not None else self.pid}', flush=True)


    def _try_reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:       # not ours (yet): RP's double fork reparents it
            return
        if pid:
            self.exit_status = (f'killed by signal {os.WTERMSIG(status)} '
                                f'({signal.Signals(os.WTERMSIG(status)).name})'
                                if os.WIFSIGNALED(status) else
                                f'exited with {os.WEXITSTATUS(status)}')
            print(f'  !! {COMPONENT} {self.exit_status}', flush=True)


def become_subreaper() -> bool:
    """Make orphaned descendants (RP daemonizes its components) children of this
    process, so that the executing component's exit status can be read (Linux)."""
    import ctypes
    try:
        # 36 = PR_SET_CHILD_SUBREAPER
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _is_zombie(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except OSError:
        return True


# ------------------------------------------------------------ the workloads

async def run_engine(backend: Any, args: argparse.Namespace, done: List[int]) -> None:
    from radical.asyncflow import WorkflowEngine
    engine = await WorkflowEngine.create(backend=backend, progress=False)

    @engine.executable_task
    async def simulate(w, s, r):
        return f'echo {w}.{s}.{r}'

    @engine.function_task
    async def analyse(out, w, s, r):
        return len(out) + w

    @engine.function_task
    async def summary(values, w):
        return sum(values)

    def counted(fut):
        fut.add_done_callback(lambda _: done.__setitem__(0, done[0] + 1))
        return fut

    @engine.block
    async def replica(w, s, r):
        return await counted(analyse(counted(simulate(w, s, r)), w, s, r))

    @engine.block
    async def workflow(w):
        values: List[int] = []
        for s in range(args.stages):
            values = await asyncio.gather(*[replica(w, s, r) for r in range(args.replicas)])
        return await counted(summary(values, w))

    try:
        await asyncio.gather(*[workflow(w) for w in range(args.workflows)])
    finally:
        await engine.shutdown(skip_execution_backend=True)


def run_raw(backend: Any, args: argparse.Namespace, done: List[int],
            finished: threading.Event) -> None:
    """The same DAG straight on RP: state callbacks submit each task's successor."""
    import radical.pilot as rp
    tmgr = backend.tmgr
    pending: List[Any] = []
    cond = threading.Condition()
    meta: Dict[str, tuple] = {}
    left: Dict[tuple, int] = {}                 # (w, s) -> replicas not done
    workflows_left = [args.workflows]
    counter = [0]

    def td(kind: str, w: int, s: int, r: int) -> Any:
        counter[0] += 1
        uid = f'raw.{kind}.{counter[0]:06d}'
        meta[uid] = (kind, w, s, r)
        if kind == 'simulate' or args.light:
            d = {'executable': '/bin/sh', 'arguments': ['-c', f'echo {w}.{s}.{r}']}
        else:
            d = {'executable': sys.executable,
                 'arguments': ['-c', 'import sys; print(len(sys.argv[1]))', f'{w}.{s}.{r}']}
        return rp.TaskDescription({**d, 'uid': uid, 'name': kind, 'pilot': backend.pilot.uid})

    def stage(w: int, s: int) -> List[Any]:
        left[(w, s)] = args.replicas
        return [td('simulate', w, s, r) for r in range(args.replicas)]

    def on_state(task: Any, state: str) -> None:
        if task.uid not in meta or state not in rp.FINAL:
            return
        kind, w, s, r = meta[task.uid]
        done[0] += 1
        nxt: List[Any] = []
        if kind == 'simulate':
            nxt = [td('analyse', w, s, r)]
        elif kind == 'analyse':
            left[(w, s)] -= 1
            if left[(w, s)] == 0:
                nxt = stage(w, s + 1) if s + 1 < args.stages else [td('summary', w, s, 0)]
        else:
            workflows_left[0] -= 1
            if workflows_left[0] == 0:
                finished.set()
        if nxt:
            with cond:
                pending.extend(nxt)
                cond.notify()

    tmgr.register_callback(on_state)
    first = [t for w in range(args.workflows) for t in stage(w, 0)]
    tmgr.submit_tasks(first)
    while not finished.is_set():
        with cond:
            cond.wait(timeout=0.2)
            batch, pending[:] = list(pending), []
        if batch:
            tmgr.submit_tasks(batch)


# ---------------------------------------------------------------- one run

async def one_run(args: argparse.Namespace) -> Dict[str, Any]:
    from radical.asyncflow import RadicalExecutionBackend
    base = tempfile.mkdtemp(prefix='asyncflow-crash-', dir=args.work_dir)
    resources: Dict[str, Any] = {'resource': 'local.localhost', 'cores': args.cores,
                                 'runtime': args.runtime, 'sandbox': base}
    from radical.asyncflow.backends.execution.radical_pilot import agent_fix
    # the backend applies the fix itself; 'none' turns it off for this run
    agent_fix.install(os.environ, mode='off' if args.publish == 'none' else args.publish)
    if args.stress:
        os.environ['RADICAL_ASYNCFLOW_RP_PUBLISH_STRESS'] = 'agent_executing'
        os.environ['RADICAL_ASYNCFLOW_RP_PUBLISH_STRESS_MS'] = str(args.stress_ms)
        os.environ['RADICAL_ASYNCFLOW_RP_PUBLISH_STRESS_THREADS'] = str(args.stress_threads)
    if args.faulthandler:       # Python stacks of every thread in the .err at an abort
        os.environ['PYTHONFAULTHANDLER'] = '1'
    total = args.workflows * (args.stages * args.replicas * 2 + 1)
    reaper = args.subreaper and become_subreaper()
    t0 = time.monotonic()
    backend = await RadicalExecutionBackend(resources, work_dir=base)
    startup = time.monotonic() - t0
    sandbox = backend.pilot_sandbox
    print(f'  pilot {backend.pilot.uid} up in {startup:.0f} s; sandbox {sandbox}', flush=True)
    done = [0]
    start, start_wall = time.monotonic(), time.time()
    watch = Watch(sandbox, start, done, total, args.log_every)
    watch.reap = reaper
    watch.begin()
    finished = threading.Event()
    outcome = 'timeout'
    if args.mode == 'engine':
        work = asyncio.ensure_future(run_engine(backend, args, done))
    else:
        work = asyncio.ensure_future(asyncio.to_thread(run_raw, backend, args, done, finished))
    try:
        while True:
            await asyncio.wait([work], timeout=1.0)
            now = time.monotonic()
            if work.done():
                work.result()
                outcome = 'done'
                break
            if watch.died_at is not None and now - watch.last_progress > args.stall:
                outcome = 'stalled'
                break
            if now - start > args.max_seconds:
                break
    finally:
        elapsed = time.monotonic() - start
        tasks_done = done[0]        # before cancelling: cancelled futures count too
        finished.set()
        watch.stop()
        alive_at_end = watch.pid is not None and not _is_zombie(watch.pid)
        err = read_tail(os.path.join(sandbox, f'{COMPONENT}.err'))
        prof_end = last_prof_stamp(os.path.join(sandbox, f'{COMPONENT}.prof'))
        work.cancel()
        t = time.monotonic()
        await backend.shutdown()
        shutdown = time.monotonic() - t
    result = {
        'mode': args.mode, 'publish': args.publish,
        'stress': args.stress and f'{args.stress_threads}x{args.stress_ms}ms',
        'workflows': args.workflows,
        'tasks': total, 'cores': args.cores, 'outcome': outcome,
        'seconds': round(elapsed, 1), 'tasks_done': tasks_done,
        'died': watch.died_at is not None or (watch.pid is not None and not alive_at_end),
        'died_at_s': None if watch.died_at is None else round(watch.died_at, 1),
        'done_at_death': watch.done_at_death, 'executing_pid': watch.pid,
        'err': err.strip(), 'prof_last_event_s': None if prof_end is None
        else round(prof_end - start_wall, 1),
        'load_median': round(statistics.median(watch.loads), 2) if watch.loads else None,
        'load_max': round(max(watch.loads), 2) if watch.loads else None,
        'pilot_startup_s': round(startup, 1), 'shutdown_s': round(shutdown, 1),
        'exit_status': watch.exit_status, 'sandbox': sandbox,
        'overlaps': overlaps(sandbox, watch.pid),
    }
    if not (args.keep or (args.keep_crashed and result['died'])):
        shutil.rmtree(base, ignore_errors=True)
    return result


# ---------------------------------------------------------------------- main

def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='one small run (64 workflows, 4 cores): a smoke test')
    p.add_argument('--mode', choices=('engine', 'raw'), default='engine')
    p.add_argument('--workflows', type=int, default=1024)
    p.add_argument('--stages', type=int, default=2)
    p.add_argument('--replicas', type=int, default=2)
    p.add_argument('--cores', type=int, default=8)
    p.add_argument('--light', action='store_true',
                   help='--mode raw: function tasks are shell commands too (no Python '
                        'start-up: more tasks per second)')
    p.add_argument('--runtime', type=int, default=60, help='pilot runtime, minutes')
    p.add_argument('--runs', type=int, default=1, help='runs, each a fresh interpreter')
    p.add_argument('--max-seconds', type=float, default=900.0,
                   help='a run stops after this long (default 900)')
    p.add_argument('--stall', type=float, default=60.0,
                   help='a run with the component dead stops after this long without '
                        'a finished task (default 60)')
    p.add_argument('--publish', choices=('none', 'probe', 'lock'), default='none',
                   help="asyncflow's agent fix: none (RP as it is), probe (count "
                        "concurrent Publisher.put calls, no lock), lock (the fix)")
    p.add_argument('--stress', action='store_true',
                   help="one more thread in agent_executing publishes empty state updates "
                        "every 2 ms (amplifies the race; see agent_site/sitecustomize.py)")
    p.add_argument('--stress-ms', type=float, default=2.0,
                   help='milliseconds between two --stress messages (default 2)')
    p.add_argument('--stress-threads', type=int, default=1,
                   help='--stress threads (default 1: it races RP\'s own two; 2 race '
                        'each other too)')
    p.add_argument('--no-faulthandler', dest='faulthandler', action='store_false',
                   help='do not set PYTHONFAULTHANDLER=1 for the pilot')
    p.add_argument('--subreaper', action='store_true',
                   help='become a child subreaper (Linux) to read how the executing '
                        'component ended (signal or exit code)')
    p.add_argument('--keep-crashed', action='store_true',
                   help='keep the sandbox of a run whose component died')
    p.add_argument('--log-every', type=float, default=15.0)
    p.add_argument('--work-dir', default=None, help='parent of the runs\' directories')
    p.add_argument('--keep', action='store_true', help='keep each run\'s sandbox')
    p.add_argument('--json', help='append each run\'s record to this file (JSON lines)')
    p.add_argument('--one', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.workflows, args.cores, args.max_seconds = 64, 4, 300.0
    return args


def summarise(records: List[Dict[str, Any]]) -> None:
    died = [r for r in records if r['died']]
    print(f'\n{len(died)}/{len(records)} runs: {COMPONENT} died')
    for r in records:
        print(f"  {r['mode']:6s} publish={r['publish']:5s} stress={r.get('stress')!s:5s} "
              f"{r['outcome']:8s} "
              f"{r['tasks_done']:5d}/{r['tasks']} in {r['seconds']:6.0f} s  "
              f"died={r['died']!s:5s} at {r['died_at_s']} s ({r['done_at_death']} done)  "
              f"load median {r['load_median']}  err: {r['err'][:80]!r}")
    if died:
        at = [r['died_at_s'] for r in died if r['died_at_s'] is not None]
        if at:
            print(f'  died after a median {statistics.median(at):.0f} s '
                  f'(min {min(at):.0f}, max {max(at):.0f})')


def _without(argv: List[str], options: tuple) -> List[str]:
    """``argv`` without ``options`` and their values (``--opt v`` or ``--opt=v``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in options:
            skip = True
        elif not a.startswith(tuple(o + '=' for o in options)):
            out.append(a)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.one:
        record = asyncio.run(one_run(args))
        print('RECORD ' + json.dumps(record), flush=True)
        return 0
    print(f'Python {platform.python_version()}, {os.cpu_count()} CPUs, '
          f'load {os.getloadavg()}', flush=True)
    records = []
    child_argv = _without(argv if argv is not None else sys.argv[1:], ('--runs', '--json'))
    for i in range(args.runs):
        print(f'run {i + 1}/{args.runs}: {args.mode}, {args.workflows} workflows, '
              f'{args.cores} cores, publish={args.publish}', flush=True)
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--one',
                                 *child_argv],
                                stdout=subprocess.PIPE, text=True)
        record = None
        for line in proc.stdout:
            if line.startswith('RECORD '):
                record = json.loads(line[7:])
            else:
                print(line, end='', flush=True)
        proc.wait()
        if record is None:
            print(f'  run {i + 1} ended without a record (exit {proc.returncode})')
            continue
        records.append(record)
        if args.json:
            with open(args.json, 'a') as f:
                f.write(json.dumps(record) + '\n')
    summarise(records)
    return 0


if __name__ == '__main__':
    sys.exit(main())
