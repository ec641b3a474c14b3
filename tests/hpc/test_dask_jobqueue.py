"""The ``cluster`` resource of DaskExecutionBackend: what is accepted, and the
one-line errors for what is not (no batch system needed; the real SLURM run is
in test_multinode.py).
"""

import pytest

from radical.asyncflow.backends.execution import _dask_jobqueue as jobqueue

SLURM = {'cluster': 'slurm', 'jobs': 2, 'cores': 2, 'memory': '1GB', 'walltime': '00:10:00'}


def test_no_cluster_key_or_local_is_not_a_jobqueue_cluster():
    assert jobqueue.parse_jobqueue({}) is None
    assert jobqueue.parse_jobqueue({'n_workers': 2}) is None
    assert jobqueue.parse_jobqueue({'cluster': 'local', 'n_workers': 2}) is None


def test_a_slurm_cluster_spec():
    spec = jobqueue.parse_jobqueue({**SLURM, 'processes': 2, 'queue': 'debug',
                                    'job_extra_directives': ['--exclusive']})
    assert (spec.kind, spec.jobs, spec.workers) == ('slurm', 2, 4)
    assert spec.startup_timeout == jobqueue.DEFAULT_STARTUP_TIMEOUT
    assert spec.options['cores'] == 2 and spec.options['memory'] == '1GB'
    assert spec.options['queue'] == 'debug'
    assert spec.options['job_extra_directives'] == ['--exclusive']
    assert spec.options['scheduler_options'] == {'dashboard_address': ':0'}
    assert 'cluster' not in spec.options and 'jobs' not in spec.options


def test_one_worker_process_per_job_by_default():
    spec = jobqueue.parse_jobqueue({'cluster': 'slurm', 'cores': 8, 'memory': '4GB'})
    assert spec.jobs == 1 and spec.options['processes'] == 1 and spec.workers == 1


def test_scheduler_options_are_kept_and_the_dashboard_port_may_be_chosen():
    spec = jobqueue.parse_jobqueue({**SLURM, 'scheduler_options':
                                    {'dashboard_address': ':8799', 'host': '10.0.0.1'}})
    assert spec.options['scheduler_options'] == {'dashboard_address': ':8799',
                                                 'host': '10.0.0.1'}


@pytest.mark.parametrize('change, error, message', [
    ({'cluster': 'lsf'}, ValueError,
     r"resources\['cluster'\] must be 'local' or one of 'slurm', not 'lsf'"),
    ({'nodes': 2}, ValueError, r"unknown key 'nodes' for cluster 'slurm' \(known: cluster, "),
    ({'jobs': 0}, ValueError, r"resources\['jobs'\] must be a whole number >= 1, not 0"),
    ({'jobs': 1.5}, ValueError, r"resources\['jobs'\] must be a whole number >= 1, not 1.5"),
    ({'cores': True}, ValueError, r"resources\['cores'\] must be a whole number >= 1"),
    ({'processes': 3}, ValueError, r"resources\['processes'\]=3 is more than "
                                   r"resources\['cores'\]=2"),
    ({'memory': 1024}, TypeError, r"resources\['memory'\] must be a size such as '4GB'"),
    ({'walltime': 10}, TypeError, r"resources\['walltime'\] must be a string"),
    ({'startup_timeout': -1}, ValueError, r"resources\['startup_timeout'\] must be a positive"),
    ({'job_extra_directives': '--exclusive'}, TypeError,
     r"resources\['job_extra_directives'\] must be a list of strings"),
    ({'scheduler_address': 'tcp://h:8786'}, ValueError,
     r"resources\['cluster'\]='slurm' starts a cluster; it cannot go with 'scheduler_address'"),
])
def test_bad_cluster_resources_are_one_line_errors_naming_the_key(change, error, message):
    with pytest.raises(error, match=f'^DaskExecutionBackend: {message}') as info:
        jobqueue.parse_jobqueue({**SLURM, **change})
    assert '\n' not in str(info.value)


@pytest.mark.parametrize('missing', ['cores', 'memory'])
def test_cores_and_memory_are_required(missing):
    resources = {k: v for k, v in SLURM.items() if k != missing}
    with pytest.raises(ValueError, match=f"^DaskExecutionBackend: cluster 'slurm' needs "
                                         f"'{missing}' \\(per worker job\\)"):
        jobqueue.parse_jobqueue(resources)


def test_the_backend_checks_the_resources_when_constructed():
    pytest.importorskip('distributed')
    from radical.asyncflow import DaskExecutionBackend
    with pytest.raises(ValueError, match=r"^DaskExecutionBackend: unknown key 'gpus'"):
        DaskExecutionBackend({**SLURM, 'gpus': 1})


def test_without_dask_jobqueue_the_backend_names_the_extra(monkeypatch):
    pytest.importorskip('distributed')
    import builtins

    from radical.asyncflow import DaskExecutionBackend
    from radical.asyncflow.errors import MissingDependencyError
    real_import = builtins.__import__

    def no_jobqueue(name, *args, **kwargs):
        if name == 'dask_jobqueue':
            raise ImportError('No module named dask_jobqueue')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', no_jobqueue)
    with pytest.raises(MissingDependencyError, match=r"radical.asyncflow\[jobqueue\]"):
        DaskExecutionBackend(SLURM)
