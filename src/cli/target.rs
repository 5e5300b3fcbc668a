//! Where an operator command works, and with which settings: a deployed stack (its function's
//! own settings), a table (through the stack that created it), or a table no stack created,
//! such as an emulator's, with this shell's environment. A flag overrides one setting, and the
//! command says so; nothing else of the shell is used against a deployment.

use std::sync::Arc;

use anyhow::Context as _;
use aws_config::SdkConfig;
use jiff::SignedDuration;
use tokio::sync::OnceCell;

use crate::aws::AwsSetupError;
use crate::aws::clock::{check_clock, measure_clock_offset};
use crate::config::{ConfigError, duration_setting, process_env};
use crate::deployment::Deployment;
use crate::ledger::dynamodb::DynamoDbNameStore;
use crate::names::genesys::GenesysDirectory;
use crate::names::store::NameStore;
use crate::names::{CredentialsSource, Directory, Names, NamesConfig};
use crate::sink::DataDogSink;
use crate::sink::datadog::{ApiKey, ApiKeySource, DataDogConfig, DataDogSettings, SeriesConfig};

use super::Cli;
use super::shared::SinkKind;

/// The deployment (or table) an operator command works on.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The deployed stack (cdk/settings.json's stackName; GenesysFlowMetrics by default): the
    /// command takes its table, its dead letters and every setting of its function (retention,
    /// lease, DataDog site, key secret, tags and metric names, names) from the deployment.
    #[arg(long)]
    pub stack: Option<String>,

    /// The ledger table (default: the stack's). Alone, the stack that created it gives the
    /// settings; a table no stack created (an emulator's) takes them from this shell's
    /// environment (FLOW_METRICS_*, DD_*, GENESYS_*).
    #[arg(long)]
    pub table: Option<String>,

    /// The deployment's region (default: AWS_REGION, or the AWS profile's).
    #[arg(long)]
    pub region: Option<String>,

    /// An endpoint for every AWS service, such as an emulator's (default: AWS, or
    /// AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>).
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

/// The settings an operator command runs with, and the AWS configuration it calls with (loaded
/// when first needed: a replay in memory may need none).
pub struct Settings {
    aws: OnceCell<SdkConfig>,
    target: TargetArgs,
    deployment: Option<Deployment>,
    table: Option<String>,
}

impl TargetArgs {
    /// Finds the deployment and its settings, saying on stderr where they come from.
    pub async fn settings(&self) -> anyhow::Result<Settings> {
        let shell_table = || process_env("FLOW_METRICS_TABLE").filter(|table| !table.trim().is_empty());
        let named_table = self.table.clone().or_else(shell_table);
        if self.stack.is_none() && named_table.is_none() {
            return Ok(Settings::shell(self.clone()));
        }
        let aws = self.load_aws().await?;
        let deployment = match (&self.stack, named_table) {
            (Some(stack), _) => Some(Deployment::load(&aws, stack).await?),
            (None, None) => None,
            (None, Some(table)) => {
                let dynamodb = crate::aws::dynamodb_client(&aws);
                match Deployment::stack_of_table(&dynamodb, &table).await {
                    Ok(Some(stack)) => Some(Deployment::load(&aws, &stack).await?),
                    Ok(None) => {
                        eprintln!(
                            "settings: this shell's environment (table {table} was created by no \
                             stack; name one with --stack to take a deployment's settings)"
                        );
                        None
                    }
                    Err(error) => {
                        eprintln!("settings: this shell's environment ({error})");
                        None
                    }
                }
            }
        };
        let table = match &deployment {
            None => self.table.clone().or_else(shell_table),
            Some(deployment) => {
                eprintln!(
                    "settings: those of function {} in stack {} ({})",
                    deployment.function, deployment.stack, deployment.region
                );
                note_shell_variables_unused(deployment);
                let deployed = deployment.setting("FLOW_METRICS_TABLE");
                match (&self.table, &deployed) {
                    (Some(given), Some(deployed)) if given != deployed => {
                        eprintln!("override: --table {given} (the deployment's table is {deployed})");
                    }
                    _ => {}
                }
                self.table.clone().or(deployed)
            }
        };
        Ok(Settings {
            aws: OnceCell::new_with(Some(aws)),
            target: self.clone(),
            deployment,
            table,
        })
    }

