#!/usr/bin/env bash
# Installs the Debian packages Motus and its tests use (QEMU, storage servers,
# reference clients, tshark, vde2, chromium for the console's browser tests, and
# what the guest kit is built from).
# Safe to run again: apt-get skips what is already there.
set -euo pipefail
# QEMU comes from bookworm-backports on Debian 12: QEMU 7.2 under TCG loses guest
# memory writes in about one migration in four when the guest dirties memory (the
# guest kernel oopses on the destination; measured with the guest kit's dirtier at
# 20 MB/s), 10.0 from backports does not (14 of 14). Newer Debian releases carry a
# fixed QEMU in their main archive.
qemu=(qemu-system-x86 qemu-utils qemu-block-extra)
packages=(
  busybox-static cpio gcc libc6-dev             # guest kit (kernel is fetched by test/guest-kit/build.sh)
  tgt libiscsi-bin                              # iSCSI target and reference client
  sg3-utils                                     # sg_persist: persistent reservations on FC LUNs
  nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils  # NFS server and reference client
  tshark vde2 iproute2 util-linux               # dissector, reference switch, namespaces, setpriv
  ethtool                                       # fault matrix: checksums of the TCP peer's VXLAN device
  chromium                                      # the web console's browser tests (driven by playwright-core)
  openssl                                       # the site CA signs certificates with it
)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
qemu_target=()
if [ "$codename" = bookworm ]; then
  qemu_target=(-t bookworm-backports)
  list=/etc/apt/sources.list.d/motus-bookworm-backports.list
  [ -f "$list" ] || echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee "$list" >/dev/null
fi

installed_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }
missing=()
for p in "${packages[@]}"; do
  [ -n "$(installed_version "$p")" ] || missing+=("$p")
done
qemu_missing=()
for p in "${qemu[@]}"; do
  v=$(installed_version "$p")
  # On bookworm only the backports build will do (see above).
  if [ -z "$v" ] || { [ "$codename" = bookworm ] && [[ "$v" != *bpo* ]]; }; then qemu_missing+=("$p"); fi
done
if [ ${#missing[@]} -eq 0 ] && [ ${#qemu_missing[@]} -eq 0 ]; then
  echo "install-system-deps: all $(( ${#packages[@]} + ${#qemu[@]} )) packages present"
  exit 0
fi
$SUDO apt-get update -qq
if [ ${#qemu_missing[@]} -gt 0 ]; then
  echo "install-system-deps: installing ${qemu[*]} ${qemu_target[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${qemu_target[@]}" "${qemu[@]}" >/dev/null
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-system-deps: installing ${missing[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-system-deps: done"
