#!/usr/bin/env bash
# The one install step of the README's deploy section: checks the prerequisites, each missing one
# with the command that installs it, then installs the `flow-metrics` command (into ~/.cargo/bin)
# and the cdk app's node modules. `--check` only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

check_only=false
[ "${1:-}" = "--check" ] && check_only=true

missing=0
problem() { printf 'missing: %s\n  fix: %s\n' "$1" "$2" >&2; missing=$((missing + 1)); }
have() { command -v "$1" >/dev/null 2>&1; }
# The major version in the first "N.N" of a command's output.
major() { "$@" 2>&1 | grep -oE '[0-9]+\.[0-9]+' | head -n1 | cut -d. -f1; }
minor() { "$@" 2>&1 | grep -oE '[0-9]+\.[0-9]+' | head -n1 | cut -d. -f2; }

if ! have cargo || ! have rustc; then
  problem "Rust (cargo, rustc)" "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh, then open a new shell"
elif [ "$(major rustc --version)" -lt 1 ] || { [ "$(major rustc --version)" -eq 1 ] && [ "$(minor rustc --version)" -lt 90 ]; }; then
  problem "Rust 1.90 or newer (found $(rustc --version))" "rustup update stable"
fi
if ! have node || ! have npm; then
  problem "Node.js 20 or newer, with npm" "nvm install 20   (or Node.js 20 LTS from your package manager or nodejs.org)"
elif [ "$(major node --version)" -lt 20 ]; then
  problem "Node.js 20 or newer (found $(node --version))" "nvm install 20   (or Node.js 20 LTS from your package manager or nodejs.org)"
fi
if ! have aws; then
  problem "the AWS CLI v2" "see docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
elif [ "$(major aws --version)" -lt 2 ]; then
  problem "the AWS CLI v2 (found $(aws --version 2>&1))" "see docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
fi
if ! have cargo-lambda && ! cargo lambda --version >/dev/null 2>&1; then
  problem "cargo-lambda (builds the function)" "pipx install cargo-lambda && pipx ensurepath   (or: pip3 install --user cargo-lambda)"
elif ! cargo lambda system 2>/dev/null | grep -q '^  command:'; then
  # cargo-lambda links the function with Zig; under pipx it does not see the Zig pip brought.
  problem "Zig, which cargo-lambda builds with" "npm install -g @ziglang/cli   (or: cargo lambda system --setup)"
fi
# The function is built for arm64 unless the settings say x86_64.
settings="${FLOW_METRICS_SETTINGS:-$PWD/cdk/settings.json}"
architecture=$(node -e 'try { console.log(require(process.argv[1]).architecture ?? "arm64") } catch { console.log("arm64") }' "$settings" 2>/dev/null || echo arm64)
if [ "$architecture" = arm64 ] && have rustup && ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  problem "the Rust target for arm64 Lambda functions" \
    "rustup target add aarch64-unknown-linux-gnu   (or set \"architecture\": \"x86_64\" in cdk/settings.json)"
fi

if [ "$missing" -gt 0 ]; then
  printf '%d prerequisite(s) missing: install them, then run scripts/install.sh again\n' "$missing" >&2
  exit 1
fi
echo "prerequisites: all present"
$check_only && exit 0

cargo install --locked --path . --bin flow-metrics
npm ci --prefix cdk --no-audit --no-fund --loglevel=error
if ! have flow-metrics; then
  printf 'installed flow-metrics into %s, which is not on your PATH: add it (export PATH="$HOME/.cargo/bin:$PATH")\n' "${CARGO_HOME:-$HOME/.cargo}/bin" >&2
  exit 1
fi
echo "installed: $(command -v flow-metrics) and cdk/node_modules"
