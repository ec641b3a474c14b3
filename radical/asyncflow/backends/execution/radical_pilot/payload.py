"""Function tasks on RADICAL-Pilot: the pickled call and the code that runs it.

The client side pickles a function task's call with ``dill`` (with the
client's ``sys.path`` and the sandboxes to link in) and turns the outcome
that comes back into a value or an exception.  The pilot side is
:data:`PILOT_CODE`: standard library and ``dill`` only.  It never imports
radical.asyncflow, whose import would cost every task about 0.1 s of CPU
on the pilot:

* without RAPTOR a task runs ``sys.executable -c`` :data:`TRAMPOLINE_COMMAND`
  with the call inline as an argument (base64; a large call is staged in as
  :data:`PAYLOAD_IN` instead).  It prints a small outcome as the last line
  of its stdout, which RP hands back with the task, and writes a large one
  into :data:`PAYLOAD_OUT` in its sandbox, where the client reads it: no
  file staging, and no file at all in the common case (a file create costs
  a parallel file system's metadata server more than a line of stdout).
* on a RAPTOR worker the task's function is :func:`raptor_entry`, defined in
  a namespace no import reaches, so that ``dill`` sends it by value; it runs
  the same code, which it carries compressed.  The worker needs nothing of
  this package.
"""

from __future__ import annotations

import base64
import os
import pickle
import sys
import zlib
from typing import Any, Dict, Optional, Sequence, Tuple

from ....errors import UsageTypeError
from ....radical_compat import python_task
from ..spec import TaskSpec

#: (producer sandbox, its RP uid) pairs whose files are linked into a task's sandbox.
Links = Sequence[Tuple[str, str]]

#: Files of the function trampoline in the task sandbox (hidden: not linked on).
PAYLOAD_IN = '.asyncflow.call'
PAYLOAD_OUT = '.asyncflow.result'
#: A call argument that starts with this carries the call itself (base64).
INLINE = 'b64:'
#: Calls up to this size (base64) travel inline, larger ones are staged in.
INLINE_MAX = 32 * 1024
#: The stdout line that carries a small outcome (RP keeps 1 KiB of stdout).
OUTCOME_MARK = '<asyncflow-outcome>'
OUTCOME_STDOUT_MAX = 700

#: The pilot side: runs a pickled call and pickles its outcome.  Standard
#: library and dill only; no ``$``, backquote or backslash (RP's task script
#: has it in double quotes, where the shell would expand them).
PILOT_CODE = f'''
import asyncio
import base64
import inspect
import os
import pickle
import sys
import traceback

INLINE = {INLINE!r}
OUTCOME_MARK = {OUTCOME_MARK!r}
OUTCOME_STDOUT_MAX = {OUTCOME_STDOUT_MAX!r}


def link_inputs(links):
    """Link the files of producer sandboxes into the current directory."""
    for sandbox, rp_uid in links:
        try:
            names = os.listdir(sandbox)
        except OSError:
            continue
        for name in names:
            source = os.path.join(sandbox, name)
            if (name.startswith('.') or name.startswith(rp_uid + '.')
                    or os.path.islink(source) or os.path.lexists(name)):
                continue
            os.symlink(source, name)


def takes_comm(func):
    """Whether func has a parameter comm (for an MPI task's communicator)."""
    try:
        return 'comm' in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


async def run_call(payload, comm=None):
    """Run the pickled call in payload; its outcome, pickled.  comm is the
    task's MPI communicator on RAPTOR's MPIWorker (ranks > 1)."""
    import dill
    envelope = pickle.loads(payload)
    for path in envelope.get('sys_path', ()):
        if path not in sys.path and os.path.isdir(path):
            sys.path.append(path)
    try:
        link_inputs(envelope.get('links', ()))
        func, args, kwargs = dill.loads(envelope['call'])
        if comm is not None and takes_comm(func):
            kwargs = dict(kwargs, comm=comm)
        value = func(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        outcome = ('ok', value)
    except BaseException as exc:        # everything goes back to the client
        outcome = ('err', exc, traceback.format_exc())
    try:
        return dill.dumps(outcome, recurse=True)
    except Exception as exc:
        if outcome[0] == 'ok':
            error = TypeError('the return value (' + type(outcome[1]).__name__ +
                              ') cannot be pickled: ' + str(exc))
            return dill.dumps(('err', error, ''))
        error = RuntimeError(repr(outcome[1]) + ' (not picklable: ' + str(exc) + ')')
        return dill.dumps(('err', error, outcome[2]))


async def raptor_entry(blob, comm=None):
    """The function RAPTOR workers call: the call in, the outcome out, as
    RANK:BASE64 (RP's MPIWorker returns a list of them, one per rank)."""
    rank = comm.rank if comm is not None else 0
    outcome = await run_call(base64.b64decode(blob), comm)
    return str(rank) + ':' + base64.b64encode(outcome).decode()


def trampoline(call, result_path, stdout=True):
    """Run the call (INLINE + base64, else a file name); hand the outcome back (rank 0):
    as the last line of stdout when small (and stdout is True), else in result_path."""
    if call.startswith(INLINE):
        payload = base64.b64decode(call[len(INLINE):])
    else:
        with open(call, 'rb') as f:
            payload = f.read()
    outcome = asyncio.run(run_call(payload))
    if os.environ.get('RP_RANK', '0') != '0':
        return 0
    if stdout and len(outcome) <= OUTCOME_STDOUT_MAX:
        line = chr(10) + OUTCOME_MARK + base64.b64encode(outcome).decode() + chr(10)
        try:
            sys.stdout.flush()
        except Exception:
            pass
        try:
            os.write(1, line.encode())      # fd 1, whatever the function did to sys.stdout
            return 0
        except OSError:
            pass
    tmp = result_path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(outcome)
    os.replace(tmp, result_path)
    return 0
'''

