#!/usr/bin/env node
/**
 * The CDK app: `npx cdk deploy` with the settings stored in `settings.json` (see the README);
 * `-c key=value` overrides one and stores it. The stack goes to the account and region the
 * settings name, never to a shell's default. cdk-nag's AwsSolutions checks run on every synth;
 * an unacknowledged error stops it.
 */
import { App } from 'aws-cdk-lib';
import { FlowMetricsStack } from '../lib/flow-metrics-stack';
import { awsSolutionsFindings, describeFinding } from '../lib/nag';
import { appSettings, credentialsMismatch } from '../lib/settings';

const app = new App();
const settings = appSettings((key) => app.node.tryGetContext(key));
// The CLI sets CDK_DEFAULT_ACCOUNT from the credentials it was given: deploying with another
// account's would fail later, and less clearly. (Its CDK_DEFAULT_REGION falls back to us-east-1
// when nothing is configured, so the shell's own variables are compared instead.)
const mismatch = credentialsMismatch(
  settings,
  process.env.CDK_DEFAULT_ACCOUNT,
  process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION,
);
if (mismatch.error) throw new Error(mismatch.error);
if (mismatch.warning) console.error(`warning: ${mismatch.warning}`);
const stack = new FlowMetricsStack(app, settings.stackName, {
  settings,
  description: 'genesys-flow-metrics: Genesys Cloud flow metrics, counted once, to DataDog',
  env: { account: settings.account, region: settings.region },
});
const findings = awsSolutionsFindings(stack);
findings.forEach((finding) => console.error(`cdk-nag: ${describeFinding(finding)}`));
if (findings.some((finding) => finding.severity === 'error')) {
  throw new Error(`cdk-nag found ${findings.length} unacknowledged AwsSolutions finding(s); see above`);
}
