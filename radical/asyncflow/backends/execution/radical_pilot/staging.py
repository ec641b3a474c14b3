"""Data between RADICAL-Pilot tasks: staging directives and sandbox links.

Builds the ``input_staging`` directive that brings one file into a task's
sandbox (from another task's sandbox, a client path or a URL), downloads
http/https/ftp inputs on the client, and writes the shell loop that links a
producer's files into a consumer's sandbox (implicit data).
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

from ....errors import BackendError

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
        raise ValueError(f'RadicalExecutionBackend cannot stage {source!r}: '
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
