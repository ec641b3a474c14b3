"""Every public class, function and method of the public modules has a docstring."""

import importlib
import inspect
import pkgutil

import pytest

import radical.asyncflow


def public_modules():
    names = ['radical.asyncflow']
    for info in pkgutil.walk_packages(radical.asyncflow.__path__, 'radical.asyncflow.'):
        if not any(part.startswith('_') for part in info.name.split('.')):
            names.append(info.name)
    return sorted(names)


def undocumented(module):
    """Qualified names of the public objects defined in ``module`` without a docstring."""
    missing = []
    for name, obj in vars(module).items():
        if name.startswith('_') or getattr(obj, '__module__', None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            if not inspect.getdoc(obj):
                missing.append(name)
        elif inspect.isclass(obj):
            if not obj.__doc__:
                missing.append(name)
            for attr, member in vars(obj).items():
                if attr.startswith('_'):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                # An override that keeps its base class's contract inherits the
                # docstring (inspect.getdoc looks it up, as help() does).
                if isinstance(member, property) or inspect.isfunction(member):
                    if not inspect.getdoc(getattr(obj, attr)):
                        missing.append(f'{name}.{attr}')
    return missing


@pytest.mark.parametrize('name', public_modules())
def test_public_names_have_docstrings(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:          # an optional engine (dask, radical.pilot) is missing
        pytest.skip(f'{name}: {exc}')
    assert module.__doc__, f'{name} has no module docstring'
    assert undocumented(module) == [], f'{name}: no docstring'
