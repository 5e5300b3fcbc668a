//! Creating the ledger table when it is missing (`replay --create-table`, the emulator tests):
//! on-demand, with the keys and the TTL attribute that `table.json` names.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
};

use super::schema;
use super::sdk_error::classify_error;
use crate::error_text::with_causes;
use crate::ledger::LedgerError;

/// Creates the ledger table (on-demand, keys and TTL as in `table.json`) if it does not exist,
/// and waits until it is active. An emulator without TTL support gets a warning, not an error.
pub async fn create_table(client: &Client, table: &str) -> Result<(), LedgerError> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
    };
    let definition_error = |error: aws_sdk_dynamodb::error::BuildError| LedgerError::Permanent {
        operation: "CreateTable",
        message: error.to_string(),
    };
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(schema::PARTITION_KEY).map_err(definition_error)?)
        .attribute_definitions(attribute(schema::SORT_KEY).map_err(definition_error)?)
        .key_schema(key(schema::PARTITION_KEY, KeyType::Hash).map_err(definition_error)?)
        .key_schema(key(schema::SORT_KEY, KeyType::Range).map_err(definition_error)?)
        .send()
        .await;
    match created {
        Ok(_) => tracing::info!(table, "created the ledger table"),
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) =>
        {
            tracing::info!(table, "the ledger table exists already");
        }
        Err(error) => return Err(classify_error("CreateTable", table, error)),
    }
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(Duration::from_secs(120))
        .await
        .map_err(|error| LedgerError::Permanent {
            operation: "DescribeTable",
            message: format!("table {table} did not become active: {}", with_causes(&error)),
        })?;
    let time_to_live = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(schema::TIME_TO_LIVE)
        .build()
        .map_err(|error| LedgerError::Permanent {
            operation: "UpdateTimeToLive",
            message: error.to_string(),
        })?;
    if let Err(error) = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(time_to_live)
        .send()
        .await
    {
        tracing::warn!(
            table,
            error = %with_causes(&error),
            "could not enable TTL on {}; items will not expire (emulators such as dynalite lack TTL)",
            schema::TIME_TO_LIVE
        );
    }
    Ok(())
}
