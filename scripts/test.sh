#!/usr/bin/env bash
# The test command (npm test): installs what the tests need, builds, then runs the
# unit, integration and end-to-end tiers with mocha. A tier whose real component is
# missing fails with a message saying how to install it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null; then
  bash scripts/install-system-deps.sh
fi
[ -d node_modules ] || npm ci
npx tsc -b
bash test/guest-kit/build.sh
tiers=("${@:-unit integration e2e}")
for tier in ${tiers[@]}; do
  files=$(find test/dist -path "*/$tier/*" -name '*.test.js' | sort)
  if [ -z "$files" ]; then echo "no $tier tests found"; exit 1; fi
  echo "== $tier tests"
  npx mocha --config test/.mocharc.json $files
done
