"""The private radical.pilot / radical.utils attributes we rely on, against the installed releases.

radical_compat gathers every such use; these tests fail when an upgrade of
either project moves one of them (and when the installed releases are not
the ones the module says it was checked against).
"""

import os

import pytest

from radical.asyncflow import radical_compat

rp = pytest.importorskip('radical.pilot')
ru = pytest.importorskip('radical.utils')


def test_the_installed_releases_are_the_tested_ones():
    assert radical_compat.is_tested('radical.pilot', rp.version), rp.version
    assert radical_compat.is_tested('radical.utils', ru.version), ru.version
    assert not radical_compat.is_tested('radical.pilot', '0.90.1')


def test_description_schemas():
    pilot_keys = radical_compat.pilot_description_keys(rp)
    assert {'resource', 'cores', 'gpus', 'nodes', 'runtime', 'queue', 'project',
            'sandbox'} <= pilot_keys
    task_keys = radical_compat.task_description_keys(rp)
    assert {'executable', 'arguments', 'ranks', 'cores_per_rank', 'gpus_per_rank',
            'environment', 'pre_exec', 'input_staging', 'raptor_id'} <= task_keys


def test_task_manager_known_uids_and_pilot_cancel_timeout():
    import inspect
    source = inspect.getsource(rp.TaskManager)
    assert '_known_uids' in source          # what known_task_uids reads
    assert '_timeout' in inspect.signature(rp.PilotManager.cancel_pilots).parameters

    class NoAttribute:
        pass

    assert list(radical_compat.known_task_uids(NoAttribute())) == []


def test_local_clock_profiler_writes_without_ntp(tmp_path, monkeypatch):
    monkeypatch.setenv('RADICAL_PROFILE', 'True')
    monkeypatch.delenv('RADICAL_ASYNCFLOW_PROFILE', raising=False)   # the autouse fixture's
    prof = radical_compat.local_clock_profiler(ru, name='compat', ns='radical.asyncflow',
                                               path=str(tmp_path))
    assert prof.enabled
    prof.prof('hello', uid='x')
    prof.flush()
    handle = radical_compat.profiler_file(prof)
    assert handle is not None and not handle.closed
    path = os.path.join(str(tmp_path), 'compat.prof')
    assert 'hello' in open(path).read()
    prof.close()


def test_python_task_is_what_rp_python_task_makes():
    import dill
    from radical.pilot.pytask import PythonTask

    def triple(x, scale=1):
        return 3 * x * scale

    ours = radical_compat.python_task(dill.dumps(triple), (2,), {'scale': 5})
    assert ours == rp.PythonTask(triple, (2,), {'scale': 5})
    func, args, kwargs = PythonTask.get_func_attr(ours)       # what RAPTOR's worker does
    assert func(*args, **kwargs) == 30
