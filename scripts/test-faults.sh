#!/usr/bin/env bash
# The fault matrix (npm run test:faults): every row of test/faults/e2e/fault-matrix.test.ts
# repeated FAULT_REPEAT times (5 by default), then the results table of
# docs/reliability.md is rewritten. Needs root (hosts live in network namespaces).
#   FAULT_REPEAT=1 npm run test:faults
#   FAULT_ROWS=kill-server@switchover,restart-tgtd@precopy npm run test:faults
set -euo pipefail
export MOTUS_LOG_LEVEL=${MOTUS_LOG_LEVEL:-error}
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
[ -d node_modules/.bin ] || npm ci --no-audit --no-fund
npx tsc -b
bash test/guest-kit/build.sh
FAULT_ROWS=${FAULT_ROWS:-all} FAULT_REPEAT=${FAULT_REPEAT:-5} FAULT_REPORT=1 \
  npx mocha --config test/.mocharc.json test/dist/faults/e2e/fault-matrix.test.js
