"""Code-aware task identities: what a task runs, and which call it is.

A task's identity has named parts, so that a resume can say *why* a task
runs again:

``key``
    which call this is: the function's qualified name, its arguments (a
    dependency by its own key), and, only among calls identical in all of
    that, how many came before (``occurrence``).  Inserting a call of
    ``f(3)`` shifts nothing but later calls of ``f(3)`` itself.  The key is
    known when the task is called; the journal finds the task's row by it.
``code``
    what a function task runs: a digest of its code (see
    :func:`code_fingerprint`).  Executable tasks: the command (below).
``command``
    what an executable task runs: its resolved command line and the
    ``task_description`` keys in :data:`RUN_KEYS`.  Known only when the
    command is built (its arguments resolved), so it is compared then.

What the code digest covers (decided here, documented in docs/campaigns.md):

- the function's bytecode, instruction by instruction (names, not indices;
  jump targets as instruction numbers; NOPs, EXTENDED_ARGs and caches
  left out), the constants it loads, its parameters, defaults and flags,
  and the exception table: so comments, docstrings, formatting and line
  numbers do not count, any change of behaviour does;
- nested functions, lambdas and comprehensions, recursively (their code
  objects are constants of the outer one);
- every global and closure variable the code reads, by name, and by value
  when the value is one of: a function or class of *user code* (anything
  not under the interpreter's stdlib or site-packages), recursively with
  its own globals, so a fix in a helper re-runs the task; a constant (None,
  bool, int, float, complex, str, bytes, and tuples/frozensets of those, up
  to :data:`MAX_CONSTANT` bytes); an attribute of a user-code module read
  as ``module.name``;
- library functions, classes and modules by name only, and any other object
  (lists, dicts, arrays, instances) by its type only: their values can be
  large or change while the run goes on.  **A changed library version does
  not change an identity**: the driver's interpreter need not be the one
  the tasks run in (a pilot's ``named_env``), and upgrading a library for a
  whole campaign should not repeat it; use ``--rerun`` for that.
- The bytecode is that of the running interpreter: another Python minor
  version compiles differently, so its tasks run again (the journal says so).

Values are taken at the function's first call in the run and kept for the
run.  Everything is hashed with SHA-256 of a canonical encoding: no id(),
no hash(), stable across processes and PYTHONHASHSEED.
"""

from __future__ import annotations

import dis
import hashlib
import inspect
import os
import pickle
import site
import sys
import sysconfig
import time
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ..data import File

#: task_description keys that change what a task runs (the rest say where or how big).
RUN_KEYS = ('executable', 'arguments', 'environment', 'pre_exec', 'post_exec', 'named_env')
#: Bytes of a constant global or closure value covered by value; larger: by type.
MAX_CONSTANT = 4096
#: Version of this encoding: part of every digest, so a change of it never matches.
SCHEME = 2

_SKIP_OPS = frozenset(op for op in ('NOP', 'EXTENDED_ARG', 'CACHE') if op in dis.opmap)
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)
_GLOBAL_OPS = frozenset(op for op in ('LOAD_GLOBAL', 'LOAD_NAME') if op in dis.opmap)
_ATTR_OPS = frozenset(op for op in ('LOAD_ATTR', 'LOAD_METHOD') if op in dis.opmap)
_CONST_TYPES = (type(None), bool, int, float, complex, str, bytes)
#: Argument types pickled as they are (no dependency can hide in them).
_ATOMIC = frozenset(_CONST_TYPES)


# ------------------------------------------------------------------ the parts

@dataclass(frozen=True)
class CodeIdentity:
    """The code digest of a function task, and the digest of each function it covers."""

    digest: str
    #: qualified name -> digest, for the task's function and each helper covered
    parts: Dict[str, str] = field(default_factory=dict)

    def changed(self, old_parts: Dict[str, str]) -> List[str]:
        """Qualified names whose code differs from ``old_parts`` (new or gone included)."""
        names = set(self.parts) | set(old_parts)
        return sorted(n for n in names if self.parts.get(n) != old_parts.get(n))


@dataclass(frozen=True)
class Causes:
    """Why a task runs again, one short phrase each (empty: it is replayed)."""

    items: Tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items)

    def __str__(self) -> str:
        return '; '.join(self.items)


# ------------------------------------------------------------ code digests

