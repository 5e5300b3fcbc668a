#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then runs every check.
# This is the README's test command, and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# A partner event source name for synthesizing the stack (nothing is deployed).
EXAMPLE_SOURCE="aws.partner/genesys.com/cloud/6a3b6c1e-0b4e-4f3e-9a57-2d1f0c8e7a11/flow-metrics"
EXAMPLE_SECRET="arn:aws:secretsmanager:eu-west-1:123456789012:secret:datadog-api-key-AbCdEf"
EXAMPLE_GENESYS_SECRET="arn:aws:secretsmanager:eu-west-1:123456789012:secret:genesys-client-AbCdEf"
export CDK_DISABLE_VERSION_CHECK=true

step "tools: dynalite (npm, locked), cargo-lambda, cfn-lint and moto's server (PyPI, pinned), cdk node modules (locked)"
npm ci --prefix tests/emulator --no-audit --no-fund --loglevel=error
python3 -m venv .tools/venv
.tools/venv/bin/pip install --quiet --disable-pip-version-check 'cargo-lambda==1.9.2' 'cfn-lint==1.58.0' 'moto[server]==5.2.5'
export PATH="$PWD/.tools/venv/bin:$PATH"
npm ci --prefix cdk --no-audit --no-fund --loglevel=error

step "formatting"
cargo fmt --all -- --check

step "clippy"
cargo clippy --all-targets --locked -- -D warnings

step "Rust tests"
cargo_log=$(mktemp)
cargo test --locked 2>&1 | tee "$cargo_log"

step "cdk: type check and template tests"
jest_log=$(mktemp)
(cd cdk && npx tsc --noEmit && npx jest --ci --json --outputFile="$jest_log")

step "cdk: real synth with cargo-lambda (x86_64), both modes (queued paused, with flow outcomes, names, split opening hours and the scheduled reconciliation), then cfn-lint"
# Settings of their own: never the developer's cdk/settings.json.
FLOW_METRICS_SETTINGS="$(mktemp -d)/settings.json"
export FLOW_METRICS_SETTINGS
for mode in direct queued; do
  extra=()
  if [ "$mode" = queued ]; then
    extra=(-c flowOutcomes=true -c genesysRegion=mypurecloud.ie -c genesysCredentialsSecretArn="$EXAMPLE_GENESYS_SECRET"
      -c 'names={"e1f0a7c2-5b0e-4c55-9f49-2a7d1c3b8e60":"Customer Routing"}' -c paused=true
      -c 'openingHours=Mon-Fri 08:30-17:45; Sat 09:00-13:00' -c reconcileSchedule=true)
  fi
  (cd cdk && npx cdk synth --no-notices --quiet -o "cdk.out/$mode" \
    -c eventSourceName="$EXAMPLE_SOURCE" -c account=123456789012 -c region=eu-west-1 -c timeZone=Europe/Dublin \
    -c architecture=x86_64 -c mode="$mode" -c alarmEmail=ops@example.com \
    -c apiKeySecretArn="$EXAMPLE_SECRET" "${extra[@]}")
  # W3005: CDK's own DependsOn alongside implicit references.
  cfn-lint --ignore-checks W3005 -- "cdk/cdk.out/$mode/GenesysFlowMetrics.template.json"
done

# One closing line for the whole suite.
node -e '
  const fs = require("fs");
  let passed = 0, failed = 0;
  for (const line of fs.readFileSync(process.argv[1], "utf8").split("\n")) {
    const match = /^test result: \w+\. (\d+) passed; (\d+) failed/.exec(line);
    if (match) { passed += Number(match[1]); failed += Number(match[2]); }
  }
  const jest = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  passed += jest.numPassedTests; failed += jest.numFailedTests;
  console.log(`${passed} passed, ${failed} failed`);
' "$cargo_log" "$jest_log"
rm -f "$cargo_log" "$jest_log"
