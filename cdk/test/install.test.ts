/**
 * The deploy section's install step (`scripts/install.sh --check`) on a machine missing
 * prerequisites: each is named with the command that installs it, and nothing is installed.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const SCRIPT = path.join(__dirname, '..', '..', 'scripts', 'install.sh');

/** A PATH holding the machine's tools except those left out, plus fakes (name → output). */
function pathWith(leftOut: string[], fakes: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flow-metrics-path-'));
  for (const tool of ['bash', 'env', 'grep', 'head', 'cut', 'node', 'npm', 'cargo', 'rustc', 'rustup', 'aws', 'cargo-lambda', 'dirname']) {
    if (leftOut.includes(tool) || tool in fakes) continue;
    const found = spawnSync('bash', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    if (found) fs.symlinkSync(found, path.join(dir, tool));
  }
  for (const [tool, output] of Object.entries(fakes)) {
    fs.writeFileSync(path.join(dir, tool), `#!/bin/bash\nprintf '%s\\n' "${output}"\n`, { mode: 0o755 });
  }
  return dir;
}

/** Settings of the test's own: never the developer's cdk/settings.json (which may say x86_64). */
const NO_SETTINGS = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'flow-metrics-settings-')), 'settings.json');

function check(PATH: string) {
  return spawnSync('bash', [SCRIPT, '--check'], { encoding: 'utf8', env: { ...process.env, PATH, FLOW_METRICS_SETTINGS: NO_SETTINGS } });
}

test('missing tools are each named with the command that installs them', () => {
  const result = check(pathWith(['aws', 'cargo-lambda', 'cargo', 'rustc'], { node: 'v18.19.0' }));
  expect(result.status).toBe(1);
  expect(result.stderr).toContain('missing: Rust (cargo, rustc)\n  fix: curl --proto');
  expect(result.stderr).toContain('missing: Node.js 20 or newer (found v18.19.0)');
  expect(result.stderr).toContain('missing: the AWS CLI v2\n  fix: see docs.aws.amazon.com/cli');
  expect(result.stderr).toContain('missing: cargo-lambda (builds the function)\n  fix: pipx install cargo-lambda');
  expect(result.stderr).toMatch(/\d prerequisite\(s\) missing: install them, then run scripts\/install.sh again\n$/);
});

test('version 1 of the AWS CLI is not enough', () => {
  const result = check(pathWith([], { aws: 'aws-cli/1.45.11 Python/3.11.7' }));
  expect(result.stderr).toContain('missing: the AWS CLI v2 (found aws-cli/1.45.11');
});

test('the arm64 build needs its Rust target, or x86_64', () => {
  const result = check(pathWith([], { rustup: '', aws: 'aws-cli/2.31.0', 'cargo-lambda': 'cargo-lambda 1.9.2' }));
  expect(result.stderr).toContain(
    'missing: the Rust target for arm64 Lambda functions\n  fix: rustup target add aarch64-unknown-linux-gnu   (or set "architecture": "x86_64" in cdk/settings.json)',
  );
});

test('cargo-lambda without the Zig it links with is named, with the command that brings it', () => {
  const result = check(pathWith([], { aws: 'aws-cli/2.31.0', 'cargo-lambda': 'zig:\n  install_options:\n  - npm install -g @ziglang/cli' }));
  expect(result.stderr).toContain('missing: Zig, which cargo-lambda builds with\n  fix: npm install -g @ziglang/cli');
  const found = check(pathWith([], { aws: 'aws-cli/2.31.0', 'cargo-lambda': 'zig:\n  command: /usr/bin/zig' }));
  expect(found.stderr).not.toContain('Zig');
});
