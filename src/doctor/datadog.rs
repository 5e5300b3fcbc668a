//! Link 4: the DataDog API key, read as the function reads it (its secret, with the operator's
//! credentials), then shown to DataDog on the function's site (`GET /api/v1/validate`; the
//! site from `DD_SITE`, or `DD_URL`). A refused key that is not DataDog's form (32 hex digits)
//! is the placeholder the stack generated up to v0.1.0.

use super::calls::PERMISSIONS;
use super::walk::{DEPLOY, Walk};
use super::{Check, Link};
use crate::sink::datadog::validate::{KeyVerdict, validate_key};
use crate::sink::datadog::{ApiKey, ApiKeySource, DataDogConfig};

const NAME: &str = "API key";

pub(super) async fn check(walk: &Walk<'_>) -> Vec<Check> {
    vec![key(walk).await.unwrap_or_else(|check| check)]
}

/// The commands that store a key in the secret and restart the function to read it.
fn store_key(walk: &Walk<'_>, arn: &str) -> String {
    let region = &walk.deployment.region;
    format!(
        "store the key (DataDog: Organization Settings → API Keys) and restart the function, which reads it at cold start:\n\
         printf 'DataDog API key: '; read -rs DD_API_KEY; echo\n\
         aws secretsmanager put-secret-value --secret-id {arn} --region {region} --secret-string \"$DD_API_KEY\"\n\
         aws lambda update-function-configuration --region {region} --function-name {} --description \"key rotated\"",
        walk.deployment.function
    )
}

async fn key(walk: &Walk<'_>) -> Result<Check, Check> {
    let config = DataDogConfig::from_env(&|name| walk.deployment.setting(name)).map_err(|error| {
        Check::fail(
            Link::DataDog,
            NAME,
            format!("cannot check the key: {error}"),
            "correct the function's settings first (link 3)",
        )
    })?;
    let (key, arn) = match &config.api_key {
        ApiKeySource::Key(key) => (key.clone(), "<the secret's ARN>".to_owned()),
        ApiKeySource::SecretArn(arn) => (read_key(walk, arn).await?, arn.clone()),
    };
    let site = &config.base_url;
    let verdict = validate_key(site, &key).await.map_err(|error| {
        Check::fail(
            Link::DataDog,
            NAME,
            format!("cannot check the key: {error}"),
            "run doctor again from a machine that reaches DataDog; the function's own pushes are link 5",
        )
    })?;
    Ok(match verdict {
        KeyVerdict::Valid => Check::pass(
            Link::DataDog,
            NAME,
            format!("DataDog at {site} takes it (GET /api/v1/validate: valid)"),
        ),
        KeyVerdict::Refused { status, message } if !key.has_datadog_form() => Check::fail(
            Link::DataDog,
            NAME,
            format!(
                "DataDog at {site} refused it ({status}: {message}), and it is no DataDog API key (those are 32 hex digits): it is the placeholder the stack generated up to v0.1.0"
            ),
            store_key(walk, &arn),
        ),
        KeyVerdict::Refused { status, message } => Check::fail(
            Link::DataDog,
            NAME,
            format!(
                "DataDog at {site} refused it ({status}: {message}): no organisation of this site has it, or it was revoked"
            ),
            format!(
                "{}\nA key belongs to one DataDog site: if it is another site's, set \"datadogSite\" in cdk/settings.json to that site and {DEPLOY}",
                store_key(walk, &arn)
            ),
        ),
    })
}

/// The key in the secret `arn`, or the failed check saying why it cannot be had.
async fn read_key(walk: &Walk<'_>, arn: &str) -> Result<ApiKey, Check> {
    let secrets = aws_sdk_secretsmanager::Client::new(walk.aws);
    let text = crate::aws::secret_string(&secrets, arn).await.map_err(|error| {
        let fix = if error.denied() {
            format!(
                "give your AWS identity secretsmanager:GetSecretValue on {arn} ({PERMISSIONS}), then run doctor again"
            )
        } else {
            store_key(walk, arn)
        };
        Check::fail(Link::DataDog, NAME, format!("cannot read the secret {arn}: {error}"), fix)
    })?;
    let empty = |what: &str| {
        Check::fail(
            Link::DataDog,
            NAME,
            format!("the secret {arn} holds {what}: the function cannot start"),
            store_key(walk, arn),
        )
    };
    let text = text.ok_or_else(|| empty("no string"))?;
    ApiKey::new(&text).map_err(|_| empty("an empty string"))
}
