"""The import surface of SPEC §1."""

import importlib
import json
import subprocess
import sys
import textwrap
from importlib.metadata import version

import pytest

EXEC = 'radical.asyncflow.backends.execution'

# (module, name, also importable from radical.asyncflow)
SURFACE = [
    ('radical.asyncflow.workflow_manager', 'WorkflowEngine', True),
    ('radical.asyncflow.task', 'Task', True),
    ('radical.asyncflow.data', 'InputFile', True),
    ('radical.asyncflow.data', 'OutputFile', True),
    ('radical.asyncflow.errors', 'DependencyFailure', False),
    ('radical.asyncflow.constants', 'TasksMainStates', False),
    ('radical.asyncflow.constants', 'StateMapper', False),
    (f'{EXEC}.base', 'BaseExecutionBackend', False),
    (f'{EXEC}.noop', 'NoopExecutionBackend', True),
    (f'{EXEC}.concurrent', 'ConcurrentExecutionBackend', True),
    (f'{EXEC}.dask_parallel', 'DaskExecutionBackend', True),
    (f'{EXEC}.radical_pilot', 'RadicalExecutionBackend', True),
]


def run_python(*parts, timeout=120):
    code = '\n'.join(textwrap.dedent(part) for part in parts)
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f'stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}'
    return proc.stdout


def test_import_is_light_and_versioned():
    out = run_python('''
        import json, sys
        import radical.asyncflow as af
        heavy = sorted(m for m in sys.modules
                       if m.split('.')[0] in ('dask', 'distributed', 'typeguard')
                       or m == 'radical.pilot' or m.startswith('radical.pilot.'))
        print(json.dumps({'version': af.__version__, 'heavy': heavy}))
    ''')
    info = json.loads(out.strip().splitlines()[-1])
    assert info['heavy'] == []
    assert info['version'] == version('radical.asyncflow')


def test_engine_import_does_not_pull_optional_backends():
    out = run_python('''
        import json, sys
        from radical.asyncflow import (WorkflowEngine, NoopExecutionBackend,
                                       ConcurrentExecutionBackend, InputFile, OutputFile)
        from radical.asyncflow.errors import DependencyFailure
        from radical.asyncflow.constants import StateMapper, TasksMainStates
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')
                       or m == 'radical.pilot' or m.startswith('radical.pilot.'))
        print(json.dumps(heavy))
    ''')
    assert json.loads(out.strip().splitlines()[-1]) == []


@pytest.mark.parametrize('module, name, top', SURFACE, ids=[n for _, n, _ in SURFACE])
def test_name_is_importable_from_its_module(module, name, top):
    obj = getattr(importlib.import_module(module), name)
    assert getattr(obj, '__name__', name) == name
    if top:
        import radical.asyncflow as af
        assert getattr(af, name) is obj


def test_main_states_enum():
    from radical.asyncflow.constants import TasksMainStates
    assert {s.name for s in TasksMainStates} == {'DONE', 'FAILED', 'CANCELED', 'RUNNING'}


BACKENDS = [(m, n) for m, n, _ in SURFACE
            if n.endswith('ExecutionBackend') and n != 'BaseExecutionBackend']


@pytest.mark.parametrize('module, name', BACKENDS, ids=[n for _, n in BACKENDS])
def test_backend_is_an_awaitable_base_backend(module, name):
    from radical.asyncflow.backends.execution.base import BaseExecutionBackend
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, BaseExecutionBackend)
    assert not getattr(cls, '__abstractmethods__', None)
    for attr in ('__await__', 'create', '__aenter__', '__aexit__'):
        assert callable(getattr(cls, attr, None)), f'{name}.{attr}'


BLOCKER = '''
    import importlib.abc, sys
    BLOCKED = ('dask', 'distributed', 'radical.pilot')

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if any(name == b or name.startswith(b + '.') for b in BLOCKED):
                raise ModuleNotFoundError(f'No module named {name!r}', name=name)
            return None

    sys.meta_path.insert(0, Blocker())
'''


def test_import_works_without_optional_packages():
    out = run_python(BLOCKER, '''
        import radical.asyncflow as af
        from radical.asyncflow import WorkflowEngine, ConcurrentExecutionBackend
        print('imported', af.__version__)
    ''')
    assert 'imported' in out


@pytest.mark.parametrize('name, args, package', [
    ('DaskExecutionBackend', '{}', 'dask'),
    ('RadicalExecutionBackend', "{'resource': 'local.localhost', 'cores': 1}", 'radical.pilot'),
])
def test_missing_optional_package_is_a_clear_import_error(name, args, package):
    out = run_python(BLOCKER, f'''
        import json
        from radical.asyncflow import {name}
        try:
            {name}({args})
        except ImportError as exc:
            print(json.dumps(['ImportError', str(exc)]))
        except BaseException as exc:
            print(json.dumps([type(exc).__name__, str(exc)]))
        else:
            print(json.dumps(['no error', '']))
    ''')
    kind, message = json.loads(out.strip().splitlines()[-1])
    assert kind == 'ImportError', message
    assert package in message
