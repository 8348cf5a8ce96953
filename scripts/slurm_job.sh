#!/bin/bash
# Run a recipe's stages on a SLURM cluster: this batch script runs the control plane
# (headless) on the first node; each stage's worker is started on every node of the job
# through srun and torchrun, with the first node as the rendezvous point. The stage cache
# and the results must be on a filesystem every node sees (the submit directory here).
#
#   sbatch --nodes=2 --gpus-per-node=4 scripts/slurm_job.sh recipes/xstilts-paper.toml
#   sbatch ... scripts/slurm_job.sh RECIPE deepspeed     # the deepspeed launcher instead
#
# A stopped job resumes when submitted again: finished stages are cached, an unfinished
# one continues from its last resume state.
#SBATCH --job-name=xstilts
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --output=xstilts-%j.log
set -euo pipefail

RECIPE=${1:?usage: sbatch scripts/slurm_job.sh RECIPE.toml [torchrun|deepspeed]}
LAUNCHER=${2:-torchrun}
cd "${SLURM_SUBMIT_DIR:-.}"
PYTHON=${PYTHON:-.venv/bin/python}

NODES=${SLURM_NNODES:-1}
GPUS=${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-1}}
GPUS=${GPUS##*:}  # "h100:4" -> "4"
MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname)}" | head -n 1)
MASTER_PORT=${MASTER_PORT:-29500}

LAUNCH=$(mktemp "${TMPDIR:-/tmp}/xstilts-launch-XXXXXX.toml")
trap 'rm -f "$LAUNCH"' EXIT
if [ "$LAUNCHER" = deepspeed ]; then
  HOSTFILE=$(mktemp "${TMPDIR:-/tmp}/xstilts-hosts-XXXXXX")
  scontrol show hostnames "$SLURM_JOB_NODELIST" | sed "s/\$/ slots=$GPUS/" > "$HOSTFILE"
  cat > "$LAUNCH" <<TOML
[launch]
launcher = "deepspeed"
num_gpus = $GPUS
hostfile = "$HOSTFILE"
master_addr = "$MASTER_ADDR"
master_port = $MASTER_PORT
TOML
else
  cat > "$LAUNCH" <<TOML
[launch]
launcher = "torchrun"
nnodes = $NODES
nproc_per_node = $GPUS
rdzv_endpoint = "$MASTER_ADDR:$MASTER_PORT"
wrapper = ["srun", "--nodes=$NODES", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
TOML
fi

exec "$PYTHON" -m xstilts_tui --recipe "$RECIPE" --launch "$LAUNCH"
