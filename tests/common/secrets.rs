//! A fake Secrets Manager on 127.0.0.1: `GetSecretValue` refused (the caller's role lacks the
//! permission) or answered with the secret's text, as the test sets.

use std::sync::{Arc, Mutex};

use serde_json::json;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The ARN the fake answers for (any ARN is answered alike).
pub const SECRET_ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:genesys-oauth-AbCdEf";

/// Secrets Manager's `GetSecretValue`, answering what the test sets: a refusal (the function's
/// role lacks the permission) or the secret's text.
#[derive(Clone, Default)]
pub struct FakeSecrets(Arc<Mutex<Option<String>>>);

impl Respond for FakeSecrets {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let target = super::request_header(request, "x-amz-target").unwrap_or_default();
        assert_eq!(target, "secretsmanager.GetSecretValue");
        match &*self.0.lock().expect("lock") {
            None => ResponseTemplate::new(400)
                .insert_header("x-amzn-ErrorType", "AccessDeniedException")
                .set_body_raw(
                    json!({
                        "__type": "AccessDeniedException",
                        "Message": "User: arn:aws:sts::123456789012:assumed-role/flow-metrics/fn is not \
                                    authorized to perform: secretsmanager:GetSecretValue"
                    })
                    .to_string(),
                    "application/x-amz-json-1.1",
                ),
            Some(text) => ResponseTemplate::new(200).set_body_raw(
                json!({"ARN": SECRET_ARN, "Name": "genesys-oauth", "SecretString": text}).to_string(),
                "application/x-amz-json-1.1",
            ),
        }
    }
}

impl FakeSecrets {
    pub async fn start(&self) -> (MockServer, aws_sdk_secretsmanager::Client) {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(server.uri())
            .build();
        (server, aws_sdk_secretsmanager::Client::from_conf(config))
    }

    pub fn answer(&self, text: Option<&str>) {
        *self.0.lock().expect("lock") = text.map(str::to_owned);
    }
}