def _library_roots() -> Tuple[str, ...]:
    roots = {sysconfig.get_paths().get(k) for k in ('stdlib', 'platstdlib', 'purelib', 'platlib')}
    try:
        roots.update(site.getsitepackages())
    except AttributeError:          # some virtualenvs' site module has no getsitepackages
        pass
    roots.add(getattr(site, 'getusersitepackages', lambda: None)())
    return tuple(sorted(os.path.realpath(r) + os.sep for r in roots if r))


_LIBRARY_ROOTS = _library_roots()


def is_user_code(filename: Optional[str]) -> bool:
    """True for code in a file outside the interpreter's stdlib and site-packages."""
    if not filename or filename.startswith('<frozen'):
        return False
    if filename.startswith('<'):            # exec'd or typed at a prompt: the user's
        return True
    return not os.path.realpath(filename).startswith(_LIBRARY_ROOTS)


class _Fingerprinter:
    """Digests of functions, with a cache per code object (the bytecode part) and
    per function object (bytecode plus the globals and closure it reads)."""

    def __init__(self) -> None:
        self._code: Dict[types.CodeType, Tuple[bytes, Tuple[str, ...],
                                               Tuple[Tuple[str, str], ...]]] = {}
        self._funcs: Dict[Any, CodeIdentity] = {}

    # -- bytecode (cached per code object)
    def code_part(self, code: types.CodeType) -> Tuple[bytes, Tuple[str, ...],
                                                       Tuple[Tuple[str, str], ...]]:
        """(digest of the code object, global names it reads, (module global, attribute))."""
        cached = self._code.get(code)
        if cached is None:
            cached = self._code[code] = self._digest_code(code, set())
        return cached

    def _digest_code(self, code: types.CodeType, seen: set) -> Tuple[bytes, Tuple[str, ...],
                                                                      Tuple[Tuple[str, str], ...]]:
        seen.add(code)
        out = hashlib.sha256()
        nargs = code.co_argcount + code.co_kwonlyargcount + \
            bool(code.co_flags & inspect.CO_VARARGS) + bool(code.co_flags & inspect.CO_VARKEYWORDS)
        out.update(_enc(('sig', code.co_argcount, code.co_posonlyargcount,
                         code.co_kwonlyargcount, code.co_varnames[:nargs],
                         code.co_flags & ~_NOISY_FLAGS)))
        bytecode = dis.Bytecode(code)
        kept = [ins for ins in bytecode if ins.opname not in _SKIP_OPS]
        # Jump targets as instruction numbers: NOPs (line events) and
        # EXTENDED_ARGs change offsets without changing behaviour.
        index_of: Dict[int, int] = {}
        position = 0
        for ins in bytecode:
            index_of.setdefault(ins.offset, position)
            if ins.opname not in _SKIP_OPS:
                position += 1
        globals_read: List[str] = []
        attributes: List[Tuple[str, str]] = []
        previous_global: Optional[str] = None
        for ins in kept:
            if ins.opcode in _JUMPS:
                arg: Any = ('->', index_of.get(ins.argval, -1))
            elif ins.opcode in dis.hasconst:
                arg = self._const(ins.argval, seen, globals_read, attributes)
            else:
                arg = ins.argval
            out.update(_enc((ins.opname, arg)))
            if ins.opname in _GLOBAL_OPS:
                globals_read.append(ins.argval)
                previous_global = ins.argval
                continue
            if ins.opname in _ATTR_OPS and previous_global is not None:
                attributes.append((previous_global, ins.argval))
            previous_global = None
        for entry in getattr(bytecode, 'exception_entries', ()):
            out.update(_enc(('exc', index_of.get(entry.start, -1), index_of.get(entry.end, -1),
                             index_of.get(entry.target, -1), entry.depth, entry.lasti)))
        return (out.digest(), tuple(dict.fromkeys(globals_read)),
                tuple(dict.fromkeys(attributes)))

    def _const(self, value: Any, seen: set, globals_read: List[str],
               attributes: List[Tuple[str, str]]) -> Any:
        if isinstance(value, types.CodeType):
            if value in seen:
                return ('code', 'recursive')
            digest, names, attrs = self._digest_code(value, seen)
            globals_read.extend(names)      # a lambda's globals are the function's too
            attributes.extend(attrs)
            return ('code', digest)
        return value

    # -- functions (cached per function object)
    def function(self, func: Callable) -> CodeIdentity:
        """The code identity of ``func``; computed once per function object."""
        func = inspect.unwrap(func)
        cached = self._funcs.get(func)
        if cached is None:
            parts: Dict[str, str] = {}
            self._function_part(func, parts, set())
            top = parts[_qualname(func)]
            whole = hashlib.sha256(_enc(('scheme', SCHEME, sys.version_info[:2], top,
                                         sorted(parts.items())))).hexdigest()
            cached = self._funcs[func] = CodeIdentity(whole, parts)
        return cached

    def _function_part(self, func: Any, parts: Dict[str, str], active: set) -> str:
        name = _qualname(func)
        if func in active or name in parts:
            return parts.get(name, 'recursive')
        active.add(func)
        code = func.__code__
        digest, globals_read, attributes = self.code_part(code)
        out = hashlib.sha256(digest)
        out.update(_enc(('defaults', _value_part(func.__defaults__),
                         _value_part(func.__kwdefaults__))))
        namespace = getattr(func, '__globals__', {})
        builtins = namespace.get('__builtins__', {})
        if isinstance(builtins, types.ModuleType):
            builtins = vars(builtins)
        for gname in globals_read:
            if gname in namespace:
                out.update(_enc(('global', gname,
                                 self._reference(namespace[gname], parts, active))))
            elif gname in builtins:
                out.update(_enc(('builtin', gname)))
            else:
                out.update(_enc(('unbound', gname)))
        for mod_name, attr in attributes:
            module = namespace.get(mod_name)
            if isinstance(module, types.ModuleType) and \
                    is_user_code(getattr(module, '__file__', None)) and hasattr(module, attr):
                out.update(_enc(('attr', mod_name, attr,
                                 self._reference(getattr(module, attr), parts, active))))
        for cname, cell in zip(code.co_freevars, func.__closure__ or ()):
            try:
                content = cell.cell_contents
            except ValueError:
                out.update(_enc(('closure', cname, 'empty')))
                continue
            out.update(_enc(('closure', cname, self._reference(content, parts, active))))
        parts[name] = out.hexdigest()
        active.discard(func)
        return parts[name]

    def _reference(self, value: Any, parts: Dict[str, str], active: set) -> Any:
        """What a global or closure value contributes (see the module docstring)."""
        if isinstance(value, types.ModuleType):
            return ('module', value.__name__)
        if isinstance(value, types.FunctionType) and hasattr(value, '__wrapped__'):
            try:
                value = inspect.unwrap(value)        # a decorated helper: its original
            except ValueError:                       # a cycle of __wrapped__
                pass
        if isinstance(value, types.FunctionType):
            if is_user_code(value.__code__.co_filename):
                return ('function', _qualname(value), self._function_part(value, parts, active))
            return ('library function', _qualname(value))
        if isinstance(value, type):
            if is_user_code(_class_file(value)):
                return ('class', _qualname(value), self._class_part(value, parts, active))
            return ('library class', _qualname(value))
        if isinstance(value, (types.BuiltinFunctionType, types.MethodType)):
            return ('callable', _qualname(value))
        constant = _constant(value)
        if constant is not None:
            return ('value', constant)
        return ('object', type(value).__module__, type(value).__qualname__)

    def _class_part(self, cls: type, parts: Dict[str, str], active: set) -> str:
        name = _qualname(cls)
        if name in parts or cls in active:
            return parts.get(name, 'recursive')
        active.add(cls)
        out = hashlib.sha256(_enc(('bases', [_qualname(b) for b in cls.__bases__])))
        for attr, member in sorted(vars(cls).items()):
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            elif isinstance(member, property):
                member = member.fget
            if isinstance(member, types.FunctionType):
                out.update(_enc(('method', attr, self._function_part(member, parts, active))))
            elif attr not in ('__dict__', '__weakref__', '__doc__', '__module__', '__qualname__'):
                constant = _constant(member)
                if constant is not None:
                    out.update(_enc(('attribute', attr, constant)))
        parts[name] = out.hexdigest()
        active.discard(cls)
        return parts[name]


