#!/usr/bin/env bash
# Installs the Debian packages Motus and its tests use (QEMU, storage servers,
# reference clients, tshark, vde2, and what the guest kit is built from).
# Safe to run again: apt-get skips what is already there.
set -euo pipefail
packages=(
  qemu-system-x86 qemu-utils qemu-block-extra   # the hypervisor
  busybox-static cpio gcc libc6-dev             # guest kit (kernel is fetched by test/guest-kit/build.sh)
  tgt libiscsi-bin                              # iSCSI target and reference client
  nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils  # NFS server and reference client
  tshark vde2 iproute2 util-linux               # dissector, reference switch, namespaces, setpriv
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system-deps: all ${#packages[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "install-system-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-system-deps: done"
