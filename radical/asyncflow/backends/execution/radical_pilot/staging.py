"""Data between RADICAL-Pilot tasks: staging directives and sandbox links.

Builds the ``input_staging`` directive that brings one file into a task's
sandbox (from another task's sandbox, a client path or a URL), downloads
http/https/ftp inputs on the client, and writes the shell loop that links a
producer's files into a consumer's sandbox (implicit data).
"""

from __future__ import annotations

import logging
import os
import shutil
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

from ....errors import BackendError, UsageValueError
from ..spec import DataEdge, TaskSpec

log = logging.getLogger('radical.asyncflow.radical')

#: Staging action of inputs the client downloads before the task is submitted.
_FETCH = 'asyncflow.fetch'


def link_from_sandbox(rp: Any, sandbox: str, pilot_sandbox: str, file_name: Optional[str],
                      file_path: Optional[str]) -> Dict[str, Any]:
    """The directive linking a file a task wrote in ``sandbox`` (as ``file_path``) in."""
    relative = file_name
    if file_path and not os.path.isabs(file_path):
        relative = file_path
    target = file_name or os.path.basename(relative)
    return {'source': _sandbox_url(sandbox, pilot_sandbox, relative),
            'target': f'task:///{target}', 'action': rp.LINK}


def stage_from_source(rp: Any, file_name: Optional[str],
                      file_path: Optional[str]) -> Dict[str, Any]:
    """The directive bringing a client path or URL in."""
    source = file_path or file_name
    target = file_name or os.path.basename(urllib.parse.urlparse(source).path)
    directive = {'source': source, 'target': f'task:///{target}',
                 'action': rp.TRANSFER}
    scheme = urllib.parse.urlparse(source).scheme.lower()
    if scheme in ('', 'file'):
        path = urllib.parse.urlparse(source).path if scheme else source
        directive['source'] = f'file://localhost{os.path.abspath(path)}'
    elif scheme in ('http', 'https', 'ftp'):
        directive['source'] = source        # fetched by the client: see fetch
        directive['action'] = _FETCH
    elif scheme in ('pilot', 'task', 'resource', 'endpoint'):
        directive['action'] = rp.COPY
    elif scheme != 'client':
        raise UsageValueError(f'RadicalExecutionBackend cannot stage {source!r}: '
                              f'{scheme}:// URLs are not supported (use a local path, '
                              f'file://, http(s)://, ftp:// or pilot:///)')
    return directive


def _sandbox_url(sandbox: str, pilot: str, relative: str) -> str:
    if pilot and (sandbox + '/').startswith(pilot + '/'):
        return f'pilot:///{os.path.relpath(sandbox, pilot)}/{relative}'
    return f'file://localhost{sandbox}/{relative}'


def fetch(rp: Any, directive: Any, folder: str) -> Any:
    """Download an http/https/ftp input into ``folder`` on the client; stage the copy."""
    if not isinstance(directive, dict) or directive.get('action') != _FETCH:
        return directive
    url = directive['source']
    target = directive['target'].split('task:///', 1)[-1]
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.path.basename(target) or 'download')
    try:
        with urllib.request.urlopen(url, timeout=300) as response, open(path, 'wb') as f:
            shutil.copyfileobj(response, f)
    except Exception as exc:
        raise BackendError(f'could not download {url}: {type(exc).__name__}: {exc}') from exc
    return {**directive, 'source': f'file://localhost{path}', 'action': rp.TRANSFER}


def link_inputs_command(links: List[Tuple[str, str]]) -> str:
    """A shell loop linking the files of other task sandboxes into this one."""
    loops = []
    for sandbox, rp_uid in links:
        quoted = sandbox.replace("'", "'\\''")
        loops.append(
            f"for f in '{quoted}'/*; do [ -e \"$f\" ] && [ ! -L \"$f\" ] || continue; "
            f"b=${{f##*/}}; "
            f"case \"$b\" in {rp_uid}.*) continue;; esac; "
            f"[ -e \"$b\" ] || [ -L \"$b\" ] || ln -s \"$f\" \"$b\"; done")
    return '; '.join(loops)


def task_inputs(rp: Any, tasks: Any, pilot_sandbox: str,
                task: TaskSpec) -> Tuple[List[Tuple[str, str]], List[Dict[str, Any]]]:
    """The sandboxes to link in (implicit data) and the staging directives (files) of ``task``.

    ``tasks`` (a :class:`~.tasks.SubmittedTasks`) knows where the producers
    that ran on this pilot ran.
    """
    links: List[Tuple[str, str]] = []
    staging: List[Dict[str, Any]] = []
    for edge in task.inputs:
        sandbox = tasks.sandbox(edge.source, pilot_sandbox) if edge.source else None
        if edge.implicit:
            if sandbox is None:
                log.debug("task '%s': %s did not run on this pilot; its files are not "
                          'linked in (implicit data stays on its backend)', task.name,
                          edge.source)
                continue
            entry = (sandbox, tasks.rp_uid_of(edge.source))
            if entry not in links:
                links.append(entry)
        elif sandbox is not None:
            staging.append(link_from_sandbox(rp, sandbox, pilot_sandbox, edge.file_name,
                                             edge.file_path))
        else:
            staging.append(_from_client(rp, task, edge))
    return links, staging


def _from_client(rp: Any, task: TaskSpec, edge: DataEdge) -> Dict[str, Any]:
    """A directive for a client path or URL (or a file another backend left there)."""
    if edge.source is not None and not os.path.exists(edge.file_path or ''):
        raise BackendError(
            f"task '{task.name}': its input {edge.file_name!r} was written by "
            f"{edge.source} on backend {edge.source_backend!r}, which shares no file "
            f"system with this pilot: {edge.file_path!r} does not exist on the client")
    return stage_from_source(rp, edge.file_name, edge.file_path)


def capture_stdio(rp: Any, td: Any, folder: str) -> None:
    """Stage a task's stdout and stderr files out into ``folder`` (on success and error)."""
    os.makedirs(folder, exist_ok=True)
    td.stdout, td.stderr = 'stdout', 'stderr'
    td.stage_on_error = True
    td.output_staging = [*(td.output_staging or []), *[
        {'source': f'task:///{name}', 'target': f'file://localhost{folder}/{name}',
         'action': rp.TRANSFER} for name in ('stdout', 'stderr')]]


def export_from_sandbox(sandbox: Optional[str], uid: str, file_path: str) -> str:
    """Make the file ``file_path`` that task ``uid`` wrote in ``sandbox`` appear at
    ``file_path`` on the client (a symbolic link; relative to the current directory).

    The pilot's sandboxes must be on a file system the client sees (a local
    pilot; a cluster's shared file system); if not, BackendError says so.
    """
    if os.path.isabs(file_path):
        if not os.path.exists(file_path):
            raise BackendError(f'{uid} declared {file_path!r}, which does not exist on the '
                               f'client: the pilot does not share this file system')
        return file_path
    source = os.path.join(sandbox or '', file_path)
    if sandbox is None or not os.path.exists(source):
        raise BackendError(
            f'{file_path!r} of {uid} cannot be handed to a task of another backend: '
            + (f'{uid} did not run on this pilot' if sandbox is None else
               f'{source} is not on a file system this client sees'))
    target = os.path.abspath(file_path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(target) or os.path.exists(target):
        if os.path.realpath(target) == os.path.realpath(source):
            return target
        os.remove(target)
    os.symlink(source, target)
    return target
