"""Formats buffered task events as profile lines; also a helper process that does it.

The engine records a state change as three flat values (time in ns, uid,
state index).  Turning them into ``radical.utils.Profiler`` CSV lines costs a
few hundred nanoseconds per event in Python, as much as a third of what the
engine itself spends on a no-op task.  So a run with many events hands them,
as raw bytes, to this module run as a helper process
(``python -I -S _profile_writer.py PROFILE COMP THREAD BACKEND``), which
formats and appends them to the profile on another core.  Small runs format
in-process with the same :func:`format_events`.

Only the standard library is used here: the helper starts in milliseconds.

Frames on the helper's stdin: a header (events, messages, uid bytes, message
bytes: four little-endian uint32; the clock offset: int64), the times (int64
``perf_counter_ns`` each; plus the offset, ns since the epoch), the state
indices (int8 each), the uids and the messages (each ``\\n``-joined UTF-8).  A header
of zeros ends the stream; so does end of file.  Messages belong, in order, to
the events whose state takes one (created: the task name; FAILED: the cause).
"""

import array
import signal
import struct
import sys

HEADER = struct.Struct('<IIIIq')
STATE_EVENT = 'advance'
#: NodeState names by index, as in radical.asyncflow.graph (checked by the tests).
STATE_NAMES = ('WAITING', 'READY', 'SUBMITTED', 'RUNNING', 'DONE', 'FAILED', 'CANCELED')
#: States whose event carries a message of its own (the others: a fixed one).
MESSAGE_STATES = (0, 5)
_DIGITS3 = tuple('%03d' % i for i in range(1000))


def encode_frame(times: list, uids: list, states: list, msgs: list, offset: int) -> bytes:
    """One frame of events for the helper process."""
    uid_blob = '\n'.join(uids).encode()
    msg_blob = '\n'.join(msgs).encode()
    if msgs and msg_blob.count(b'\n') != len(msgs) - 1:      # a name with a line break
        msg_blob = '\n'.join(m.replace('\n', ' ') for m in msgs).encode()
    return b''.join((HEADER.pack(len(uids), len(msgs), len(uid_blob), len(msg_blob), offset),
                     array.array('q', times).tobytes(), array.array('b', states).tobytes(),
                     uid_blob, msg_blob))


END_FRAME = HEADER.pack(0, 0, 0, 0, 0)


def format_events(times, uids, states, msgs, offset: int, comp: str, thread: str,
                  backend: str) -> str:
    """Profile lines (``time,advance,comp,thread,uid,STATE,msg``) of the events.

    ``times`` are ns of a monotonic clock; ``offset`` turns them into ns since the epoch.
    """
    head = f',{STATE_EVENT},{comp},{thread},'
    suffix = tuple(f',{name},' for name in STATE_NAMES)
    # The whole ",STATE,msg\n" tail of states whose message is the same for every task.
    tails = tuple(f'{s}{backend if i == 2 else ""}\n' for i, s in enumerate(suffix))
    digits = _DIGITS3
    next_msg = iter(msgs).__next__
    lines = []
    append = lines.append
    base, prefix = -(1 << 62), ''       # the first event starts a new second
    for ts, uid, index in zip(times, uids, states):
        # "seconds.micro" from integer nanoseconds: much cheaper than '%.7f'.
        delta = ts - base
        if delta >= 1_000_000_000 or delta < 0:
            seconds = (ts + offset) // 1_000_000_000
            base, prefix = seconds * 1_000_000_000 - offset, f'{seconds}.'
            delta = ts - base
        micro = delta // 1000
        if index and index != 5:
            append(f'{prefix}{digits[micro // 1000]}{digits[micro % 1000]}{head}{uid}{tails[index]}')
        else:
            append(f'{prefix}{digits[micro // 1000]}{digits[micro % 1000]}{head}{uid}'
                   f'{suffix[index]}{next_msg()}\n')
    return ''.join(lines)


def _read_exactly(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def main(argv: list) -> int:
    """Helper process: append the frames read from stdin to the profile ``argv[1]``."""
    path, comp, thread, backend = argv[1:5]
    for name in ('SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1'):
        sig = getattr(signal, name, None)
        if sig is not None:          # the engine ends the stream; a signal must not lose it
            signal.signal(sig, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    with open(path, 'a', encoding='utf-8') as out:
        while True:
            try:
                n, n_msgs, uid_len, msg_len, offset = HEADER.unpack(
                    _read_exactly(stdin, HEADER.size))
                if n == 0:
                    break
                times = array.array('q')
                times.frombytes(_read_exactly(stdin, 8 * n))
                states = array.array('b')
                states.frombytes(_read_exactly(stdin, n))
                uids = _read_exactly(stdin, uid_len).decode().split('\n')
                msgs = _read_exactly(stdin, msg_len).decode().split('\n') if n_msgs else []
            except EOFError:         # the engine's process ended without saying so
                break
            out.write(format_events(times.tolist(), uids, states.tolist(), msgs, offset,
                                    comp, thread, backend))
            out.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
