#!/usr/bin/env bash
# Multi-node text pretraining with Slurm + torchrun + FSDP2 (see train/README.md).
#
#   sbatch --nodes=16 scripts/slurm_pretrain.sh configs/8B/text_pretrain.toml [--section.key=value …]
#
# One torchrun per node; torchrun starts one process per GPU and they rendezvous at the first
# node (c10d). Resume is automatic: a re-queued job continues from RUN/checkpoints/latest.
#SBATCH --job-name=herd-pretrain
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --exclusive
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

CONFIG=${1:?usage: sbatch scripts/slurm_pretrain.sh CONFIG [overrides…]}
shift
GPUS_PER_NODE=${SLURM_GPUS_ON_NODE:-8}
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=${HERD_MASTER_PORT:-29500}

export OMP_NUM_THREADS=8
export NCCL_ASYNC_ERROR_HANDLING=1
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
mkdir -p logs

# On a pre-emption warning, requeue; the run resumes from its latest complete checkpoint.
trap 'scontrol requeue "$SLURM_JOB_ID"' USR1

srun --kill-on-bad-exit=1 bash -c "
  .venv/bin/torchrun \
    --nnodes=$SLURM_NNODES --nproc-per-node=$GPUS_PER_NODE \
    --rdzv-id=$SLURM_JOB_ID --rdzv-backend=c10d --rdzv-endpoint=$HEAD_NODE:$PORT \
    -m train text-pretrain --config $CONFIG --resume auto $*
" &
wait
