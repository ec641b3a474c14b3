"""Per-task retry and timeout policy.

Set on the decorator (``@flow.function_task(retries=2, timeout=60)``) and
overridable per call through ``task_description={'retries': 0,
'timeout': 5}``.  These keys belong to the engine and are not passed on to
the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple
from ..errors import UsageTypeError, UsageValueError

#: task_description keys the engine consumes itself.
POLICY_KEYS = ('retries', 'timeout', 'retry_backoff')

#: Upper bound of the wait between two attempts, in seconds.
MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class TaskPolicy:
    """How often a failed task is tried again and how long an attempt may take."""

    retries: int = 0
    timeout: Optional[float] = None     # seconds from submission, per attempt
    backoff: float = 1.0                # wait before retry n is backoff * 2**(n-1)

    @classmethod
    def build(cls, name: str, retries: Any = 0, timeout: Any = None,
              backoff: Any = 1.0) -> 'TaskPolicy':
        """A validated policy; errors name the task and the fix."""
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise UsageTypeError(f"'{name}': retries must be a whole number (0 = no retry), "
                                 f"not {retries!r}")
        if retries < 0:
            raise UsageValueError(f"'{name}': retries must be 0 or more, not {retries}")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise UsageTypeError(f"'{name}': timeout must be a number of seconds or None, "
                                     f"not {timeout!r}")
            if not timeout > 0:
                raise UsageValueError(f"'{name}': timeout must be more than 0 seconds, "
                                      f"not {timeout}")
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
            raise UsageValueError(f"'{name}': retry_backoff must be a number of seconds >= 0, "
                                  f"not {backoff!r}")
        policy = cls(retries, None if timeout is None else float(timeout), float(backoff))
        # The engine tells "no policy" by identity: give back the shared default.
        return DEFAULT_POLICY if policy == DEFAULT_POLICY else policy

    def delay(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = the first retry)."""
        return min(self.backoff * 2 ** (attempt - 2), MAX_BACKOFF)

    def overridden(self, name: str, description: Dict[str, Any]
                   ) -> Tuple['TaskPolicy', Dict[str, Any]]:
        """Apply the policy keys of ``description``; return it without them."""
        if not any(key in description for key in POLICY_KEYS):
            return self, description
        rest = {k: v for k, v in description.items() if k not in POLICY_KEYS}
        policy = TaskPolicy.build(
            name, description.get('retries', self.retries),
            description.get('timeout', self.timeout),
            description.get('retry_backoff', self.backoff))
        return policy, rest


DEFAULT_POLICY = TaskPolicy()
