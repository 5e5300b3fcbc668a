#!/usr/bin/env bash
# Prints the shell variables of an operator working on the deployed stack, to be evaluated in the
# operator's shell from anywhere in the repository:
#
#     eval "$(scripts/operator-env.sh)"
#
# The deployment's region and stack come from cdk/settings.json: it exports AWS_REGION, and sets
# REGION, STACK and each of the stack's outputs as a variable of its name ($FunctionName,
# $TableName, $LogGroupName, $DeadLetterQueueUrl, ...), for the aws CLI commands of the README.
# The flow-metrics commands need none of it beyond --stack "$STACK": they read the deployed
# function's own settings themselves.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
settings="${FLOW_METRICS_SETTINGS:-$root/cdk/settings.json}"
if [ ! -f "$settings" ]; then
  echo "operator-env: $settings does not exist: write it first (README, Deploying, step 3)" >&2
  exit 1
fi
setting() { node -e 'const s = require(process.argv[1]); const v = s[process.argv[2]]; console.log(v === undefined ? process.argv[3] : v)' "$settings" "$1" "$2"; }
region=$(setting region '')
stack=$(setting stackName GenesysFlowMetrics)
if [ -z "$region" ]; then
  echo "operator-env: $settings has no \"region\" (README, Deploying, step 3)" >&2
  exit 1
fi

if ! outputs=$(aws cloudformation describe-stacks --region "$region" --stack-name "$stack" --query 'Stacks[0].Outputs' --output json); then
  echo "operator-env: cannot read stack $stack in $region: is it deployed (npx cdk deploy in cdk/), and are these the credentials of its account?" >&2
  exit 1
fi
# Each value single-quoted for the shell, whatever it holds.
node - "$region" "$stack" "$outputs" <<'JS'
const [region, stack, outputsJson] = process.argv.slice(2);
const quote = (value) => `'${String(value).replace(/'/g, `'\\''`)}'`;
const lines = [`export AWS_REGION=${quote(region)}`, `REGION=${quote(region)}`, `STACK=${quote(stack)}`];
for (const { OutputKey, OutputValue } of JSON.parse(outputsJson) || []) lines.push(`${OutputKey}=${quote(OutputValue)}`);
console.log(lines.join('\n'));
JS
echo "operator-env: stack $stack in $region: its outputs are now this shell's variables; flow-metrics commands take --stack \"\$STACK\"" >&2
