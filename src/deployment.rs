//! The deployed stack as operator commands find it: its CloudFormation outputs, and its
//! function's environment, which holds every setting the function runs with. Operator commands
//! take their settings from here rather than from the operator's shell, so that they count as the
//! function does; a table alone leads here too, through the stack tag CloudFormation puts on
//! everything it creates.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_cloudformation::error::ProvideErrorMetadata as _;

use crate::error_text::with_causes;

/// The tag CloudFormation gives every resource it creates, naming its stack.
pub const STACK_NAME_TAG: &str = "aws:cloudformation:stack-name";

/// Why the deployment could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error(
        "stack {stack} does not exist in {region}: deploy it (npx cdk deploy in cdk/), or name the \
         stack and region it was deployed to (--stack, --region)"
    )]
    StackNotFound { stack: String, region: String },
    #[error("cannot read stack {stack} in {region}: {reason}")]
    Stack {
        stack: String,
        region: String,
        reason: String,
    },
    #[error(
        "stack {stack} has no {output} output: it was deployed by an older version; deploy this \
         one (npx cdk deploy in cdk/)"
    )]
    MissingOutput { stack: String, output: &'static str },
    #[error("cannot read the configuration of function {function}: {reason}")]
    Function { function: String, reason: String },
    #[error("cannot read the tags of table {table}: {reason}")]
    TableTags { table: String, reason: String },
}

/// A deployed stack: its outputs and its function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub stack: String,
    pub region: String,
    /// The AWS account it is deployed in (from its function's ARN).
    pub account: String,
    /// The function's name (the stack's `FunctionName` output).
    pub function: String,
    outputs: BTreeMap<String, String>,
    settings: BTreeMap<String, String>,
}

impl Deployment {
    /// Reads stack `stack`'s outputs and its function's environment.
    pub async fn load(aws: &SdkConfig, stack: &str) -> Result<Deployment, DeploymentError> {
        let region = aws.region().map(ToString::to_string).unwrap_or_default();
        let described = aws_sdk_cloudformation::Client::new(aws)
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|error| {
                // CloudFormation answers a missing stack with a ValidationError saying so.
                let missing = error
                    .as_service_error()
                    .and_then(|service| service.message())
                    .is_some_and(|message| message.contains("does not exist"));
                if missing {
                    DeploymentError::StackNotFound {
                        stack: stack.to_owned(),
                        region: region.clone(),
                    }
                } else {
                    DeploymentError::Stack {
                        stack: stack.to_owned(),
                        region: region.clone(),
                        reason: with_causes(&error),
                    }
                }
            })?;
        let outputs: BTreeMap<String, String> = described
            .stacks()
            .first()
            .map(|found| found.outputs())
            .unwrap_or_default()
            .iter()
            .filter_map(|output| Some((output.output_key()?.to_owned(), output.output_value()?.to_owned())))
            .collect();
        let function =
            outputs
                .get("FunctionName")
                .cloned()
                .ok_or_else(|| DeploymentError::MissingOutput {
                    stack: stack.to_owned(),
                    output: "FunctionName",
                })?;
        let configuration = aws_sdk_lambda::Client::new(aws)
            .get_function_configuration()
            .function_name(&function)
            .send()
            .await
            .map_err(|error| DeploymentError::Function {
                function: function.clone(),
                reason: with_causes(&error),
            })?;
        // arn:aws:lambda:<region>:<account>:function:<name>
        let account = configuration
            .function_arn()
            .and_then(|arn| arn.split(':').nth(4))
            .unwrap_or_default()
            .to_owned();
        let settings = configuration
            .environment()
            .and_then(|environment| environment.variables())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok(Deployment {
            stack: stack.to_owned(),
            region,
            account,
            function,
            outputs,
            settings,
        })
    }

    /// The stack that created table `table`, from the tag CloudFormation puts on it; `None` for
    /// a table no stack created.
    pub async fn stack_of_table(
        dynamodb: &aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Result<Option<String>, DeploymentError> {
        let failed = |reason: String| DeploymentError::TableTags {
            table: table.to_owned(),
            reason,
        };
        let described = dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|error| failed(with_causes(&error)))?;
        let Some(arn) = described.table().and_then(|found| found.table_arn()) else {
            return Ok(None);
        };
        let tags = dynamodb
            .list_tags_of_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|error| failed(with_causes(&error)))?;
        Ok(tags
            .tags()
            .iter()
            .find(|tag| tag.key() == STACK_NAME_TAG)
            .map(|tag| tag.value().to_owned()))
    }

    /// One of the stack's outputs.
    pub fn output(&self, name: &str) -> Option<&str> {
        self.outputs.get(name).map(String::as_str)
    }

    /// One of the function's settings (an environment variable of the deployed function).
    pub fn setting(&self, variable: &str) -> Option<String> {
        self.settings.get(variable).cloned()
    }

    /// The function's settings, by variable.
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }
}
