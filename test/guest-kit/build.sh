#!/usr/bin/env bash
# Builds the Motus guest kit: Debian's cloud kernel and a busybox initramfs whose
# /init runs the test workloads (see README.md in this folder).
#
# Output, in build/guest-kit/ at the repository root:
#   vmlinuz, initrd.img, manifest.json, cmdline (the base kernel command line),
#   SHA256SUMS, and cache/ (the kernel package, so a rebuild does not download it).
#
# Idempotent: it rebuilds only when an input changes (the kernel package or its
# version, busybox's version, gcc's version, or this kit's own sources).
# Runs as root, because it may have to refresh apt's package lists.
set -euo pipefail

KIT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$KIT_DIR/../.." && pwd)
OUT="$REPO_ROOT/build/guest-kit"

KERNEL_META_PACKAGE=linux-image-cloud-amd64
BUSYBOX_PACKAGE=busybox-static
# Loaded by /init only when the VM has a virtio PCI device; see README.md.
INITRD_MODULES=(virtio_pci virtio_net virtio_blk)
# ttyS0 is the one console tests read. quiet + loglevel=3 keep kernel chatter out
# of the heartbeat lines; panic=-1 turns a guest crash into a reset, which tests
# see as a new boot id instead of a silent hang.
BASE_CMDLINE="console=ttyS0 quiet loglevel=3 panic=-1"

