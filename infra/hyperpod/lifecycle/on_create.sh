#!/bin/bash
# pdstack lifecycle script for SageMaker HyperPod (EKS orchestrator). HyperPod runs it once, as root, when it
# creates an instance, from a copy of the lifecycle S3 prefix; a non-zero exit fails the instance and HyperPod
# replaces it.
#
# What it does:
# 1. Logs everything to /var/log/provision/provisioning.log (HyperPod uploads it to CloudWatch).
# 2. Reserves the 2 MiB hugepages the worker pods request (HUGEPAGES_2MI_PAGES from pdstack-node.env, which the stack
#    writes beside this script), before the kubelet (re)starts and reports its hugepages-2Mi capacity.
# 3. Puts containerd's and kubelet's state on the instance-store NVMe (/opt/dlami/nvme, 8 x 3.8 TB on p5), so the
#    ~20 GB serving image and the model cache (pod emptyDirs) do not fill the root EBS volume: the NVMe directories
#    are bind-mounted over /var/lib/containerd and /var/lib/kubelet by systemd mount units (kept across reboots).
#    /etc/containerd/config.toml is never edited: the node bootstrap writes it and may not have written it yet.
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

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NVME=/opt/dlami/nvme
log "start on $(hostname)"

HUGEPAGES_2MI_PAGES=0
if [ -f "$HERE/pdstack-node.env" ]; then
  # shellcheck source=/dev/null
  . "$HERE/pdstack-node.env"
fi
if [ "$HUGEPAGES_2MI_PAGES" -gt 0 ]; then
  log "reserving $HUGEPAGES_2MI_PAGES hugepages of 2 MiB"
  echo "vm.nr_hugepages = $HUGEPAGES_2MI_PAGES" > /etc/sysctl.d/90-pdstack-hugepages.conf
  sysctl -w vm.nr_hugepages="$HUGEPAGES_2MI_PAGES"
fi

for _ in $(seq 1 60); do
  mountpoint -q "$NVME" && break
  sleep 1
done
if ! mountpoint -q "$NVME"; then
  log "$NVME is not mounted after 60 s; containerd and kubelet stay on the root volume"
  systemctl try-restart kubelet || true   # a running kubelet reports the new hugepages only after a restart
  exit 0
fi

systemctl stop kubelet containerd || true

# bind_state DIR UNIT: copy DIR's state onto the NVMe once, then bind-mount it over DIR now and at every boot.
bind_state() {
  local dir=$1 unit=$2
  local target="$NVME/${dir##*/}"
  log "moving $dir to $target"
  mkdir -p "$target" "$dir"
  if ! mountpoint -q "$dir"; then
    cp -a "$dir/." "$target/"
  fi
  printf '%s\n' \
    "[Unit]" \
    "Description=pdstack: $dir on the instance-store NVMe" \
    "RequiresMountsFor=$NVME" \
    "Before=containerd.service kubelet.service" \
    "" \
    "[Mount]" \
    "What=$target" \
    "Where=$dir" \
    "Type=none" \
    "Options=bind" \
    "" \
    "[Install]" \
    "WantedBy=local-fs.target" > "/etc/systemd/system/$unit"
  systemctl daemon-reload
  systemctl enable --now "$unit"
}
bind_state /var/lib/containerd var-lib-containerd.mount
bind_state /var/lib/kubelet var-lib-kubelet.mount

systemctl start containerd
systemctl start kubelet || log "kubelet not started yet (HyperPod starts it after node registration)"
log "done"
