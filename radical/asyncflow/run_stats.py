"""Process-wide counts of what the engines in this process did.

``radical-asyncflow-run`` reads them after the driver returns to choose its
exit status; they cost one integer increment per finished component.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunStats:
    """Counters over every engine created in this process."""

    engines_created: int = 0
    done: int = 0
    failed: int = 0
    canceled: int = 0


STATS = RunStats()