say() { echo "guest-kit: $*"; }
die() {
  echo "guest-kit: error: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get may need to refresh the package lists): sudo bash test/guest-kit/build.sh"

need_command() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is missing: install the Debian package $2 (bash scripts/install-system-deps.sh installs what the kit needs)"
}
need_command apt-get apt
need_command apt-cache apt
need_command dpkg-deb dpkg
need_command dpkg-query dpkg
need_command gcc gcc
need_command cpio cpio
need_command gzip gzip
need_command flock util-linux
need_command sha256sum coreutils
case "$(gcc -print-file-name=libc.a)" in
  /*) ;;
  *) die "gcc cannot link statically (no libc.a): install the Debian package libc6-dev" ;;
esac

mkdir -p "$OUT/cache"
# Two test runs may start a build at once; the second waits and then finds the kit fresh.
exec 9>"$OUT/.lock"
flock 9

known_to_apt() { apt-cache show --no-all-versions "$1" >/dev/null 2>&1; }
# The meta package only depends on the current ABI's image; that image is the real input.
resolve_kernel_package() {
  apt-cache depends "$KERNEL_META_PACKAGE" 2>/dev/null |
    sed -n 's/^ *Depends: <\{0,1\}\(linux-image-[^ >]*\)>\{0,1\}$/\1/p' | head -n 1 || true
}
kernel_package=$(resolve_kernel_package)
if [ -z "$kernel_package" ]; then
  say "apt cannot resolve $KERNEL_META_PACKAGE yet: running apt-get update"
  apt-get update -qq || die "apt-get update failed"
  kernel_package=$(resolve_kernel_package)
  [ -n "$kernel_package" ] ||
    die "the Debian package $KERNEL_META_PACKAGE (or the linux-image-* it depends on) is not available from the configured apt sources (Debian main is needed)"
fi
kernel_version=$(apt-cache show --no-all-versions "$kernel_package" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1 || true)
[ -n "$kernel_version" ] || die "the Debian package $kernel_package (needed by $KERNEL_META_PACKAGE) is not available from the configured apt sources"

download_package() { # package version folder -> prints the .deb path
  local package=$1 version=$2 folder=$3 deb
  (cd "$folder" && apt-get download -qq -o APT::Sandbox::User=root "$package=$version") >&2 ||
    die "cannot download the Debian package $package ($version)"
  deb=$(ls "$folder/${package}_"*.deb 2>/dev/null | head -n 1 || true)
  [ -n "$deb" ] || die "apt-get download produced no .deb for the Debian package $package"
  echo "$deb"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/motus-guest-kit.XXXXXX")
trap 'rm -rf "$work"' EXIT

# busybox-static is the only busybox usable in an initramfs (the busybox package is dynamic).
busybox_version=$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$BUSYBOX_PACKAGE" 2>/dev/null | sed -n 's/^installed //p' || true)
if [ -n "$busybox_version" ]; then
  busybox_bin=$(dpkg-query -L "$BUSYBOX_PACKAGE" | grep -E '^(/usr)?/bin/busybox$' | head -n 1 || true)
  [ -n "$busybox_bin" ] && [ -x "$busybox_bin" ] || die "the Debian package $BUSYBOX_PACKAGE is installed but its /bin/busybox is missing: reinstall $BUSYBOX_PACKAGE"
else
  known_to_apt "$BUSYBOX_PACKAGE" || die "the Debian package $BUSYBOX_PACKAGE is neither installed nor available from the configured apt sources"
  busybox_version=$(apt-cache show --no-all-versions "$BUSYBOX_PACKAGE" | sed -n 's/^Version: //p' | head -n 1)
  say "$BUSYBOX_PACKAGE is not installed: taking busybox from its package ($busybox_version)"
  mkdir -p "$work/busybox-deb"
  busybox_deb=$(download_package "$BUSYBOX_PACKAGE" "$busybox_version" "$work/busybox-deb")
  dpkg-deb -x "$busybox_deb" "$work/busybox-deb/root"
  busybox_bin="$work/busybox-deb/root/bin/busybox"
  [ -x "$busybox_bin" ] || die "the Debian package $BUSYBOX_PACKAGE holds no bin/busybox"
fi

gcc_version=$(gcc -dumpfullversion)
sources_sha256=$(
  cd "$KIT_DIR"
  find build.sh rootfs src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
)
inputs="kernel=$kernel_package=$kernel_version busybox=$busybox_version gcc=$gcc_version sources=$sources_sha256"
inputs_sha256=$(printf '%s' "$inputs" | sha256sum | cut -d' ' -f1)

if [ -f "$OUT/manifest.json" ] && [ -f "$OUT/SHA256SUMS" ] && [ -f "$OUT/cmdline" ] &&
  grep -q "\"inputsSha256\": \"$inputs_sha256\"" "$OUT/manifest.json" &&
  (cd "$OUT" && sha256sum --quiet --check SHA256SUMS >/dev/null 2>&1); then
  say "up to date ($kernel_package $kernel_version, busybox $busybox_version) in $OUT"
  exit 0
fi
say "building ($inputs)"

kernel_deb="$OUT/cache/${kernel_package}_${kernel_version//:/%3a}_amd64.deb"
if [ ! -f "$kernel_deb" ]; then
  say "downloading $kernel_package $kernel_version"
  mkdir -p "$work/kernel-deb"
  fetched=$(download_package "$kernel_package" "$kernel_version" "$work/kernel-deb")
  rm -f "$OUT/cache/"linux-image-*.deb
  mv "$fetched" "$kernel_deb"
fi
kernel_root="$work/kernel"
dpkg-deb -x "$kernel_deb" "$kernel_root" || die "cannot unpack $kernel_deb (delete it and run again)"
vmlinuz=$(ls "$kernel_root"/boot/vmlinuz-* 2>/dev/null | head -n 1 || true)
[ -n "$vmlinuz" ] || die "the Debian package $kernel_package holds no boot/vmlinuz-*"
kernel_release=${vmlinuz##*/vmlinuz-}
kernel_config="$kernel_root/boot/config-$kernel_release"
[ -f "$kernel_config" ] || die "the Debian package $kernel_package holds no boot/config-$kernel_release"

config_value() { # CONFIG_X -> y | m | n
  local value
  value=$(sed -n "s/^$1=//p" "$kernel_config" | head -n 1 || true)
  echo "${value:-n}"
}
for option in CONFIG_SERIAL_8250_CONSOLE CONFIG_BLK_DEV_INITRD CONFIG_RD_GZIP CONFIG_DEVTMPFS; do
  [ "$(config_value "$option")" = y ] || die "$kernel_package lacks $option=y, which the kit's initramfs needs to boot"
done

