#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then runs every check.
# This is the README's test command, and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "DynamoDB emulator for the tests (dynalite, from tests/emulator/package-lock.json)"
npm ci --prefix tests/emulator --no-audit --no-fund --loglevel=error

step "cargo-lambda (PyPI, pinned) for the Lambda end-to-end test"
python3 -m venv .tools/venv
.tools/venv/bin/pip install --quiet --disable-pip-version-check 'cargo-lambda==1.9.2'
export PATH="$PWD/.tools/venv/bin:$PATH"

step "formatting"
cargo fmt --all -- --check

step "clippy"
cargo clippy --all-targets --locked -- -D warnings

step "Rust tests"
log=$(mktemp)
cargo test --locked 2>&1 | tee "$log"
# One closing line for the whole suite.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
rm -f "$log"
