//! Link 8: the Genesys names API, when the function names ids (`GENESYS_*` in its settings).
//! The OAuth client is read as the function reads it (its secret, here with the operator's
//! credentials), granted a token, and its role checked for each of the three permissions with
//! one harmless read of each kind's list (`GET /api/v2/flows?pageSize=1`,
//! `/api/v2/flows/milestones?pageSize=1`, `/api/v2/flows/outcomes?pageSize=1`).

use super::calls::PERMISSIONS;
use super::walk::{DEPLOY, Walk};
use super::{Check, Link};
use crate::names::genesys::{Credentials, CredentialsError, GenesysDirectory, NameError, permission};
use crate::names::{CredentialsSource, GenesysConfig, NameKind, NamesConfig};

/// Where a Genesys admin gives a role its permissions.
const ROLES: &str = "Genesys Cloud: Admin → Roles / Permissions → the OAuth client's role";

pub(super) async fn check(walk: &Walk<'_>) -> Vec<Check> {
    let config = match NamesConfig::from_env(&|name| walk.deployment.setting(name)) {
        Ok(config) => config,
        Err(error) => {
            return vec![Check::fail(
                Link::Names,
                "OAuth client",
                format!("the names settings are invalid: {error}"),
                format!(
                    "correct \"genesysRegion\" or \"genesysCredentialsSecretArn\" in cdk/settings.json, then {DEPLOY}"
                ),
            )];
        }
    };
    let Some(genesys) = config.genesys else {
        return vec![Check::pass(
            Link::Names,
            "OAuth client",
            format!(
                "not configured: points carry the ids of flows, milestones and outcomes ({} fixed name(s) in FLOW_METRICS_NAMES)",
                config.fixed.len()
            ),
        )];
    };
    let directory = match directory(walk, &genesys).await {
        Ok(directory) => directory,
        Err(check) => return vec![check],
    };
    if let Err(error) = directory.check_token().await {
        return vec![refused("OAuth client", &error, &genesys, walk)];
    }
    let mut checks = vec![Check::pass(
        Link::Names,
        "OAuth client",
        format!("{} granted it a token", genesys.login_url),
    )];
    let kinds = [NameKind::Flow, NameKind::Milestone, NameKind::Outcome];
    let answers = futures::future::join_all(kinds.map(|kind| directory.check_access(kind))).await;
    for (kind, answer) in kinds.into_iter().zip(answers) {
        checks.push(access(kind, answer, &genesys, walk));
    }
    checks
}

/// The directory the function would use, its OAuth client read from its secret.
async fn directory(walk: &Walk<'_>, genesys: &GenesysConfig) -> Result<GenesysDirectory, Check> {
    let credentials = match &genesys.credentials {
        CredentialsSource::Given(credentials) => credentials.clone(),
        CredentialsSource::SecretArn(arn) => {
            let secrets = aws_sdk_secretsmanager::Client::new(walk.aws);
            Credentials::from_secret(&secrets, arn)
                .await
                .map_err(|error| unreadable(&error, arn, walk))?
        }
    };
    let given = GenesysConfig {
        credentials: CredentialsSource::Given(credentials),
        ..genesys.clone()
    };
    GenesysDirectory::from_config(&given, None)
        .await
        .map_err(|error| {
            Check::fail(
                Link::Names,
                "OAuth client",
                format!("cannot set the Genesys client up: {error}"),
                "run doctor again; the error says what failed",
            )
        })
}

/// The command that stores the OAuth client in its secret.
fn store_client(walk: &Walk<'_>, arn: &str) -> String {
    format!(
        "store the client as the function reads it: aws secretsmanager put-secret-value --region {} --secret-id {arn} --secret-string '{{\"clientId\": \"…\", \"clientSecret\": \"…\"}}' (README, \"Flow milestones and outcomes\")",
        walk.deployment.region
    )
}

/// Why the secret gives no client.
fn unreadable(error: &CredentialsError, arn: &str, walk: &Walk<'_>) -> Check {
    let fix = match error {
        CredentialsError::Read(read) if read.denied() => format!(
            "give your AWS identity secretsmanager:GetSecretValue on {arn} ({PERMISSIONS}), then run doctor again"
        ),
        _ => store_client(walk, arn),
    };
    Check::fail(
        Link::Names,
        "OAuth client",
        format!("cannot read the OAuth client from {arn}: {error}"),
        fix,
    )
}

/// Genesys refused a token (or could not be asked).
fn refused(name: &'static str, error: &NameError, genesys: &GenesysConfig, walk: &Walk<'_>) -> Check {
    let fix = match (error, &genesys.credentials) {
        (NameError::Credentials { .. }, CredentialsSource::SecretArn(arn)) => format!(
            "the clientId and clientSecret in {arn} must be an OAuth client (client credentials) of the org in {}: {}",
            genesys.login_url,
            store_client(walk, arn)
        ),
        (NameError::Credentials { .. }, CredentialsSource::Given(_)) => {
            "GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET must be an OAuth client (client credentials) of the org".to_owned()
        }
        _ => format!("check \"genesysRegion\" in cdk/settings.json names the org's region ({}), then run doctor again", genesys.login_url),
    };
    Check::fail(Link::Names, name, format!("{error}; names stay ids"), fix)
}

/// Whether the client's role may read `kind`.
fn access(kind: NameKind, answer: Result<(), NameError>, genesys: &GenesysConfig, walk: &Walk<'_>) -> Check {
    let name = match kind {
        NameKind::Flow => "read flows",
        NameKind::Milestone => "read milestones",
        NameKind::Outcome => "read outcomes",
    };
    let permission = permission(kind);
    match answer {
        Ok(()) => Check::pass(Link::Names, name, format!("{permission}: granted")),
        Err(NameError::Forbidden { .. }) => Check::fail(
            Link::Names,
            name,
            format!("the OAuth client's role lacks {permission}: {kind} names stay ids"),
            format!("{ROLES}: add the permission {permission}"),
        ),
        Err(error) => refused(name, &error, genesys, walk),
    }
}