# Flags the compiler sets from context, not from the function's behaviour.
_NOISY_FLAGS = getattr(inspect, 'CO_NESTED', 0x10)


def _qualname(obj: Any) -> str:
    return f'{getattr(obj, "__module__", None) or "?"}.' \
           f'{getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(type(obj)))}'


def _class_file(cls: type) -> Optional[str]:
    for member in vars(cls).values():       # where its methods were compiled
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if isinstance(member, types.FunctionType):
            return member.__code__.co_filename
    module = sys.modules.get(cls.__module__)
    return getattr(module, '__file__', None) if module is not None else None


def _constant(value: Any) -> Optional[bytes]:
    """The canonical bytes of a small constant, or None if ``value`` is not one."""
    if isinstance(value, _CONST_TYPES) or (type(value) in (tuple, frozenset) and
                                           all(_is_constant(v) for v in value)):
        encoded = _enc(value)
        return encoded if len(encoded) <= MAX_CONSTANT else None
    return None


def _is_constant(value: Any) -> bool:
    return isinstance(value, _CONST_TYPES) or (
        type(value) in (tuple, frozenset) and all(_is_constant(v) for v in value))


def _value_part(value: Any) -> Any:
    """Defaults: constants by value, other values by their pickled bytes, else by type."""
    if value is None:
        return None
    constant = _constant(value)
    if constant is not None:
        return constant
    if isinstance(value, dict):
        return sorted((k, _value_part(v)) for k, v in value.items())
    if isinstance(value, tuple):
        return tuple(_value_part(v) for v in value)
    try:
        return hashlib.sha256(pickle.dumps(value, protocol=4)).digest()
    except Exception:
        return ('object', type(value).__module__, type(value).__qualname__)


