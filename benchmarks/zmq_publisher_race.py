"""radical.utils' ZeroMQ Publisher used from two threads, as RP 1.103's agent does.

``radical.utils.zmq.Publisher.put`` (radical.utils 1.103.1, pubsub.py:227-240)
sends on its PUB socket without taking the lock the publisher has
(pubsub.py:172).  RP's ``agent_executing`` calls it from two threads (see
docs in radical_pilot/agent_fix.py).  This program does exactly that, with
messages of the size RP sends, to a subscribed XSUB socket, for ``--seconds``
(each attempt in a fresh interpreter), and reports how each attempt ended:
ZeroMQ sockets are not thread safe, and the process aborts in libzmq or glibc.
``--fix`` applies asyncflow's agent fix (a lock per publisher) first.

    python benchmarks/zmq_publisher_race.py --attempts 3
    python benchmarks/zmq_publisher_race.py --attempts 3 --fix
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

SITE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'radical',
                    'asyncflow', 'backends', 'execution', 'radical_pilot', 'agent_site')


def child(seconds: float, fix: bool, threads: int) -> None:
    import zmq
    if fix:
        sys.path.insert(0, SITE)
        import sitecustomize                    # the agent fix, as the pilot loads it
        sitecustomize._asyncflow_patch_publisher('lock')
    import radical.utils as ru
    ctx = zmq.Context.instance()
    xsub = ctx.socket(zmq.XSUB)
    port = xsub.bind_to_random_port('tcp://127.0.0.1')
    xsub.send(b'\x01')                          # subscribe to everything
    pub = ru.zmq.Publisher('state_pubsub', url=f'tcp://127.0.0.1:{port}')
    stop = time.monotonic() + seconds
    sent = [0] * threads
    update = {'cmd': 'update', 'fwd': False,
              'arg': [{'uid': f'task.{i:06d}', 'type': 'task', 'state': 'AGENT_EXECUTING'}
                      for i in range(20)]}

    def send(i: int) -> None:
        while time.monotonic() < stop:
            pub.put('state_pubsub', update)
            sent[i] += 1

    def drain() -> None:
        while time.monotonic() < stop:
            try:
                xsub.recv(zmq.NOBLOCK)
            except zmq.Again:
                time.sleep(0.001)

    workers = [threading.Thread(target=send, args=(i,)) for i in range(threads)]
    workers.append(threading.Thread(target=drain))
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(f'survived {sum(sent)} sends', flush=True)
    os._exit(0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--attempts', type=int, default=3)
    p.add_argument('--seconds', type=float, default=20.0)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--fix', action='store_true')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.seconds, args.fix, args.threads)
        return 0
    crashed = 0
    for i in range(args.attempts):
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, __file__, '--child', '--seconds', str(args.seconds),
                               '--threads', str(args.threads), *(['--fix'] if args.fix else [])],
                              capture_output=True, text=True, timeout=args.seconds + 120)
        took = time.monotonic() - t0
        said = (proc.stdout + proc.stderr).strip().splitlines()
        crashed += proc.returncode != 0
        print(f'attempt {i + 1}: exit {proc.returncode} after {took:.1f} s, load '
              f'{os.getloadavg()[0]:.1f}: {said[-1] if said else ""}', flush=True)
    print(f'{crashed}/{args.attempts} attempts crashed (fix={args.fix}, {args.threads} threads)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
