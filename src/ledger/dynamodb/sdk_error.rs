//! How a failed DynamoDB request is reported: transient (the same request can succeed later,
//! so the event is retried) or permanent (something must be fixed first), with the service's
//! code and message and the table's name.

use std::error::Error as StdError;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error_text::with_causes;
use crate::ledger::LedgerError;

/// Error codes after which the same request can succeed later.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "ReplicatedWriteConflictException",
];

/// Sorts an SDK error into transient (retry the event later) or permanent (fix something).
pub(super) fn classify_error<E, R>(operation: &'static str, table: &str, error: SdkError<E, R>) -> LedgerError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let message = match error.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("service error"),
            service.message().unwrap_or_default()
        ),
        None => with_causes(&error),
    };
    match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            LedgerError::Transient { operation, message }
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            if TRANSIENT_CODES.contains(&code) {
                LedgerError::Transient { operation, message }
            } else if code == "ResourceNotFoundException" {
                LedgerError::Permanent {
                    operation,
                    message: format!(
                        "table {table} does not exist in this account and region (or is not active): {message}"
                    ),
                }
            } else {
                LedgerError::Permanent {
                    operation,
                    message: format!("on table {table}: {message}"),
                }
            }
        }
        _ => LedgerError::Permanent {
            operation,
            message: format!("on table {table}: {message}"),
        },
    }
}
