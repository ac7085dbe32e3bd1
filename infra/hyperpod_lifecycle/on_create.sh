#!/bin/bash
# pdstack lifecycle script for SageMaker HyperPod (EKS orchestrator). HyperPod runs it once, as root, when it
# creates an instance; a non-zero exit fails the instance and HyperPod replaces it.
#
# What it does:
# 1. Logs everything to /var/log/provision/provisioning.log (HyperPod uploads it to CloudWatch).
# 2. Puts containerd's and kubelet's state on the instance-store NVMe (/opt/dlami/nvme, 8 x 3.8 TB on p5), so the
#    ~20 GB serving image and the model cache (pod emptyDirs) do not fill the root EBS volume.
set -euo pipefail

LOG=/var/log/provision/provisioning.log
mkdir -p "$(dirname "$LOG")"
exec > >(tee -a "$LOG") 2>&1

log() { echo "[pdstack on_create $(date -u +%FT%TZ)] $*"; }
fail() {
  log "FAILED at line $1"
  sync
  sleep 60   # give the log agent time to upload the failure before HyperPod replaces the instance
  exit 1
}
trap 'fail $LINENO' ERR

NVME=/opt/dlami/nvme
log "start on $(hostname)"

for _ in $(seq 1 60); do
  mountpoint -q "$NVME" && break
  sleep 1
done
if ! mountpoint -q "$NVME"; then
  log "$NVME is not mounted after 60 s; containerd and kubelet stay on the root volume"
  exit 0
fi

log "moving containerd state to $NVME/containerd"
systemctl stop kubelet containerd || true
mkdir -p "$NVME/containerd" "$NVME/kubelet"
if [ -d /var/lib/containerd ] && [ ! -L /var/lib/containerd ]; then
  cp -a /var/lib/containerd/. "$NVME/containerd/"
fi
# containerd reads its state root from its config; point it at the NVMe with a drop-in, not an edit of the AMI's file.
CONFIG=$(systemctl show -p ExecStart containerd | grep -o -- '--config [^ ;]*' | awk '{print $2}' || true)
CONFIG=${CONFIG:-/etc/containerd/config.toml}
if grep -q '^root *=' "$CONFIG"; then
  sed -i "s|^root *=.*|root = \"$NVME/containerd\"|" "$CONFIG"
else
  sed -i "1i root = \"$NVME/containerd\"" "$CONFIG"
fi

log "moving kubelet state to $NVME/kubelet"
if [ -d /var/lib/kubelet ] && [ ! -L /var/lib/kubelet ]; then
  cp -a /var/lib/kubelet/. "$NVME/kubelet/"
  rm -rf /var/lib/kubelet
fi
ln -sfn "$NVME/kubelet" /var/lib/kubelet

systemctl daemon-reload
systemctl start containerd
systemctl start kubelet || log "kubelet not started yet (HyperPod starts it after node registration)"
log "done"
