#!/usr/bin/env node
/**
 * The CDK app: `npx cdk deploy -c eventSourceName=aws.partner/genesys.com/cloud/<org-id>/<name>`.
 * cdk-nag's AwsSolutions checks run on every synth; an unacknowledged error stops it.
 */
import { App } from 'aws-cdk-lib';
import { FlowMetricsStack } from '../lib/flow-metrics-stack';
import { awsSolutionsFindings, describeFinding } from '../lib/nag';
import { readSettings } from '../lib/settings';

const app = new App();
const settings = readSettings((key) => app.node.tryGetContext(key));
const stack = new FlowMetricsStack(app, String(app.node.tryGetContext('stackName') ?? 'GenesysFlowMetrics'), {
  settings,
  description: 'genesys-flow-metrics: Genesys Cloud flow metrics, counted once, to DataDog',
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
const findings = awsSolutionsFindings(stack);
findings.forEach((finding) => console.error(`cdk-nag: ${describeFinding(finding)}`));
if (findings.some((finding) => finding.severity === 'error')) {
  throw new Error(`cdk-nag found ${findings.length} unacknowledged AwsSolutions finding(s); see above`);
}
