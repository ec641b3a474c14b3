"""The RADICAL-Pilot resource configs of this package (``asyncflow.slurm``,
``asyncflow.pbs``): pilots that take their nodes from the batch allocation they
run in (or are submitted as batch jobs from a login node).

:func:`install_rp_resource_configs` writes them where RADICAL-Pilot reads user
resource configs; the backend does so before it starts a pilot on one of them.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Mapping, Optional

#: Site of the RADICAL-Pilot resource labels defined here (``asyncflow.slurm``...).
RP_SITE = 'asyncflow'
#: The batch systems with a resource label each.
BATCH_SYSTEMS = ('slurm', 'pbs')


def _rp_config(system: str) -> Dict[str, object]:
    slurm = system == 'slurm'
    return {
        'description': f'A {system.upper()} cluster: from a login node the pilot '
                       f'is a batch job; inside an allocation it starts in place and '
                       f'uses the allocation (radical.asyncflow)',
        'default_schema': 'batch',
        'schemas': {
            'batch': {'job_manager_endpoint': 'slurm://localhost/' if slurm
                      else 'pbspro://localhost/',
                      'filesystem_endpoint': 'file://localhost/'},
            'local': {'job_manager_endpoint': 'fork://localhost/',
                      'filesystem_endpoint': 'file://localhost/'},
        },
        'default_remote_workdir': '$PWD',
        'resource_manager': 'SLURM' if slurm else 'TORQUE',
        'agent_config': 'default',
        'agent_scheduler': 'CONTINUOUS',
        'agent_spawner': 'POPEN',
        'launch_methods': ({'order': ['SRUN'], 'SRUN': {}} if slurm
                           else {'order': ['MPIEXEC'], 'MPIEXEC': {}}),
        'rp_version': 'installed',
        'virtenv_mode': 'local',
        'python_dist': 'default',
        'lfs_path_per_node': '/tmp',
        'lfs_size_per_node': 1024,
    }


#: ``resource_asyncflow.json``: the resources allocation pilots use.
RP_RESOURCE_CONFIGS: Dict[str, Dict[str, object]] = {
    system: _rp_config(system) for system in BATCH_SYSTEMS}
def rp_config_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    """Where RADICAL-Pilot reads user resource configs from."""
    env = os.environ if environ is None else environ
    base = env.get('RADICAL_CONFIG_USER_DIR') or env.get('HOME') or os.path.expanduser('~')
    return os.path.join(base, '.radical', 'pilot', 'configs')


def install_rp_resource_configs(environ: Optional[Mapping[str, str]] = None) -> str:
    """Write ``resource_asyncflow.json`` (if it differs) where RP finds it; its path."""
    path = os.path.join(rp_config_dir(environ), f'resource_{RP_SITE}.json')
    text = json.dumps(RP_RESOURCE_CONFIGS, indent=4, sort_keys=True) + '\n'
    try:
        with open(path, encoding='utf-8') as handle:
            if handle.read() == text:
                return path
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.replace(tmp, path)             # atomic: concurrent jobs never see half a file
    return path
