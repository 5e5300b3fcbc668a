//! A deployment on moto's emulators, shaped as `cdk deploy` makes one: a CloudFormation stack
//! whose outputs bear the cdk app's names (`FunctionName`, `TableName`, `DeadLetterQueueUrl`,
//! `DeadLetterBucketName`, `ApiKeySecretArn`), its function configured with the environment the
//! caller gives it, the dead-letter queue and bucket; and beside it, as the stack expects them,
//! the DataDog key's and the Genesys client's secrets. The ledger table lives on dynalite,
//! tagged with its stack's name as CloudFormation tags everything it creates (moto's
//! CloudFormation tags only EC2 resources).
//!
//! [`deploy_chain`] deploys the whole chain `flow-metrics doctor` walks, all on moto: Genesys's
//! partner event source, the partner bus bearing its name, the rule with the cdk's pattern, the
//! function's log group with the stack's metric filters, and the ledger table in moto's
//! DynamoDB (which keeps a TTL, as dynalite does not), with the outputs naming them.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::config::{BehaviorVersion, Credentials, Region};
use serde_json::{Value, json};

use super::emulator::Moto;

pub const REGION: &str = "eu-west-1";

/// The DataDog API key the deployment's secret holds: the one the fake intake knows.
pub const DATADOG_KEY: &str = super::intake::API_KEY;

/// An SDK configuration for an emulator at `endpoint`.
pub fn emulator_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_cloudformation::config::SharedCredentialsProvider::new(
            Credentials::new("test", "test", None, None, "emulator"),
        ))
        .endpoint_url(endpoint)
        .build()
}

/// Deploys stack `stack` on moto: the function's environment is `variables` (a JSON object whose
/// values are strings, or `{"Ref": "ApiKeySecret"}` / `{"Ref": "GenesysSecret"}` for the secrets'
/// ARNs); `resources` and `outputs` add to the template's. Returns the stack's outputs.
pub async fn deploy(
    moto: &Moto,
    stack: &str,
    variables: Value,
    resources: Value,
    outputs: Value,
) -> BTreeMap<String, String> {
    let config = emulator_config(&moto.endpoint);
    // moto's CloudFormation leaves references in a function's environment unresolved: the
    // secrets are made first, and their ARNs written in.
    let secrets = create_secrets(&config).await;
    let variables: serde_json::Map<String, Value> = variables
        .as_object()
        .expect("variables are an object")
        .iter()
        .map(|(name, value)| {
            let value = match value["Ref"].as_str() {
                Some(secret) => secrets[secret].clone(),
                None => value.clone(),
            };
            (name.clone(), value)
        })
        .collect();
    let mut template = json!({
        "Resources": {
            "FunctionRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
                }}
            },
            "Function": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "provided.al2023",
                    "Handler": "bootstrap",
                    "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]},
                    "Code": {"ZipFile": "bootstrap"},
                    "Environment": {"Variables": variables}
                }
            },
            "DeadLetterQueue": {"Type": "AWS::SQS::Queue"},
            "DeadLetterBucket": {"Type": "AWS::S3::Bucket"}
        },
        "Outputs": {
            "FunctionName": {"Value": {"Ref": "Function"}},
            "TableName": {"Value": variables["FLOW_METRICS_TABLE"].clone()},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "DeadLetterBucketName": {"Value": {"Ref": "DeadLetterBucket"}},
            "ApiKeySecretArn": {"Value": secrets["ApiKeySecret"].clone()}
        }
    });
    for (section, added) in [("Resources", resources), ("Outputs", outputs)] {
        if let Value::Object(added) = added {
            let into = template[section].as_object_mut().expect("a template section");
            into.extend(added);
        }
    }
    let cloudformation = aws_sdk_cloudformation::Client::new(&config);
    cloudformation
        .create_stack()
        .stack_name(stack)
        .template_body(template.to_string())
        .send()
        .await
        .expect("create the stack");
    let described = cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .expect("describe the stack");
    let found = described.stacks().first().expect("the stack");
    assert_eq!(
        found.stack_status().map(|status| status.as_str()),
        Some("CREATE_COMPLETE"),
        "{found:?}"
    );
    found
        .outputs()
        .iter()
        .map(|output| {
            (
                output.output_key().expect("key").to_owned(),
                output.output_value().expect("value").to_owned(),
            )
        })
        .collect()
}

/// The DataDog key's and the Genesys client's secrets: their ARNs by logical name.
async fn create_secrets(config: &aws_config::SdkConfig) -> serde_json::Map<String, Value> {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let genesys = json!({
        "clientId": super::genesys::CLIENT_ID,
        "clientSecret": super::genesys::CLIENT_SECRET,
    })
    .to_string();
    let mut arns = serde_json::Map::new();
    for (name, value) in [
        ("ApiKeySecret", DATADOG_KEY.to_owned()),
        ("GenesysSecret", genesys),
    ] {
        let created = client
            .create_secret()
            .name(format!("flow-metrics/{name}"))
            .secret_string(value)
            .send()
            .await
            .expect("create a secret");
        arns.insert(name.to_owned(), json!(created.arn().expect("an ARN")));
    }
    arns
}

