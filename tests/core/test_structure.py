"""The shape of the package: no import cycles, small classes, a light engine import.

Read from the source (``ast``), so a cycle made by an import inside a
function counts as much as one at the top of a module.
"""

import ast
import os
import subprocess
import sys

import radical.asyncflow

PACKAGE = 'radical.asyncflow'
ROOT = os.path.dirname(radical.asyncflow.__file__)
#: The most lines a class may span (docstrings and comments included).
MAX_CLASS_LINES = 400


def modules():
    """{module name: path} of every module of the package."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
            rel = rel[:-len('.__init__')] if rel.endswith('__init__') else rel
            found[PACKAGE if rel == '__init__' else f'{PACKAGE}.{rel}'] = path
    return found


def imports_of(module, path, known):
    """The package modules ``module`` imports, anywhere in its code."""
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    is_package = path.endswith('__init__.py')
    base = module if is_package else module.rsplit('.', 1)[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split('.')
                anchor = '.'.join(parts[:len(parts) - node.level + 1])
                source = f'{anchor}.{node.module}' if node.module else anchor
            else:
                source = node.module or ''
            for alias in node.names:
                name = f'{source}.{alias.name}'
                targets.add(name if name in known else source)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return {t for t in targets if t in known and t != module}


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    # a package importing its own submodules (re-exports) is not a cycle of design
    for name in graph:
        graph[name] = {t for t in graph[name] if not (known[name].endswith('__init__.py')
                                                      and t.startswith(name + '.'))}
    assert cycles(graph) == []


def test_no_class_is_longer_than_the_limit():
    too_long = []
    for name, path in modules().items():
        tree = ast.parse(open(path, encoding='utf-8').read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    too_long.append(f'{name}.{node.name}: {lines} lines')
    assert too_long == []


#: The layers of the package, lowest first: a module imports from its own layer
#: and the layers below it only.  The public modules at the top (the
#: package's face, ``workflow_manager`` which puts the engine together, and
#: the re-exports of the contract) are above every layer but the command line.
LAYERS = [
    ('vocabulary', ['errors', 'constants', 'data', 'task', 'radical_compat']),
    ('backends', ['backends']),
    ('core', ['core']),
    ('observability', ['observability']),
    ('campaign', ['campaign']),
    ('assembly', ['workflow_manager', 'logging', 'config']),
    ('cli', ['cli']),
]
#: Layers side by side, which must not import each other either.
SIDE_BY_SIDE = {('observability', 'campaign'), ('campaign', 'observability')}


def layer_of(module):
    rest = module[len(PACKAGE) + 1:] if module != PACKAGE else ''
    top = rest.split('.')[0]
    for index, (layer, tops) in enumerate(LAYERS):
        if top in tops:
            return index, layer
    return None, None


def test_layers_import_only_downwards():
    known = modules()
    wrong = []
    for name, path in known.items():
        index, layer = layer_of(name)
        if index is None:
            continue
        for target in imports_of(name, path, known):
            t_index, t_layer = layer_of(target)
            if t_index is None:
                continue
            if t_index > index or (layer, t_layer) in SIDE_BY_SIDE:
                wrong.append(f'{name} ({layer}) imports {target} ({t_layer})')
    assert wrong == []


def test_the_core_imports_no_optional_layer():
    known = modules()
    wrong = [f'{name} imports {target}'
             for name, path in known.items() if name.startswith(f'{PACKAGE}.core')
             for target in imports_of(name, path, known)
             if not target.startswith((f'{PACKAGE}.core', f'{PACKAGE}.backends.execution.spec',
                                       f'{PACKAGE}.backends.execution.base',
                                       f'{PACKAGE}.backends.execution.legacy',
                                       f'{PACKAGE}.errors', f'{PACKAGE}.data',
                                       f'{PACKAGE}.constants'))]
    assert wrong == []


def test_nothing_outside_the_engine_reads_its_private_attributes():
    """Helpers get what they need when they are made; none reads ``engine._*``."""
    # the engine class and the public class built on it
    engine = (os.path.join(ROOT, 'core', 'engine.py'), os.path.join(ROOT, 'workflow_manager.py'))
    found = []
    for name, path in modules().items():
        if path in engine:
            continue
        tree = ast.parse(open(path, encoding='utf-8').read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith('_') \
                    and not node.attr.startswith('__'):
                holder = node.value
                held = holder.id if isinstance(holder, ast.Name) else \
                    holder.attr if isinstance(holder, ast.Attribute) else ''
                if held in ('engine', '_engine', 'flow', 'instance'):
                    found.append(f'{name}:{node.lineno} {held}.{node.attr}')
    assert found == []


def test_the_engine_imports_no_backend_and_no_cli():
    code = ('import sys, radical.asyncflow.workflow_manager\n'
            'print("\\n".join(m for m in sys.modules if m.startswith("radical.asyncflow")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout.split()
    heavy = [m for m in out if m.split('.')[-1] in (
        'config', 'cli', 'batch', 'concurrent', 'dask_parallel', 'radical_pilot', 'registry')]
    assert heavy == []
