"""Fixtures of the backend tests: a Dask cluster of processes, started once per module."""

from backend_params import dask_process_cluster  # noqa: F401  (the fixture)