/// Tags table `table` with its stack's name, as CloudFormation tags what it creates.
pub async fn tag_with_stack(dynamodb: &aws_sdk_dynamodb::Client, table: &str, stack: &str) {
    let arn = dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .expect("describe the table")
        .table()
        .and_then(|found| found.table_arn().map(str::to_owned))
        .expect("the table's ARN");
    let tag = aws_sdk_dynamodb::types::Tag::builder()
        .key(flow_metrics::deployment::STACK_NAME_TAG)
        .value(stack)
        .build()
        .expect("a tag");
    dynamodb
        .tag_resource()
        .resource_arn(arn)
        .tags(tag)
        .send()
        .await
        .expect("tag the table");
}

/// The account moto deploys to, which the Genesys integration names.
pub const ACCOUNT: &str = "123456789012";

/// The partner event source Genesys makes for the org; its bus bears its name.
pub const EVENT_SOURCE: &str =
    "aws.partner/genesys.com/cloud/6a3b6c1e-0b4e-4f3e-9a57-2d1f0c8e7a11/flow-metrics";

/// The function's log group.
pub const LOG_GROUP: &str = "/aws/lambda/GenesysFlowMetrics-Function";

/// The stack's own metrics' namespace.
pub const METRICS_NAMESPACE: &str = "GenesysFlowMetrics";

/// Deploys the whole chain of stack `stack` on moto (see the module's doc): `variables` as for
/// [`deploy`], whose `FLOW_METRICS_TABLE` is created in moto's DynamoDB with its TTL. Returns
/// the stack's outputs, `EventBusName`, `RuleName` (`<bus>|<rule>`, as CloudFormation names a
/// rule on a custom bus) and `LogGroupName` among them.
pub async fn deploy_chain(moto: &Moto, stack: &str, variables: Value) -> BTreeMap<String, String> {
    let config = emulator_config(&moto.endpoint);
    // Genesys's integration makes the source, pending until a bus is associated with it.
    aws_sdk_eventbridge::Client::new(&config)
        .create_partner_event_source()
        .name(EVENT_SOURCE)
        .account(ACCOUNT)
        .send()
        .await
        .expect("the partner event source");
    // moto reads a rule's bus name as an ARN, keeping its last path segment: the rules of the
    // partner bus live, in moto, on a bus of that name, which stands beside it for no other use.
    let (_, last_segment) = EVENT_SOURCE.rsplit_once('/').expect("a partner name");
    aws_sdk_eventbridge::Client::new(&config)
        .create_event_bus()
        .name(last_segment)
        .send()
        .await
        .expect("moto's bus for the partner bus's rules");
    let table = variables["FLOW_METRICS_TABLE"]
        .as_str()
        .expect("a table")
        .to_owned();
    flow_metrics::ledger::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&config), &table)
        .await
        .expect("the ledger table");
    let resources = json!({
        "GenesysEventBus": {
            "Type": "AWS::Events::EventBus",
            "Properties": {"Name": EVENT_SOURCE, "EventSourceName": EVENT_SOURCE}
        },
        "AttributesRule": {
            "Type": "AWS::Events::Rule",
            "DependsOn": "GenesysEventBus",
            "Properties": {
                "EventBusName": EVENT_SOURCE,
                "EventPattern": {
                    "source": [EVENT_SOURCE],
                    "detail-type": [flow_metrics::event::ATTRIBUTES_DETAIL_TYPE]
                },
                "State": "ENABLED"
            }
        },
        "FunctionLogs": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": LOG_GROUP, "RetentionInDays": 30}
        }
    });
    let outputs = json!({
        "EventBusName": {"Value": EVENT_SOURCE},
        "RuleName": {"Value": {"Fn::Join": ["|", [EVENT_SOURCE, {"Ref": "AttributesRule"}]]}},
        "LogGroupName": {"Value": {"Ref": "FunctionLogs"}},
        "Paused": {"Value": "no"}
    });
    let outputs = deploy(moto, stack, variables, resources, outputs).await;
    // moto's CloudFormation makes no metric filters: made here as the stack makes them.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let filters = [
        (
            "KeysDelivered",
            "{ $.fields.message = \"invocation\" }",
            "$.fields.keys_counted",
        ),
        (
            "DataDogPushFailures",
            "?\"push failed\" ?\"self-metrics not sent\"",
            "1",
        ),
    ];
    for (metric, pattern, value) in filters {
        let transformation = aws_sdk_cloudwatchlogs::types::MetricTransformation::builder()
            .metric_namespace(METRICS_NAMESPACE)
            .metric_name(metric)
            .metric_value(value)
            .build()
            .expect("a transformation");
        logs.put_metric_filter()
            .log_group_name(LOG_GROUP)
            .filter_name(format!("{stack}-{metric}"))
            .filter_pattern(pattern)
            .metric_transformations(transformation)
            .send()
            .await
            .expect("a metric filter");
    }
    outputs
}
