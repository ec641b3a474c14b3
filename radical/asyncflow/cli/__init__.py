"""The command line and batch systems: ``radical-asyncflow-run``, its settings
(environment, config file) and SLURM/PBS batch jobs."""

from .run import main

__all__ = ['main']
