#!/usr/bin/env bash
# System packages the test suite needs beyond the Python ones.  Idempotent
# and quiet; needs root or sudo.
#  - OpenMPI: mpiexec for the RADICAL-Pilot MPI tests, mpicc/headers to build
#    mpi4py (the 'mpi' pip extra).
#  - SLURM + munge for the test clusters of tests/support/slurm_cluster.py
#    (slurmctld, slurmd, the clients, munged) and slurm-wlm-torque (qsub on
#    top of SLURM, for the PBS tests).  Only installed: the test fixture starts
#    and stops the daemons itself (none is enabled or started here).
#  - PMIx (libpmix2): SLURM's mpi/pmix plugin loads it; the multi-node cluster
#    runs MPI tasks with MpiDefault=pmix.  (OpenMPI depends on it too.)
set -euo pipefail

mpi=()
if ! command -v mpiexec >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1; then
    mpi=(openmpi-bin libopenmpi-dev)
fi
if ! compgen -G '/usr/lib/*/libpmix.so.2' >/dev/null && ! [ -e /usr/lib/libpmix.so.2 ]; then
    mpi+=(libpmix2)
fi
slurm=()
for tool in slurmctld slurmd sbatch srun scancel munged qsub; do
    if ! command -v "$tool" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$tool" ]; then
        slurm=(slurmctld slurmd slurm-client munge slurm-wlm-torque)
    fi
done
if [ ${#mpi[@]} -eq 0 ] && [ ${#slurm[@]} -eq 0 ]; then
    exit 0                                      # already installed
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_system.sh: no apt-get here; install ${mpi[*]} ${slurm[*]} yourself" >&2
    exit 0
fi
SUDO=
if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "setup_system.sh: neither root nor sudo; ${mpi[*]} ${slurm[*]} not installed" >&2
        exit 0
    fi
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
if [ ${#mpi[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq "${mpi[@]}" >/dev/null
fi
if [ ${#slurm[@]} -gt 0 ]; then
    # the packages' own services may be refused a start (containers): no matter,
    # the test fixture runs its own daemons
    log=$(mktemp)
    if ! $SUDO apt-get install -y -qq --no-install-recommends "${slurm[@]}" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
fi