#: The ``python -c`` program of a trampoline task (arguments: the call, PAYLOAD_OUT).
TRAMPOLINE_COMMAND = PILOT_CODE + '\nsys.exit(trampoline(sys.argv[1], sys.argv[2]))\n'

#: The name of the namespaces the pilot code runs in: no module anyone can
#: import, so dill pickles functions defined there by value.
_PILOT_NAME = '__asyncflow_pilot__'
_PILOT: Dict[str, Any] = {'__name__': _PILOT_NAME}
exec(compile(PILOT_CODE, '<asyncflow pilot code>', 'exec'), _PILOT)    # noqa: S102

#: The RAPTOR task's function: it runs PILOT_CODE, which travels compressed as
#: its default argument (1.7 KB pickled, against 6.3 KB for the functions of
#: PILOT_CODE themselves: RP keeps every task description in the client).
_RAPTOR_ENTRY_CODE = f'''
async def raptor_entry(blob, code=None, comm=None):
    import zlib
    pilot = {{'__name__': {_PILOT_NAME!r}}}
    exec(zlib.decompress(code), pilot)
    return await pilot['raptor_entry'](blob, comm)
'''
_ENTRY: Dict[str, Any] = {'__name__': _PILOT_NAME}
exec(compile(_RAPTOR_ENTRY_CODE, '<asyncflow raptor entry>', 'exec'), _ENTRY)     # noqa: S102
raptor_entry = _ENTRY['raptor_entry']
raptor_entry.__defaults__ = (zlib.compress(PILOT_CODE.encode(), 9), None)
#: raptor_entry pickled once (see raptor_function).
_ENTRY_BLOB: Optional[bytes] = None


# ---------------------------------------------------------------------------
# Client side

def function_payload(task: TaskSpec, links: Links) -> bytes:
    """The pickled call of a function task, with what the worker needs to load it."""
    import dill
    func = getattr(task.function, '__asyncflow_original__', task.function)
    try:
        call = dill.dumps((func, tuple(task.args), dict(task.kwargs)), recurse=True)
    except Exception as exc:
        raise UsageTypeError(f"function task '{task.name}' cannot be sent to the pilot: "
                             f"{type(exc).__name__}: {exc}") from exc
    return pickle.dumps({'call': call,
                         'sys_path': [p for p in sys.path if p and os.path.isdir(p)],
                         'links': list(links)})


def attach_call(rp: Any, payload_dir: str, task: TaskSpec, links: Links, rp_uid: str,
                td: Any) -> None:
    """Give the trampoline task ``td`` its call: inline, or staged in when large."""
    payload = function_payload(task, links)
    inline = INLINE + base64.b64encode(payload).decode()
    if len(inline) <= INLINE_MAX:
        td.arguments = [*td.arguments, inline, PAYLOAD_OUT]
        return
    call = os.path.join(payload_dir, f'{rp_uid}.call')
    with open(call, 'wb') as f:
        f.write(payload)
    td.input_staging = [*(td.input_staging or []),
                        {'source': f'file://localhost{call}',
                         'target': f'task:///{PAYLOAD_IN}',
                         'action': rp.TRANSFER}]
    td.arguments = [*td.arguments, PAYLOAD_IN, PAYLOAD_OUT]


def raptor_function(task: TaskSpec, links: Links) -> str:
    """The ``td.function`` of a RAPTOR function task (an ``rp.PythonTask``): its
    call, for :func:`raptor_entry`.

    ``comm=None``: where RP's MPIWorker runs the task on several ranks it puts
    the task's communicator there.
    """
    global _ENTRY_BLOB
    if _ENTRY_BLOB is None:
        import dill
        _ENTRY_BLOB = dill.dumps(raptor_entry)     # rp.PythonTask would, for every task
    blob = base64.b64encode(function_payload(task, links)).decode()
    return python_task(_ENTRY_BLOB, (blob,), {'comm': None})


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


def outcome_blob(stdout: Optional[str], sandbox: str) -> bytes:
    """A trampoline task's pickled outcome: from its stdout, else from its sandbox."""
    mark = (stdout or '').rfind(OUTCOME_MARK)
    if mark >= 0:
        line = stdout[mark + len(OUTCOME_MARK):].split('\n', 1)[0].strip()
        try:
            return base64.b64decode(line, validate=True)
        except ValueError:
            pass                # cut or garbled: the file has it
    with open(os.path.join(sandbox, PAYLOAD_OUT), 'rb') as f:
        return f.read()


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


def run_payload_file(call_path: str, result_path: str) -> int:
    """Run the call in the file ``call_path``; write the outcome (rank 0) to ``result_path``."""
    return _PILOT['trampoline'](call_path, result_path, False)
