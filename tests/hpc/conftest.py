"""Fixtures of the HPC tests: the SLURM test clusters, started once per module."""

from slurm_cluster import slurm_cluster, slurm_cluster_4  # noqa: F401  (the fixtures)
