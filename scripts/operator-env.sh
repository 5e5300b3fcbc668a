#!/usr/bin/env bash
# Prints the shell settings of an operator working on the deployed stack, to be evaluated in the
# operator's shell from anywhere in the repository:
#
#     eval "$(scripts/operator-env.sh)"
#
# The deployment's region and stack come from cdk/settings.json; the function's own environment
# (table, DataDog site, key secret, tags, metric names, retention, lease, names settings) is read
# from the deployed function, so that `flow-metrics drain`, `redrive`, `audit` and `replay
# --ledger dynamodb` count exactly as the function does, not as the operator's shell happens to
# be set. It also sets REGION, STACK, and each of the stack's outputs as a variable of its name
# ($FunctionName, $TableName, $LogGroupName, $DeadLetterBucketName, ...).
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
function_name=$(node -e 'const o = JSON.parse(process.argv[1]) || []; const f = o.find((x) => x.OutputKey === "FunctionName"); console.log(f ? f.OutputValue : "")' "$outputs")
if [ -z "$function_name" ]; then
  echo "operator-env: stack $stack has no FunctionName output: deploy this version first" >&2
  exit 1
fi
variables=$(aws lambda get-function-configuration --region "$region" --function-name "$function_name" --query 'Environment.Variables' --output json)

# Each value single-quoted for the shell, whatever it holds.
node - "$region" "$stack" "$outputs" "$variables" <<'JS'
const [region, stack, outputsJson, variablesJson] = process.argv.slice(2);
const quote = (value) => `'${String(value).replace(/'/g, `'\\''`)}'`;
const lines = [`export AWS_REGION=${quote(region)}`, `REGION=${quote(region)}`, `STACK=${quote(stack)}`];
// The log level is the function's own: an operator keeps a readable one.
for (const [key, value] of Object.entries(JSON.parse(variablesJson) || {})) {
  if (key !== 'RUST_LOG') lines.push(`export ${key}=${quote(value)}`);
}
for (const { OutputKey, OutputValue } of JSON.parse(outputsJson) || []) lines.push(`${OutputKey}=${quote(OutputValue)}`);
console.log(lines.join('\n'));
JS
echo "operator-env: $stack in $region, function $function_name: its settings are now this shell's" >&2
