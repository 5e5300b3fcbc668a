/**
 * `scripts/operator-env.sh`: an operator's shell takes the deployed function's settings, read
 * from AWS (a fake `aws` here that answers as the CLI does), in the region the settings name.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const SCRIPT = path.join(__dirname, '..', '..', 'scripts', 'operator-env.sh');

/**
 * A fake `aws` that logs its arguments and answers describe-stacks and get-function-configuration;
 * with `outputs` of `'no such stack'`, describe-stacks fails as the CLI does for a stack that
 * does not exist (CloudFormation's ValidationError, exit status 254).
 */
function fakeAws(outputs: unknown, variables: unknown): { dir: string; calls: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flow-metrics-aws-'));
  const calls = path.join(dir, 'calls');
  fs.writeFileSync(path.join(dir, 'outputs.json'), JSON.stringify(outputs));
  fs.writeFileSync(path.join(dir, 'variables.json'), JSON.stringify(variables));
  fs.writeFileSync(
    path.join(dir, 'aws'),
    `#!/bin/bash\necho "$*" >> ${calls}\ncase "$*" in\n  *describe-stacks*) if grep -q '"no such stack"' ${dir}/outputs.json; then echo "An error occurred (ValidationError) when calling the DescribeStacks operation: Stack with id GenesysFlowMetrics does not exist" >&2; exit 254; fi; cat ${dir}/outputs.json;;\n  *get-function-configuration*) cat ${dir}/variables.json;;\n  *) exit 2;;\nesac\n`,
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

test('the shell gets the function\'s environment, the region and the outputs, quoted whatever they hold', () => {
  const aws = fakeAws(
    [
      { OutputKey: 'FunctionName', OutputValue: 'Flows-Function-1' },
      { OutputKey: 'TableName', OutputValue: 'Flows-Ledger-1' },
    ],
    { DD_SITE: 'datadoghq.eu', DD_TAGS: "env:prod,team:o'brien", FLOW_METRICS_RETENTION: '10d', RUST_LOG: 'warn' },
  );
  const result = run({ region: 'ap-southeast-2', stackName: 'Flows' }, aws);
  expect(result.status).toBe(0);
  const shell = spawnSync('bash', ['-c', `${result.stdout}\necho "$AWS_REGION|$DD_SITE|$DD_TAGS|$FLOW_METRICS_RETENTION|$TableName|$STACK|\${RUST_LOG-unset}"`], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
  });
  expect(shell.stdout.trim()).toBe("ap-southeast-2|datadoghq.eu|env:prod,team:o'brien|10d|Flows-Ledger-1|Flows|unset");
  expect(fs.readFileSync(aws.calls, 'utf8')).toBe(
    'cloudformation describe-stacks --region ap-southeast-2 --stack-name Flows --query Stacks[0].Outputs --output json\n' +
      'lambda get-function-configuration --region ap-southeast-2 --function-name Flows-Function-1 --query Environment.Variables --output json\n',
  );
});

test('without settings, with no stack there, or a stack of another version, it says what to do', () => {
  const aws = fakeAws(null, {});
  expect(run(undefined, aws).stderr).toMatch(/settings.json does not exist: write it first \(README, Deploying, step 3\)/);
  expect(run({ region: 'eu-west-1' }, aws).stderr).toMatch(/stack GenesysFlowMetrics has no FunctionName output/);
  const missing = run({ region: 'eu-west-1' }, fakeAws('no such stack', {}));
  expect(missing.status).toBe(1);
  expect(missing.stderr).toMatch(/cannot read stack GenesysFlowMetrics in eu-west-1: is it deployed/);
});
