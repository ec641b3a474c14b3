"""Explicit data dependencies: files a task produces or consumes.

``OutputFile('x.dat')`` among a task's arguments declares that the task
writes ``x.dat``; ``InputFile('x.dat')`` among a later task's arguments asks
for it.  The engine matches them along dependency edges and tells the
backend to stage the file.  An ``InputFile`` can also name an existing local
path or a URL, which the backend stages in from the client side.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse
from .errors import UsageTypeError, UsageValueError

URL_SCHEMES = frozenset({'http', 'https', 'ftp', 'file', 's3', 'gs', 'sftp',
                         'ssh', 'gsiftp', 'globus', 'pilot', 'client',
                         'task', 'resource', 'endpoint'})


class File:
    """A file name or path given to a task as an argument."""

    __slots__ = ('filename',)

    def __init__(self, filename: 'str | os.PathLike[str]') -> None:
        if not isinstance(filename, (str, os.PathLike)):
            raise UsageTypeError(f'{type(self).__name__} takes a file name or path, '
                                 f'not {type(filename).__name__}')
        filename = os.fspath(filename)
        if not filename:
            raise UsageValueError(f'{type(self).__name__} needs a non-empty file name')
        self.filename = filename

    @property
    def basename(self) -> str:
        """The last component of the name (URL paths included)."""
        path = urlparse(self.filename).path if self.is_url else self.filename
        return os.path.basename(path.rstrip('/')) or path

    @property
    def is_url(self) -> bool:
        """True when the name is a URL with a known scheme."""
        scheme = urlparse(self.filename).scheme
        return scheme.lower() in URL_SCHEMES

    def __fspath__(self) -> str:
        return self.filename

    def __str__(self) -> str:
        return self.filename

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.filename!r})'

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.filename == self.filename

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.filename))

    def __reduce__(self):
        return (type(self), (self.filename,))


class InputFile(File):
    """A file the task reads: produced by a dependency, a local path or a URL."""

    __slots__ = ()


class OutputFile(File):
    """A file the task writes, available to dependents that ask for it."""

    __slots__ = ()
