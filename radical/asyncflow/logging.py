"""Console and file logging for programs, as radical.asyncflow 0.6 offers it.

0.6 programs begin with ``from radical.asyncflow.logging import
init_default_logger`` and call ``init_default_logger(logging.INFO)``.  The
three functions here take the same arguments and configure the standard
:mod:`logging` module; the engine's own run log (``<run dir>/radical.asyncflow.log``)
is written whether or not they are called.
"""

from __future__ import annotations

import json
import logging
import pathlib
import sys
import threading
from typing import Any, Optional, Union

from .errors import UsageValueError

__all__ = ['StructuredLogger', 'get_logger', 'get_structured_logger', 'init_default_logger']

Level = Union[int, str]

#: style -> format of a console line (``show_details`` adds process and thread)
_FORMATS = {
    'modern': '%(asctime)s %(levelname)-8s %(name)s: %(message)s',
    'core': '%(asctime)s [%(levelname)s] %(name)s: %(message)s',
    'execution_backend': '%(asctime)s [%(levelname)s] backend %(name)s: %(message)s',
    'minimal': '%(levelname)s: %(message)s',
}
_DETAILS = ' [%(processName)s/%(threadName)s]'
_COLORS = {'DEBUG': '\033[36m', 'INFO': '\033[32m', 'WARNING': '\033[33m',
           'ERROR': '\033[31m', 'CRITICAL': '\033[1;31m'}
_RESET = '\033[0m'
_lock = threading.Lock()


class _ColorFormatter(logging.Formatter):
    """Colours the level name (only when writing to a terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        color = _COLORS.get(record.levelname)
        return line.replace(record.levelname, f'{color}{record.levelname}{_RESET}', 1) \
            if color else line


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's extras."""

    _PLAIN = set(vars(logging.makeLogRecord({}))) | {'message', 'asctime'}

    def format(self, record: logging.LogRecord) -> str:
        entry = {'time': self.formatTime(record), 'level': record.levelname,
                 'logger': record.name, 'message': record.getMessage(),
                 'thread': record.threadName}
        entry.update({k: v for k, v in vars(record).items() if k not in self._PLAIN})
        if record.exc_info:
            entry['exception'] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _level(value: Level) -> int:
    if isinstance(value, str):
        number = logging.getLevelName(value.upper())
        if not isinstance(number, int):
            raise UsageValueError(f'unknown log level {value!r}: use DEBUG, INFO, WARNING, '
                                  f'ERROR, CRITICAL or a number')
        return number
    return int(value)


def init_default_logger(log_level: Level = logging.INFO, *,
                        output_file: Optional[Union[str, pathlib.Path]] = None,
                        file_log_level: Optional[Level] = None, use_colors: bool = True,
                        show_details: bool = False, style: str = 'modern',
                        clear_handlers: bool = False, logger_name: Optional[str] = None,
                        structured_logging: bool = False,
                        structured_file: Optional[Union[str, pathlib.Path]] = None
                        ) -> logging.Logger:
    """Configure the logger ``logger_name`` (default: the root logger) and return it.

    A console handler on stderr at ``log_level`` (coloured on a terminal if
    ``use_colors``); with ``output_file`` a file handler at ``file_log_level``
    (default ``log_level``); with ``structured_logging`` JSON lines into
    ``structured_file`` (default: ``output_file`` with the suffix ``.json``,
    else ``radical.asyncflow.logs.json``, as in 0.6).  ``style`` is one of modern, core,
    execution_backend, minimal.  Calling it again replaces the handlers it
    added before instead of doubling every line.
    """
    if style not in _FORMATS:
        raise UsageValueError(f'unknown logging style {style!r}: choose one of '
                         f'{", ".join(_FORMATS)}')
    console_level = _level(log_level)
    file_level = _level(file_log_level) if file_log_level is not None else console_level
    logger = logging.getLogger(logger_name)
    fmt = _FORMATS[style] + (_DETAILS if show_details else '')
    with _lock:
        if clear_handlers:
            logger.handlers.clear()
        for handler in [h for h in logger.handlers if getattr(h, '_asyncflow', False)]:
            logger.removeHandler(handler)
            handler.close()
        console = logging.StreamHandler(sys.stderr)
        colored = use_colors and getattr(sys.stderr, 'isatty', lambda: False)()
        console.setFormatter((_ColorFormatter if colored else logging.Formatter)(fmt))
        console.setLevel(console_level)
        handlers = [console]
        if output_file is not None:
            handler = logging.FileHandler(output_file, encoding='utf-8')
            handler.setFormatter(logging.Formatter(fmt))
            handler.setLevel(file_level)
            handlers.append(handler)
        if structured_logging:
            path = structured_file or (pathlib.Path(output_file).with_suffix('.json')
                                       if output_file else 'radical.asyncflow.logs.json')
            handler = logging.FileHandler(path, encoding='utf-8')
            handler.setFormatter(_JsonFormatter())
            handler.setLevel(file_level)
            handlers.append(handler)
        for handler in handlers:
            handler._asyncflow = True           # ours to replace on the next call
            logger.addHandler(handler)
        logger.setLevel(min(console_level, file_level))
    return logger


def get_logger(name: Optional[str] = None, level: Level = logging.INFO) -> logging.Logger:
    """The logger ``name``; configures console logging first if nothing has."""
    if not logging.getLogger().handlers:
        init_default_logger(level)
    return logging.getLogger(name)


class StructuredLogger:
    """A logger whose calls take fields as keywords: ``log.info('done', task='t1')``.

    The fields go into the JSON lines as keys; anything else is the wrapped
    :class:`logging.Logger`'s.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def _log(self, level: int, message: str, fields: dict) -> None:
        exc_info = fields.pop('exc_info', None)
        self.logger.log(level, message, extra=fields, exc_info=exc_info, stacklevel=3)

    def debug(self, message: str, **fields: Any) -> None:
        """Log ``message`` at DEBUG with ``fields`` as extra keys."""
        self._log(logging.DEBUG, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        """Log ``message`` at INFO with ``fields`` as extra keys."""
        self._log(logging.INFO, message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        """Log ``message`` at WARNING with ``fields`` as extra keys."""
        self._log(logging.WARNING, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        """Log ``message`` at ERROR with ``fields`` as extra keys."""
        self._log(logging.ERROR, message, fields)

    def critical(self, message: str, **fields: Any) -> None:
        """Log ``message`` at CRITICAL with ``fields`` as extra keys."""
        self._log(logging.CRITICAL, message, fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logger, name)


def get_structured_logger(name: Optional[str] = None,
                          level: Level = logging.INFO) -> StructuredLogger:
    """A :class:`StructuredLogger` on ``name``; configures JSON logging if it has no handler."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        init_default_logger(level, logger_name=name, structured_logging=True)
    return StructuredLogger(logger)
