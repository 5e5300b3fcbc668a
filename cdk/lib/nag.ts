/**
 * cdk-nag's AwsSolutions pack, run over the stack on every synth: a finding that has not been
 * reviewed and acknowledged (with its reason, in the stack) stops the synth.
 */
import { PolicyValidationPluginReport } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { IConstruct } from 'constructs';

export type Finding = PolicyValidationPluginReport['violations'][number];

/** The AwsSolutions findings left in `scope` once acknowledged ones are set aside. */
export function awsSolutionsFindings(scope: IConstruct): Finding[] {
  return new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(scope).violations;
}

export function describeFinding(finding: Finding): string {
  const where = finding.violatingResources.map((resource) => resource.constructPath).join(', ');
  return `${finding.severity} ${finding.ruleName} at ${where}: ${finding.description}`;
}
