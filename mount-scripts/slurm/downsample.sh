#!/bin/bash
# Downsamples a layer on a SLURM cluster: one job array per level, each level starting when every
# task of the one before succeeded (sbatch --dependency=afterok). Prints the job id of each level.
#
#   downsample.sh DATASET LAYER [TASKS [wkfs downsample options...]]
#   downsample.sh /data/ds color 16 --coarsest 16
#
# SBATCH_OPTIONS adds sbatch options (partition, time, memory) to every array; WKFS names the
# wkfs binary when it is not on PATH.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 DATASET LAYER [TASKS [wkfs downsample options...]]" >&2
    exit 2
fi
dataset=$1 layer=$2 tasks=${3:-4}
shift $(( $# < 3 ? $# : 3 ))
"${WKFS:-wkfs}" downsample "$dataset" "$layer" --print-slurm --tasks "$tasks" "$@" | bash
