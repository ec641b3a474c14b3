"""Function tasks on RADICAL-Pilot: the pickled call and the code that runs it.

The client side pickles a function task's call with ``dill`` (with the
client's ``sys.path`` and the sandboxes to link in), stages it into the task
sandbox and turns the outcome that comes back into a value or an exception.
The pilot side (this module's :func:`run_payload_file`, started by
:data:`TRAMPOLINE_COMMAND`, or :func:`_raptor_entry` on a RAPTOR worker)
runs the call and pickles its outcome.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import os
import pickle
import sys
import traceback
from typing import Any, Sequence, Tuple

from ..spec import TaskSpec

#: (producer sandbox, its RP uid) pairs whose files are linked into a task's sandbox.
Links = Sequence[Tuple[str, str]]

#: Files of the function trampoline in the task sandbox (hidden: not linked on).
PAYLOAD_IN = '.asyncflow.call'
PAYLOAD_OUT = '.asyncflow.result'


# ---------------------------------------------------------------------------
# Client side

def function_payload(task: TaskSpec, links: Links) -> bytes:
    """The pickled call of a function task, with what the worker needs to load it."""
    import dill
    func = getattr(task.function, '__asyncflow_original__', task.function)
    try:
        call = dill.dumps((func, tuple(task.args), dict(task.kwargs)), recurse=True)
    except Exception as exc:
        raise TypeError(f"function task '{task.name}' cannot be sent to the pilot: "
                        f"{type(exc).__name__}: {exc}") from exc
    return pickle.dumps({'call': call,
                         'sys_path': [p for p in sys.path if p and os.path.isdir(p)],
                         'links': list(links)})


def write_payload(rp: Any, payload_dir: str, task: TaskSpec, links: Links, rp_uid: str,
                  td: Any) -> str:
    """Write the function call for the trampoline; return the result's client path."""
    call = os.path.join(payload_dir, f'{rp_uid}.call')
    result = os.path.join(payload_dir, f'{rp_uid}.result')
    with open(call, 'wb') as f:
        f.write(function_payload(task, links))
    td.input_staging = [*(td.input_staging or []),
                        {'source': f'file://localhost{call}',
                         'target': f'task:///{PAYLOAD_IN}',
                         'action': rp.TRANSFER}]
    td.output_staging = [*(td.output_staging or []),
                         {'source': f'task:///{PAYLOAD_OUT}',
                          'target': f'file://localhost{result}',
                          'action': rp.TRANSFER}]
    return result


def raptor_function(rp: Any, task: TaskSpec, links: Links) -> Any:
    """The ``td.function`` of a RAPTOR function task: its call, for :func:`_raptor_entry`.

    ``comm=None``: where RP's MPIWorker runs the task on several ranks it puts
    the task's communicator there.
    """
    blob = base64.b64encode(function_payload(task, links)).decode()
    return rp.PythonTask(_raptor_entry, (blob,), {'comm': None})


def raptor_outcome(return_value: Any) -> bytes:
    """The pickled outcome in a RAPTOR task's return value.

    A DefaultWorker returns one ``RANK:BASE64`` string; RP's MPIWorker a
    list of them, one per rank in the order they finished: the outcome is
    the first failed rank's, else rank 0's.
    """
    import dill
    entries = return_value if isinstance(return_value, list) else [return_value]
    outcomes = []
    for entry in entries:
        rank, _, blob = str(entry or '').rpartition(':')
        outcomes.append((int(rank or 0), base64.b64decode(blob)))
    outcomes.sort()
    for _, blob in outcomes:
        if dill.loads(blob)[0] != 'ok':
            return blob
    return outcomes[0][1]


def load_outcome(blob: bytes, task: TaskSpec) -> Tuple[bool, Any]:
    """(True, value) or (False, exception, noted with the remote traceback)."""
    import dill
    outcome = dill.loads(blob)
    if outcome[0] == 'ok':
        return True, outcome[1]
    exc, remote_tb = outcome[1], outcome[2]
    if hasattr(exc, 'add_note') and remote_tb:
        exc.add_note(f"raised in function task '{task.name}' ({task.uid}) on the "
                     f"pilot:\n{remote_tb.rstrip()}")
    return False, exc


# ---------------------------------------------------------------------------
# Pilot side: what runs in the task (or on the RAPTOR worker) of a function task.

#: The ``python -c`` program of a trampoline task (arguments: PAYLOAD_IN PAYLOAD_OUT).
TRAMPOLINE_COMMAND = ('import sys; '
                      'from radical.asyncflow.backends.execution.radical_pilot.payload '
                      'import run_payload_file; '
                      'sys.exit(run_payload_file(sys.argv[1], sys.argv[2]))')


def run_payload_file(call_path: str, result_path: str) -> int:
    """Run the call in ``call_path``; write the outcome (rank 0) to ``result_path``."""
    with open(call_path, 'rb') as f:
        payload = f.read()
    outcome = asyncio.run(_run_payload(payload))
    if os.environ.get('RP_RANK', '0') == '0':
        tmp = f'{result_path}.tmp'
        with open(tmp, 'wb') as f:
            f.write(outcome)
        os.replace(tmp, result_path)
    return 0


async def _raptor_entry(blob: str, comm: Any = None) -> str:
    """The function RAPTOR workers call (inside their own event loop): the
    outcome as ``RANK:BASE64``.  ``comm`` is the task's MPI communicator on an
    MPIWorker (ranks > 1)."""
    rank = comm.rank if comm is not None else 0
    outcome = await _run_payload(base64.b64decode(blob), comm)
    return f'{rank}:{base64.b64encode(outcome).decode()}'


async def _run_payload(payload: bytes, comm: Any = None) -> bytes:
    import dill
    envelope = pickle.loads(payload)
    for path in envelope.get('sys_path', ()):
        if path not in sys.path and os.path.isdir(path):
            sys.path.append(path)
    try:
        _link_inputs(envelope.get('links', ()))
        func, args, kwargs = dill.loads(envelope['call'])
        if comm is not None and _takes_comm(func):
            kwargs = {**kwargs, 'comm': comm}
        value = func(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        outcome: Tuple[Any, ...] = ('ok', value)
    except BaseException as exc:        # noqa: B902 -- everything goes back to the client
        outcome = ('err', exc, traceback.format_exc())
    try:
        return dill.dumps(outcome, recurse=True)
    except Exception as exc:
        if outcome[0] == 'ok':
            error: BaseException = TypeError(
                f'the return value ({type(outcome[1]).__name__}) cannot be pickled: {exc}')
            return dill.dumps(('err', error, ''))
        error = RuntimeError(f'{outcome[1]!r} (not picklable: {exc})')
        return dill.dumps(('err', error, outcome[2]))


def _takes_comm(func: Any) -> bool:
    """Whether ``func`` has a parameter ``comm`` (for an MPI task's communicator)."""
    try:
        return 'comm' in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _link_inputs(links: Any) -> None:
    """Link the files of producer sandboxes into the current directory."""
    for sandbox, rp_uid in links:
        try:
            names = os.listdir(sandbox)
        except OSError:
            continue
        for name in names:
            source = os.path.join(sandbox, name)
            if name.startswith('.') or name.startswith(f'{rp_uid}.') or \
                    os.path.islink(source) or os.path.lexists(name):
                continue
            os.symlink(source, name)
