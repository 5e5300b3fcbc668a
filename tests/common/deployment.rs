//! A deployment on moto's emulators, shaped as `cdk deploy` makes one: a CloudFormation stack
//! whose outputs bear the cdk app's names (`FunctionName`, `TableName`, `DeadLetterQueueUrl`,
//! `DeadLetterBucketName`, `ApiKeySecretArn`), its function configured with the environment the
//! caller gives it, the dead-letter queue and bucket; and beside it, as the stack expects them,
//! the DataDog key's and the Genesys client's secrets. The ledger table lives on dynalite,
//! tagged with its stack's name as CloudFormation tags everything it creates (moto's
//! CloudFormation tags only EC2 resources).

use std::collections::BTreeMap;

use aws_sdk_cloudformation::config::{BehaviorVersion, Credentials, Region};
use serde_json::{Value, json};

use super::emulator::Moto;

pub const REGION: &str = "eu-west-1";

/// The DataDog API key the deployment's secret holds.
pub const DATADOG_KEY: &str = "0123456789abcdef0123456789abcdef";

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