# Stage the initramfs tree.
root="$work/initramfs"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,run}
install -m 0755 "$KIT_DIR/rootfs/init" "$root/init"
install -m 0755 "$busybox_bin" "$root/bin/busybox"
for applet in $("$busybox_bin" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
# Without a console node in the initramfs, the kernel starts /init with no stdio.
mknod -m 0600 "$root/dev/console" c 5 1

programs=()
for source in "$KIT_DIR"/src/*.c; do
  name=$(basename "$source" .c)
  gcc -static -O2 -s -Wall -Wextra -Werror -o "$root/bin/motus-$name" "$source" ||
    die "compiling src/$name.c failed (gcc -static needs the Debian package libc6-dev)"
  programs+=("motus-$name")
done

# The whole module tree is indexed once so the closure of what /init loads is exact.
modules_dir="$kernel_root/lib/modules/$kernel_release"
"$busybox_bin" depmod -b "$kernel_root" "$kernel_release"
module_files=()
module_config_json=""
for module in "${INITRD_MODULES[@]}"; do
  line=$(grep -E "^([^:]*/)?$module\.ko(\.[a-z]+)?:" "$modules_dir/modules.dep" || true)
  option="CONFIG_$(echo "$module" | tr '[:lower:]' '[:upper:]')"
  module_config_json+="${module_config_json:+, }\"$option\": \"$(config_value "$option")\""
  if [ -z "$line" ]; then
    # Built into the kernel: nothing to ship.
    [ "$(config_value "$option")" = y ] || die "$kernel_package has $module neither built in nor as a module"
    continue
  fi
  module_files+=("${line%%:*}")
  for dependency in ${line#*:}; do
    module_files+=("$dependency")
  done
done
shipped_modules=()
if [ ${#module_files[@]} -gt 0 ]; then
  for file in $(printf '%s\n' "${module_files[@]}" | LC_ALL=C sort -u); do
    mkdir -p "$root/lib/modules/$kernel_release/$(dirname "$file")"
    cp "$modules_dir/$file" "$root/lib/modules/$kernel_release/$file"
    base=${file##*/}
    shipped_modules+=("${base%%.ko*}")
  done
  "$busybox_bin" depmod -b "$root" "$kernel_release"
fi

# Fixed owners, times and order make the same inputs give the same initrd bytes.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --quiet --null -o -H newc -R 0:0 --reproducible) |
  gzip -9 -n >"$work/initrd.img"
cp "$vmlinuz" "$work/vmlinuz"
echo "$BASE_CMDLINE" >"$work/cmdline"

json_list() { # words -> "a", "b"
  local out="" word
  for word in "$@"; do out+="${out:+, }\"$word\""; done
  echo "$out"
}
(cd "$work" && sha256sum vmlinuz initrd.img cmdline >SHA256SUMS)
vmlinuz_sha256=$(sha256sum "$work/vmlinuz" | cut -d' ' -f1)
initrd_sha256=$(sha256sum "$work/initrd.img" | cut -d' ' -f1)
cat >"$work/manifest.json" <<JSON
{
  "kit": "motus-guest-kit",
  "builtAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "inputsSha256": "$inputs_sha256",
  "sourcesSha256": "$sources_sha256",
  "kernel": {
    "metaPackage": "$KERNEL_META_PACKAGE",
    "package": "$kernel_package",
    "version": "$kernel_version",
    "release": "$kernel_release",
    "config": { $module_config_json },
    "initrdModules": [$(json_list "${shipped_modules[@]}")]
  },
  "busybox": { "package": "$BUSYBOX_PACKAGE", "version": "$busybox_version" },
  "gcc": "$gcc_version",
  "programs": [$(json_list "${programs[@]}")],
  "cmdline": "$BASE_CMDLINE",
  "files": {
    "vmlinuz": { "sha256": "$vmlinuz_sha256", "bytes": $(stat -c %s "$work/vmlinuz") },
    "initrd.img": { "sha256": "$initrd_sha256", "bytes": $(stat -c %s "$work/initrd.img") }
  }
}
JSON

# The manifest goes last: a kit is only fresh when its manifest matches.
rm -f "$OUT/manifest.json"
for file in vmlinuz initrd.img cmdline SHA256SUMS manifest.json; do
  mv "$work/$file" "$OUT/$file"
done
say "built $OUT (kernel $kernel_release from $kernel_package $kernel_version, busybox $busybox_version, initrd $(stat -c %s "$OUT/initrd.img") bytes)"
