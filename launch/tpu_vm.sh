#!/usr/bin/env bash
# mdg on a Cloud TPU VM slice: the same command on every worker (host), one JAX process each.
#
#   TPU_NAME=my-tpu ZONE=us-central2-b WORKDIR=/mnt/shared/run1 \
#       launch/tpu_vm.sh configs/ae.py [--config.KEY=VALUE ...]
#
# Each worker needs the code at $REMOTE_DIR with `pip install -e ".[tpu]"` done (for example with
# `gcloud compute tpus tpu-vm ssh ... --worker=all --command="git clone ... && pip install ..."`).
# MDG_DISTRIBUTED=auto makes mdg.sharding.initialize_distributed call jax.distributed.initialize(),
# which finds the workers, their number and its own id in the TPU VM metadata.
# On a multi-host slice WORKDIR and MDG_CACHE must be on storage every worker mounts (e.g. a
# Filestore NFS share): all processes write each checkpoint, and process 0 builds the shards.
set -euo pipefail
TPU_NAME=${TPU_NAME:?set TPU_NAME to the TPU VM name}
ZONE=${ZONE:?set ZONE to the TPU VM zone}
WORKDIR=${WORKDIR:?set WORKDIR to a folder every worker sees}
REMOTE_DIR=${REMOTE_DIR:-mdg}                 # project root on the workers, relative to their home
MDG_CACHE=${MDG_CACHE:-$WORKDIR/cache}
config=${1:?usage: launch/tpu_vm.sh CONFIG [mdg.main flags ...]}
shift

# printf %q quotes every argument so it survives the remote shell unchanged.
remote="cd $(printf %q "$REMOTE_DIR") && MDG_DISTRIBUTED=auto MDG_CACHE=$(printf %q "$MDG_CACHE")"
remote+=" python -m mdg.main --config $(printf %q "$config") --workdir $(printf %q "$WORKDIR")"
if (($#)); then remote+="$(printf ' %q' "$@")"; fi
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$remote"