def _enc(value: Any) -> bytes:
    """A canonical, process-independent encoding of constants and nested tuples."""
    if value is None or value is Ellipsis or isinstance(value, bool):
        return f'{type(value).__name__[0]}{value!r};'.encode()
    if isinstance(value, (int, float, complex)):
        return f'{type(value).__name__[0]}{value!r};'.encode()
    if isinstance(value, str):
        data = value.encode('utf-8', 'surrogatepass')
        return b's%d:' % len(data) + data
    if isinstance(value, bytes):
        return b'b%d:' % len(value) + value
    if isinstance(value, (tuple, list)):
        return b'(' + b''.join(_enc(v) for v in value) + b')'
    if isinstance(value, (frozenset, set)):
        # Iteration order follows hash(), which differs between processes.
        return b'{' + b''.join(sorted(_enc(v) for v in value)) + b'}'
    if isinstance(value, types.CodeType):
        raise TypeError('code objects are encoded by their digest')
    return b'?' + _enc((type(value).__module__, type(value).__qualname__))


_DEFAULT = _Fingerprinter()


def code_fingerprint(func: Callable) -> CodeIdentity:
    """The code identity of a function task's function (cached per function object)."""
    return _DEFAULT.function(func)


# ---------------------------------------------------------------- commands

def command_fingerprint(command: str, description: Optional[Dict[str, Any]]) -> str:
    """What an executable task runs: its command and the RUN_KEYS of its description."""
    keys = {k: description[k] for k in RUN_KEYS if description and k in description}
    return hashlib.sha256(_enc(('command', SCHEME, command,
                                sorted((k, _value_part(_plain(v))) for k, v in keys.items())))
                          ).hexdigest()


def description_fingerprint(description: Optional[Dict[str, Any]]) -> str:
    """The RUN_KEYS of a function task's description ('' when it has none)."""
    keys = {k: description[k] for k in RUN_KEYS if description and k in description}
    if not keys:
        return ''
    return hashlib.sha256(_enc(sorted((k, _value_part(_plain(v))) for k, v in keys.items()))
                          ).hexdigest()


