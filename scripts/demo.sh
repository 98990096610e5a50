#!/usr/bin/env bash
# The quick start's first command (npm run demo): installs what it needs, brings up an
# all-in-one site of two hosts, starts the demo guest on host-a and live-migrates it to
# host-b and back with a progress bar, then shows that the guest never stopped.
# The site stays up afterwards when KEEP=1 (stop it with Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-system-deps.sh
[ -d node_modules/.bin ] || npm ci --no-audit --no-fund
npx tsc -b
bash test/guest-kit/build.sh
state=${MOTUS_STATE:-$root/.motus/demo}
rm -rf "$state"
mkdir -p "$state"
node core/dist/bin/motusd.js --all-in-one --hosts 2 --state "$state" > "$state/motusd.out" 2>&1 &
site=$!
trap 'kill $site 2>/dev/null; wait $site 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [ -f "$state/client.json" ] && break
  kill -0 $site 2>/dev/null || { cat "$state/motusd.out"; exit 1; }
  sleep 0.2
done
[ -f "$state/client.json" ] || { echo "the site did not come up; see $state"; exit 1; }
motus() { node "$root/core/dist/bin/motus.js" --state "$state" "$@"; }
kit=$root/build/guest-kit
echo "== the site"
motus hosts
echo
echo "== starting the demo guest on host-a (heartbeat on its serial console, dirtying 10 MB/s)"
motus vm start demo --host host-a --memory 256 --kernel "$kit/vmlinuz" --initrd "$kit/initrd.img" \
  --append "$(node -e "import('$root/test/dist/support/guest-kit.js').then(m => console.log(m.guestKit().cmdline({ dirtyMBps: 10, workingSetMiB: 32 })))")"
serial() { motus vm list --json | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).find(v=>v.name==='demo').serialLog))"; }
log=$(serial)
for _ in $(seq 1 600); do grep -q 'MOTUS-HB' "$log" 2>/dev/null && break; sleep 0.2; done
echo "guest is up: $(grep 'MOTUS-HB' "$log" | tail -1)"
echo
echo "== live migration host-a -> host-b"
motus migrate demo --to host-b
echo "last heartbeat on host-a: $(grep 'MOTUS-HB' "$log" | tail -1)"
sleep 2
log=$(serial)
echo "first heartbeats on host-b: $(grep -m2 'MOTUS-HB' "$log" | tr '\n' ' ')"
echo
echo "== live migration host-b -> host-a"
motus migrate demo --to host-a
sleep 2
echo
echo "== the guest, still the same boot, on host-a"
motus vm list
echo "$(grep 'MOTUS-HB' "$(serial)" | tail -1)"
echo
echo "== the migrations"
motus migrations
if [ "${KEEP:-0}" = 1 ]; then
  echo
  echo "The site keeps running (state $state). Try: MOTUS_STATE=$state node core/dist/bin/motus.js hosts"
  wait $site
fi
