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
#  - Chromium: tests/observability/test_report.py opens report.html in it, headless
#    (tests/support/browser.py starts and stops it); without its other recommended
#    packages (avahi, udev, ...), which a headless browser does not use.
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
browser=()
if ! command -v chromium >/dev/null 2>&1 || ! [ -d /usr/share/fonts/truetype/liberation ]; then
    browser=(chromium fonts-liberation)     # a font, for readable screenshots
fi
if [ ${#mpi[@]} -eq 0 ] && [ ${#slurm[@]} -eq 0 ] && [ ${#browser[@]} -eq 0 ]; then
    exit 0                                      # already installed
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_system.sh: no apt-get here; install ${mpi[*]} ${slurm[*]} ${browser[*]} yourself" >&2
    exit 0
fi
SUDO=
if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "setup_system.sh: neither root nor sudo; ${mpi[*]} ${slurm[*]} ${browser[*]} not installed" >&2
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
if [ ${#browser[@]} -gt 0 ]; then
    log=$(mktemp)
    if ! $SUDO apt-get install -y -qq --no-install-recommends "${browser[@]}" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
fi