def _plain(value: Any) -> Any:
    """Lists and dicts as sorted tuples, so equal descriptions encode equally."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _plain(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


# ------------------------------------------------------------------- calls

def canonical(value: Any, key_of: Callable[[Any], Optional[str]]) -> bytes:
    """Canonical bytes of an argument; a dependency (``key_of`` not None) by its key.

    Values compare by their pickled bytes, files by name, sets and dicts
    regardless of order.  A value that cannot be pickled makes the bytes
    unique to this run (so that task always runs).
    """
    vtype = type(value)
    if vtype in _ATOMIC:
        data = pickle.dumps(value, protocol=4)
        return b'A' + (data if len(data) <= 64 else hashlib.sha256(data).digest())
    key = key_of(value)
    if key is not None:
        return b'D' + key.encode()
    if vtype is list or vtype is tuple:
        if all(type(v) in _ATOMIC for v in value):     # one pickle for the lot
            data = pickle.dumps(value, protocol=4)
            return b'T' + (data if len(data) <= 64 else hashlib.sha256(data).digest())
        return b'L(' + b','.join(canonical(v, key_of) for v in value) + b')'
    if vtype is set or vtype is frozenset:
        return b'S(' + b','.join(sorted(canonical(v, key_of) for v in value)) + b')'
    if vtype is dict:
        return b'M(' + b','.join(sorted(canonical(k, key_of) + b':' + canonical(v, key_of)
                                        for k, v in value.items())) + b')'
    if isinstance(value, File):
        return f'F{vtype.__name__}:{value.filename}'.encode()
    try:
        return b'P' + hashlib.sha256(pickle.dumps(value, protocol=4)).digest()
    except Exception:
        return f'U{vtype.__qualname__}:{id(value)}:{time.time_ns()}'.encode()


def call_digest(qualname: str, args: Iterable[Any], kwargs: Dict[str, Any],
                key_of: Callable[[Any], Optional[str]]) -> Tuple[bytes, bytes]:
    """(digest of the arguments without dependencies' keys, digest of the call).

    The first tells "arguments changed" from "a dependency changed"; the
    second, with the occurrence, is the key.  One canonical pass: each
    dependency becomes a marker there, and its key is added after.
    """
    keys: List[str] = []

    def marker(value: Any) -> Optional[str]:
        key = key_of(value)
        if key is not None:
            keys.append(key)
            return ''
        return None

    data = canonical(tuple(args), marker)
    if kwargs:
        data += b'|' + canonical(sorted(kwargs.items()), marker)
    plain = hashlib.sha256(data).digest()
    if not keys and len(qualname) < 200:
        return plain, hashlib.sha256(b'%d|%s|' % (SCHEME, qualname.encode()) + plain).digest()
    return plain, hashlib.sha256(b'%d|%s|' % (SCHEME, qualname.encode()) + plain +
                                 ','.join(keys).encode()).digest()


class Occurrences:
    """How many identical calls came before: the position among identical calls only.

    Keeps one small int per distinct call (64 bits of its digest: a
    collision only gives a call occurrence 1 instead of 0, so it runs again,
    it is never mistaken for another call).
    """

    def __init__(self) -> None:
        self._seen: Dict[int, int] = {}

    def next(self, call: bytes) -> int:
        """The occurrence of a call with digest ``call`` (0 for the first)."""
        short = int.from_bytes(call[:8], 'little')
        count = self._seen.get(short, 0)
        self._seen[short] = count + 1
        return count


def task_key(call: bytes, occurrence: int) -> str:
    """The journal key of a call: its digest and its occurrence (32 hex digits)."""
    if occurrence:
        call = hashlib.sha256(call + b'#%d' % occurrence).digest()
    return call[:16].hex()


# ---------------------------------------------------------------- why

@dataclass(frozen=True)
class Recorded:
    """The parts of an identity a journal row holds (see :func:`why_again`)."""

    code: str
    code_parts: Dict[str, str]
    command: str
    description: str
    inputs: str
    python: str


def why_again(name: str, row: Optional[Recorded], code: Optional[CodeIdentity],
              command: Optional[str], description: str, inputs: Optional[str],
              reran: Iterable[str], python: str,
              miss: Optional[str] = None) -> Causes:
    """Why the task ``name`` runs again (empty: replay its row).

    ``reran``: names of its dependencies that ran in this run; ``inputs``:
    the digest of its dependencies' recorded results now (None: not all
    replayed); ``miss``: why no row was found by key (see the journal).
    """
    if row is None:                 # nothing to compare: only why it is missing
        return Causes((miss or 'not in the journal',))
    causes: List[str] = []
    reran = list(dict.fromkeys(reran))
    for dep in reran:
        causes.append(f"dependency '{dep}' re-ran")
    if code is not None and code.digest != row.code:
        if row.python and row.python != python:
            causes.append(f"code of '{name}' changed (recorded with Python {row.python}, "
                          f"this is {python})")
        else:
            helpers = [n for n in code.changed(row.code_parts)
                       if n.rsplit('.', 1)[-1] != name and not n.endswith(f'.{name}')]
            extra = f" (in {', '.join(repr(h) for h in helpers[:3])})" if helpers else ''
            causes.append(f"code of '{name}' changed{extra}")
    if command is not None and command != row.command and not reran:
        # (after a dependency re-ran, a command built from its result differs anyway)
        causes.append('command changed')
    if description != row.description:
        causes.append('task_description changed (environment, pre_exec, named_env, ...)')
    if not reran and inputs is not None and inputs != row.inputs:
        causes.append('a dependency\'s recorded result changed since this task ran '
                      '(an earlier run was interrupted between them)')
    return Causes(tuple(causes))


def inputs_digest(result_digests: Iterable[str]) -> str:
    """The digest of a task's dependencies' results, in argument order."""
    return hashlib.sha256('|'.join(result_digests).encode()).hexdigest()[:32]


def python_version() -> str:
    """``major.minor`` of this interpreter: bytecode differs between them."""
    return '%d.%d' % sys.version_info[:2]
