#!/usr/bin/env bash
# The test command (npm test): installs what the tests need, builds, builds the guest
# kit, then runs the unit, integration and end-to-end tiers with mocha. A tier whose
# real component is missing fails with a message saying how to install it.
# Run one tier with: npm test -- unit   (or integration, e2e)
set -euo pipefail
# Test logs carry errors only, unless asked for more.
export MOTUS_LOG_LEVEL=${MOTUS_LOG_LEVEL:-error}
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
[ -d node_modules/.bin ] || npm ci --no-audit --no-fund
# Type checks every workspace and bundles the web console.
npm run build
bash test/guest-kit/build.sh
tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(unit integration e2e)
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for tier in "${tiers[@]}"; do
  mapfile -t files < <(find test/dist -path "*/$tier/*" -name '*.test.js' | sort)
  if [ ${#files[@]} -eq 0 ]; then
    echo "no $tier tests found under test/dist"
    failed=$((failed + 1))
    continue
  fi
  echo "== $tier tests (${#files[@]} files)"
  set +e
  npx mocha --config test/.mocharc.json "${files[@]}" 2>&1 | tee "$log"
  set -e
  p=$(grep -Eo '^ +[0-9]+ passing' "$log" | grep -Eo '[0-9]+' | tail -1 || true)
  f=$(grep -Eo '^ +[0-9]+ failing' "$log" | grep -Eo '[0-9]+' | tail -1 || true)
  if [ -z "$p" ] && [ -z "$f" ]; then f=1; echo "mocha did not finish the $tier tier"; fi
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
done
echo
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