    async fn load_aws(&self) -> Result<SdkConfig, AwsSetupError> {
        crate::aws::load_config_in(self.endpoint_url.as_deref(), self.region.as_deref()).await
    }
}

/// Variables of this shell that operator commands read beside a deployment's settings.
pub const OPERATOR_VARIABLES: [&str; 1] = ["DD_APP_KEY"];

/// Says which of this shell's settings a deployment's replace, so that nobody believes they apply.
fn note_shell_variables_unused(deployment: &Deployment) {
    let ours = |name: &str| {
        ["FLOW_METRICS_", "DD_", "GENESYS_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
    };
    // The operator's own keys, which no deployment holds.
    let operators = |name: &str| OPERATOR_VARIABLES.contains(&name);
    for (name, value) in std::env::vars().filter(|(name, _)| ours(name) && !operators(name)) {
        if deployment.setting(&name).as_deref() != Some(value.as_str()) {
            eprintln!(
                "note: this shell's {name} is not used: the deployment's settings are (a flag \
                 overrides one)"
            );
        }
    }
}

impl Settings {
    /// This shell's settings, with no deployment or table (a replay in memory, a names check);
    /// AWS, if needed, as `target` says.
    pub fn shell(target: TargetArgs) -> Settings {
        Settings {
            aws: OnceCell::new(),
            target,
            deployment: None,
            table: None,
        }
    }

    /// The AWS configuration (the deployment's region, or the chain's).
    pub async fn aws(&self) -> Result<&SdkConfig, AwsSetupError> {
        self.aws.get_or_try_init(|| self.target.load_aws()).await
    }

    /// The deployment, unless the settings are this shell's.
    pub fn deployment(&self) -> Option<&Deployment> {
        self.deployment.as_ref()
    }

    /// A setting: the deployed function's, or this shell's without a deployment.
    fn value(&self, variable: &str) -> Option<String> {
        match &self.deployment {
            Some(deployment) => deployment.setting(variable),
            None => process_env(variable),
        }
    }

    /// The ledger table.
    pub fn table(&self) -> anyhow::Result<&str> {
        self.table
            .as_deref()
            .context("name the deployment (--stack) or its table (--table, or FLOW_METRICS_TABLE)")
    }

    /// Refuses to go on if this machine's clock is more than
    /// [`MAX_CLOCK_OFFSET`](crate::aws::clock::MAX_CLOCK_OFFSET) off AWS's: a command that
    /// writes to a live table compares its clock with the function's (leases, late keys).
    pub async fn check_clock(&self) -> anyhow::Result<()> {
        let table = self.table()?;
        let offset = measure_clock_offset(&self.dynamodb().await?, table).await?;
        check_clock(&offset)?;
        Ok(())
    }

    /// A DynamoDB client for the table.
    pub async fn dynamodb(&self) -> Result<aws_sdk_dynamodb::Client, AwsSetupError> {
        Ok(crate::aws::dynamodb_client(self.aws().await?))
    }

    /// A duration setting (`variable`), or `flag`'s value when given, said as an override.
    pub fn duration(
        &self,
        variable: &'static str,
        flag: (&str, Option<SignedDuration>),
        default: SignedDuration,
    ) -> Result<SignedDuration, ConfigError> {
        let configured = duration_setting(&|name| self.value(name), variable, default)?;
        let (flag, given) = flag;
        Ok(match given {
            None => configured,
            Some(given) => {
                if given != configured {
                    let whose = if self.deployment.is_some() {
                        "the deployment's"
                    } else {
                        "this shell's"
                    };
                    eprintln!("override: {flag} {given:#} ({whose} {variable} is {configured:#})");
                }
                given
            }
        })
    }

    /// The sink a run that records keys in the table sends to. Against a deployment, DataDog
    /// unless said otherwise; otherwise it must be said, because the table then holds the keys
    /// as delivered, and no later run sends them. Exits with a usage error if it is not.
    pub fn sink(&self, sink: Option<SinkKind>) -> SinkKind {
        let table = self.table.as_deref().unwrap_or("the table");
        let sink = match (sink, &self.deployment) {
            (Some(sink), _) => sink,
            (None, Some(_)) => SinkKind::Datadog,
            (None, None) => {
                use clap::CommandFactory as _;
                Cli::command()
                    .error(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        format!(
                            "--sink is required with a table no stack created: the keys sent are \
                             recorded in {table} as delivered, and no later run sends them again. \
                             Use --sink datadog to count them in DataDog, or --sink stdout to print \
                             them instead (DataDog then never gets them)"
                        ),
                    )
                    .exit()
            }
        };
        if matches!(sink, SinkKind::Stdout) {
            eprintln!(
                "note: --sink stdout records each key it prints as delivered in {table}: DataDog \
                 will not receive them, and no later run will send them"
            );
        }
        sink
    }

    /// The series' names and static tags, as the function names them.
    pub fn series(&self) -> Result<SeriesConfig, ConfigError> {
        SeriesConfig::from_env(&|name| self.value(name))
    }

    /// Where names come from, as the function has them.
    pub fn names_config(&self) -> Result<NamesConfig, ConfigError> {
        NamesConfig::from_env(&|name| self.value(name))
    }

    /// Names of flows, milestones and outcomes as the function has them, sharing the table's
    /// fetched names with it.
    pub async fn names(&self) -> anyhow::Result<Arc<dyn Directory>> {
        self.names_from(self.names_config()?).await
    }

    /// Names as `config` says, with the table's fetched names when it reaches Genesys.
    pub async fn names_from(&self, config: NamesConfig) -> anyhow::Result<Arc<dyn Directory>> {
        let secrets = match config.genesys.as_ref().map(|genesys| &genesys.credentials) {
            Some(CredentialsSource::SecretArn(_)) => {
                Some(aws_sdk_secretsmanager::Client::new(self.aws().await?))
            }
            _ => None,
        };
        let store: Option<Arc<dyn NameStore>> = match (&config.genesys, &self.table) {
            (Some(_), Some(table)) => Some(Arc::new(DynamoDbNameStore::new(self.dynamodb().await?, table))),
            _ => None,
        };
        Ok(Arc::new(
            Names::from_config(&config, secrets.as_ref(), store).await?,
        ))
    }

    /// A client of the Genesys Platform API with the function's OAuth client (read from its
    /// secret), or `None` when names come from FLOW_METRICS_NAMES alone.
    pub async fn genesys_directory(&self, config: &NamesConfig) -> anyhow::Result<Option<GenesysDirectory>> {
        let Some(genesys) = &config.genesys else {
            return Ok(None);
        };
        let secrets = match genesys.credentials {
            CredentialsSource::SecretArn(_) => Some(aws_sdk_secretsmanager::Client::new(self.aws().await?)),
            CredentialsSource::Given(_) => None,
        };
        Ok(Some(
            GenesysDirectory::from_config(genesys, secrets.as_ref()).await?,
        ))
    }

    /// The DataDog sink as the function sends: its site, key, tags, metric names and compression.
    pub async fn datadog_sink(&self) -> anyhow::Result<DataDogSink> {
        Ok(DataDogSink::new(self.datadog().await?)?)
    }

    /// The function's DataDog settings, with its API key (read from its secret).
    pub async fn datadog(&self) -> anyhow::Result<DataDogSettings> {
        let config = DataDogConfig::from_env(&|name| self.value(name))?;
        let api_key = match &config.api_key {
            ApiKeySource::Key(key) => key.clone(),
            ApiKeySource::SecretArn(arn) => {
                ApiKey::from_secret(&aws_sdk_secretsmanager::Client::new(self.aws().await?), arn).await?
            }
        };
        Ok(config.with_key(api_key))
    }
}
