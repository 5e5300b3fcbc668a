/**
 * `scripts/operator-env.sh`: an operator's shell takes the stack's region, name and outputs, read
 * from AWS (a fake `aws` here that answers as the CLI does), in the region the settings name; the
 * function's settings stay the function's (flow-metrics reads them itself, given --stack).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const SCRIPT = path.join(__dirname, '..', '..', 'scripts', 'operator-env.sh');

/**
 * A fake `aws` that logs its arguments and answers describe-stacks; with `outputs` of
 * `'no such stack'`, it fails as the CLI does for a stack that does not exist (CloudFormation's
 * ValidationError, exit status 254).
 */
function fakeAws(outputs: unknown): { dir: string; calls: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flow-metrics-aws-'));
  const calls = path.join(dir, 'calls');
  fs.writeFileSync(path.join(dir, 'outputs.json'), JSON.stringify(outputs));
  fs.writeFileSync(
    path.join(dir, 'aws'),
    `#!/bin/bash\necho "$*" >> ${calls}\ncase "$*" in\n  *describe-stacks*) if grep -q '"no such stack"' ${dir}/outputs.json; then echo "An error occurred (ValidationError) when calling the DescribeStacks operation: Stack with id GenesysFlowMetrics does not exist" >&2; exit 254; fi; cat ${dir}/outputs.json;;\n  *) exit 2;;\nesac\n`,
    { mode: 0o755 },
  );
  return { dir, calls };
}

function run(settings: object | undefined, aws: { dir: string }) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'flow-metrics-settings-')), 'settings.json');
  if (settings) fs.writeFileSync(file, JSON.stringify(settings));
  return spawnSync('bash', [SCRIPT], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${aws.dir}:${process.env.PATH}`, FLOW_METRICS_SETTINGS: file },
  });
}

test('the shell gets the region, the stack and its outputs, quoted whatever they hold, and none of the function\'s settings', () => {
  const aws = fakeAws([
    { OutputKey: 'FunctionName', OutputValue: 'Flows-Function-1' },
    { OutputKey: 'TableName', OutputValue: "Flows-Ledger-o'brien" },
  ]);
  const result = run({ region: 'ap-southeast-2', stackName: 'Flows' }, aws);
  expect(result.status).toBe(0);
  const shell = spawnSync('bash', ['-c', `${result.stdout}\necho "$AWS_REGION|$REGION|$STACK|$FunctionName|$TableName|\${DD_SITE-unset}"`], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
  });
  expect(shell.stdout.trim()).toBe("ap-southeast-2|ap-southeast-2|Flows|Flows-Function-1|Flows-Ledger-o'brien|unset");
  expect(fs.readFileSync(aws.calls, 'utf8')).toBe(
    'cloudformation describe-stacks --region ap-southeast-2 --stack-name Flows --query Stacks[0].Outputs --output json\n',
  );
});

test('without settings, or with no stack there, it says what to do', () => {
  const aws = fakeAws(null);
  expect(run(undefined, aws).stderr).toMatch(/settings.json does not exist: write it first \(README, Deploying, step 3\)/);
  const missing = run({ region: 'eu-west-1' }, fakeAws('no such stack'));
  expect(missing.status).toBe(1);
  expect(missing.stderr).toMatch(/cannot read stack GenesysFlowMetrics in eu-west-1: is it deployed/);
});
