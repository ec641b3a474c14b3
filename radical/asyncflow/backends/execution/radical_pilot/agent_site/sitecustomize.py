"""Run by every Python that starts with this directory on ``PYTHONPATH``.

:mod:`..agent_fix` puts it there for a pilot's processes (issue 25).  In
RADICAL-Pilot's own programs (``radical-pilot-*``: agent, components,
bridges, RAPTOR) it serialises ``radical.utils.zmq.Publisher.put``: RP 1.103
calls it from several threads of one process on one ZeroMQ socket, which
ZeroMQ does not allow, and the process aborts ("double free or corruption",
"Assertion failed ... msg.cpp").  Every other Python (task programs) only
pays for reading this file.  Self-contained on purpose: the pilot's Python
need not have radical.asyncflow installed.

Where ``put`` takes the publisher's lock itself (a radical.utils that fixed
it), nothing is changed.  Each RP program appends one line (PID, program,
component, what was done: ``lock``, ``native``, ``probe``, ``off``) to
``asyncflow_agent_fix.log`` in its working directory.

``RADICAL_ASYNCFLOW_RP_PUBLISH`` chooses: ``lock`` (default), ``probe``
(no lock; each time two threads are inside ``put`` of one publisher at once
a line goes to ``asyncflow_publish_overlap.<pid>.txt`` in the working
directory), ``off`` (nothing).

``RADICAL_ASYNCFLOW_RP_PUBLISH_STRESS=<component uid prefix>`` (research
only: benchmarks/agent_crash.py ``--stress``) makes that component's
``state_pubsub`` publisher send an empty state update (``{'cmd': 'update',
'arg': []}``, which every subscriber takes as nothing to do) every 2 ms
(``RADICAL_ASYNCFLOW_RP_PUBLISH_STRESS_MS``) from one more thread (or
``RADICAL_ASYNCFLOW_RP_PUBLISH_STRESS_THREADS`` more): a third thread doing
what RP's two already do, so that the race shows in minutes instead of hours.
"""

import os
import sys


def _asyncflow_patch_publisher(mode):
    import threading
    import time

    from radical.utils.zmq import pubsub

    publisher = pubsub.Publisher
    if getattr(publisher.put, '_asyncflow', None):
        return publisher.put._asyncflow
    original = publisher.put
    if mode == 'lock' and _locks_itself(original):
        return 'native'                 # a radical.utils that locks put: nothing to do
    guard = threading.Lock()            # creates the per-publisher locks

    def lock_of(pub):
        lock = pub.__dict__.get('_asyncflow_lock')
        if lock is None:
            with guard:
                lock = pub.__dict__.setdefault('_asyncflow_lock', threading.Lock())
        return lock

    if mode == 'lock':
        def put(self, topic, msg):
            with lock_of(self):
                return original(self, topic, msg)
    else:
        inside = {}                     # id(publisher) -> names of the threads in put
        seen = [0]
        folder = os.getcwd()

        def put(self, topic, msg):
            me = threading.current_thread().name
            with guard:
                threads = inside.setdefault(id(self), [])
                others = list(threads)
                threads.append(me)
                if others:
                    seen[0] += 1
            if others and (seen[0] <= 200 or seen[0] % 1000 == 0):
                path = os.path.join(folder, f'asyncflow_publish_overlap.{os.getpid()}.txt')
                with open(path, 'a') as f:
                    f.write(f'{time.time():.6f} {seen[0]} {self.channel} {me} with '
                            f'{",".join(others)}\n')
            try:
                return original(self, topic, msg)
            finally:
                with guard:
                    threads.remove(me)

    if mode != 'off':
        put._asyncflow = mode
        publisher.put = put
    return mode


def _locks_itself(put):
    """Whether ``Publisher.put`` takes the publisher's lock itself (radical.utils
    1.103.1 does not: ``zmq/pubsub.py:227-240``)."""
    import inspect
    try:
        source = inspect.getsource(put)
    except (OSError, TypeError):
        return False
    return 'with self._lock' in source or '_lock.acquire' in source


def _asyncflow_stress(prefix):
    import threading
    import time

    from radical.utils.zmq import pubsub

    uid = sys.argv[3] if len(sys.argv) > 3 else ''
    if not uid.startswith(prefix):
        return
    init = pubsub.Publisher.__init__
    pause = float(os.environ.get('RADICAL_ASYNCFLOW_RP_PUBLISH_STRESS_MS', '2')) / 1000

    def __init__(self, channel, *args, **kwargs):
        init(self, channel, *args, **kwargs)
        if channel != 'state_pubsub':
            return

        def noise():
            while True:
                time.sleep(pause)
                self.put(channel, {'cmd': 'update', 'arg': [], 'fwd': False})

        for i in range(int(os.environ.get('RADICAL_ASYNCFLOW_RP_PUBLISH_STRESS_THREADS', '1'))):
            threading.Thread(target=noise, daemon=True, name=f'asyncflow-stress-{i}').start()

    pubsub.Publisher.__init__ = __init__


def _asyncflow_main():
    mode = os.environ.get('RADICAL_ASYNCFLOW_RP_PUBLISH', 'lock')
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ''
    stress = os.environ.get('RADICAL_ASYNCFLOW_RP_PUBLISH_STRESS')
    if program.startswith('radical-pilot-'):
        try:
            done = _asyncflow_patch_publisher(mode)
            if stress:
                _asyncflow_stress(stress)
        except Exception as exc:        # never stop the agent from starting
            done = f'not applied: {exc!r}'
        try:                            # what was done, for users and tests
            uid = sys.argv[3] if len(sys.argv) > 3 else '-'
            with open('asyncflow_agent_fix.log', 'a') as f:
                f.write(f'{os.getpid()} {program} {uid} {done}\n')
        except OSError:
            pass


def _asyncflow_chain():
    """Run the sitecustomize this one hides (the next on sys.path), if any."""
    import importlib.machinery
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != here]
    spec = importlib.machinery.PathFinder.find_spec('sitecustomize', rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_asyncflow_main()
_asyncflow_chain()
