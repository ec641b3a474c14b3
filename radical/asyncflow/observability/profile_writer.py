"""Formats buffered task events as profile lines; also a helper process that does it.

The engine records a state change as four flat values (time in ns, uid,
state index, message or None).  Turning them into ``radical.utils.Profiler``
CSV lines costs a few hundred nanoseconds per event in Python, as much as a
third of what the engine itself spends on a no-op task.  So the engine hands them to this
module run as a helper process (``python -I -S profile_writer.py PROFILE
COMP THREAD BACKEND``), which formats and appends them to the profile on
another core.  Without the helper, the engine formats in-process with the
same :func:`format_events`.

Only the standard library is used here: the helper starts in milliseconds.

The helper's stdin carries frames: the length of a payload (little-endian
uint64) and the payload, ``marshal`` of ``(offset, events)`` (the engine
runs the same interpreter, so the format matches).  ``offset`` turns the
events' ``perf_counter_ns`` into ns since the epoch.  Events of the states
that carry a message have one (created: the task name; FAILED: the cause),
the others None; a uid may be a list of uids sharing the event (a batch of
SUBMITTED tasks).  A length of zero ends the stream; so does end of file.
On stdout the helper writes :data:`STARTED` once it reads, and
:data:`FINISHED` once everything it read is in the file.
"""

import _signal          # not ``signal``: it imports enum, 4 ms of the helper's start-up
import marshal
import os
import struct
import sys

LENGTH = struct.Struct('<Q')
END_FRAME = LENGTH.pack(0)
STARTED, FINISHED = b'+', b'.'
STATE_EVENT = 'advance'
#: NodeState names by index, as in radical.asyncflow.graph (checked by the tests).
STATE_NAMES = ('WAITING', 'READY', 'SUBMITTED', 'RUNNING', 'DONE', 'FAILED', 'CANCELED')
#: The state index of a component READY at creation: its WAITING and READY
#: lines, at the same time, from one recorded event.
READY_AT_ONCE = len(STATE_NAMES)
#: The code of a placement learned after RUNNING (its message: the nodes).
PLACED = READY_AT_ONCE + 1
#: Values per event: time, uid, state index, message (or None).
FIELDS = 4
_DIGITS3 = tuple('%03d' % i for i in range(1000))


def encode_frame(events: list, offset: int) -> bytes:
    """One frame of events for the helper process."""
    payload = marshal.dumps((offset, events))
    return LENGTH.pack(len(payload)) + payload


def format_events(events: list, offset: int, comp: str, thread: str, backend: str) -> str:
    """Profile lines (``time,advance,comp,thread,uid,STATE,msg``) of the events.

    ``events`` is flat: time, uid, state index, message, time, ...; times are
    ns of a monotonic clock, and ``offset`` turns them into ns since the epoch.
    """
    head = f',{STATE_EVENT},{comp},{thread},'
    suffix = tuple(f',{name},' for name in STATE_NAMES)
    # The whole ",STATE,msg\n" tail of states whose message is the same for every task.
    tails = tuple(f'{s}{backend if i == 2 else ""}\n' for i, s in enumerate(suffix))
    waiting, ready = suffix[0], tails[1]
    digits = _DIGITS3
    lines = []
    append = lines.append
    base, prefix = -(1 << 62), ''       # the first event starts a new second
    values = iter(events)
    for ts, uid, index, msg in zip(values, values, values, values):
        # "seconds.micro" from integer nanoseconds: much cheaper than '%.7f'.
        delta = ts - base
        if delta >= 1_000_000_000 or delta < 0:
            seconds = (ts + offset) // 1_000_000_000
            base, prefix = seconds * 1_000_000_000 - offset, f'{seconds}.'
            delta = ts - base
        micro = delta // 1000
        when = f'{prefix}{digits[micro // 1000]}{digits[micro % 1000]}{head}'
        if type(uid) is list:               # a batch sharing the event
            tail = tails[index]
            for one in uid:
                append(f'{when}{one}{tail}')
        elif index == READY_AT_ONCE:
            append(f'{when}{uid}{waiting}{msg}\n{when}{uid}{ready}')
        elif index == PLACED:
            append(f'{when}{uid},PLACED,{msg}\n')
        elif msg is None:
            append(f'{when}{uid}{tails[index]}')
        else:
            append(f'{when}{uid}{suffix[index]}{msg}\n')
    return ''.join(lines)


def _read_exactly(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def main(argv: list) -> None:
    """Helper process: append the frames read from stdin to the profile ``argv[1]``.

    It never prints a traceback: an engine that went away ends it quietly; a
    profile it cannot write is one line on stderr.
    """
    path, comp, thread, backend = argv[1:5]
    for name in ('SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1'):
        sig = getattr(_signal, name, None)
        if sig is not None:          # the engine ends the stream; a signal must not lose it
            _signal.signal(sig, _signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    status = 0
    try:
        _say(stdout, STARTED)
        with open(path, 'a', encoding='utf-8') as out:
            while True:
                try:
                    size, = LENGTH.unpack(_read_exactly(stdin, LENGTH.size))
                    if size == 0:
                        break
                    offset, events = marshal.loads(_read_exactly(stdin, size))
                except (EOFError, OSError, ValueError):
                    break            # the engine's process ended without saying so
                out.write(format_events(events, offset, comp, thread, backend))
                out.flush()
    except OSError as exc:           # the profile cannot be written (disk full, gone...)
        status = 1
        try:
            os.write(2, f'radical.asyncflow: the profile helper cannot write {path}: '
                        f'{exc.strerror or exc}\n'.encode())
        except OSError:
            pass
    # All written: say so, and exit at once (no interpreter teardown for the engine to wait for).
    _say(stdout, FINISHED)
    os._exit(status)


def _say(stdout, what: bytes) -> None:
    """Tell the engine; if it is gone (a closed pipe), nobody needs to know."""
    try:
        stdout.write(what)
        stdout.flush()
    except OSError:
        pass


if __name__ == '__main__':
    main(sys.argv)
