//! Genesys's side of a reconciliation, from its analytics API, with the OAuth client's token
//! that names are fetched with ([`GenesysDirectory::send`]):
//!
//! - milestones and outcomes: `POST /api/v2/analytics/flows/aggregates/query`, `nFlowMilestone`
//!   grouped by `flowId`, `flowMilestoneId`, then `nFlowOutcome` and `nFlowOutcomeFailed`
//!   grouped by `flowId`, `flowOutcomeId`, `flowOutcomeValue`, both timed by `eventTime` (the
//!   milestone's or outcome's own time, as the ledger's keys are);
//! - how far the details go: `GET /api/v2/analytics/conversations/details/jobs/availability`
//!   (`dataAvailabilityDate`), which the scheduled run asks first to choose its hour;
//! - attribute metrics: a conversation details job over the interval
//!   (`POST /api/v2/analytics/conversations/details/jobs`), polled until `FULFILLED`, its
//!   results paged by `cursor`; each participant's `attributes` read with the key grammar.
//!
//! Every field of Genesys's answers is optional in its published schema: a conversation without
//! `conversationId` or a metric without `metric` is skipped and counted ([`Skipped`], which the
//! caller reports); a job answer without `jobId` or `state` is an error saying so.
//!
//! A 429 is waited out as its `Retry-After` says, a few times; any other refusal is an error
//! carrying Genesys's message. The OAuth client's role needs `analytics:flowAggregate:view` and
//! `analytics:conversationDetail:view`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{GenesysKey, GenesysSide, Interval, Skipped, Subject};
use crate::attribute::{Attribute, classify};
use crate::names::genesys::{GenesysDirectory, NameError, message, retry_after};

/// 429s waited out for one request before giving up.
const RATE_LIMITED_ATTEMPTS: u32 = 5;

/// Longest `Retry-After` waited out (a longer one is waited this long).
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why Genesys's side could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(transparent)]
    Client(#[from] NameError),
    #[error("the OAuth client may not {what} (403): give its role the {permission} permission ({message})")]
    Forbidden {
        what: &'static str,
        permission: &'static str,
        message: String,
    },
    #[error("Genesys refused {what} ({status}): {message}")]
    Refused {
        what: &'static str,
        status: u16,
        message: String,
    },
    #[error("Genesys kept rate-limiting {what} (429, {RATE_LIMITED_ATTEMPTS} times); run again later")]
    RateLimited { what: &'static str },
    #[error("Genesys's answer to {what} is not understood: {reason}")]
    Answer { what: &'static str, reason: String },
    #[error("the conversation details job {job} ended {state}: {message}")]
    JobEnded {
        job: String,
        state: String,
        message: String,
    },
    #[error("the conversation details job {job} was not fulfilled within {}s; run again later", waited.as_secs())]
    JobTooSlow { job: String, waited: Duration },
    #[error(
        "the conversation details job {job} was not fulfilled within {}s, all the invocation had \
         left (less {}s to report): reconcile the hour with the command, or raise the function's \
         timeout",
        waited.as_secs(), INVOCATION_RESERVE.as_secs()
    )]
    JobOutlastsInvocation { job: String, waited: Duration },
}

/// Genesys's analytics, asked with an OAuth client.
#[derive(Debug, Clone)]
pub struct GenesysAnalytics {
    directory: GenesysDirectory,
    /// How long a details job may take.
    pub job_deadline: Duration,
}

/// Of an invocation's time, what is kept for reporting after a details job gives up.
pub const INVOCATION_RESERVE: Duration = Duration::from_secs(30);

/// A details job is asked about after this, then twice as long each time, up to [`LONGEST_POLL`]:
/// small intervals are fulfilled within a second or two.
const FIRST_POLL: Duration = Duration::from_millis(250);
const LONGEST_POLL: Duration = Duration::from_secs(5);

/// One request: what it is for (in messages), and the permission it needs.
struct Call {
    what: &'static str,
    permission: &'static str,
}

const AGGREGATES: Call = Call {
    what: "the flow aggregates query",
    permission: "analytics:flowAggregate:view",
};
const AVAILABILITY: Call = Call {
    what: "the details' data availability",
    permission: "analytics:conversationDetail:view",
};
const DETAILS: Call = Call {
    what: "the conversation details job",
    permission: "analytics:conversationDetail:view",
};

#[derive(Deserialize)]
struct AggregateResponse {
    #[serde(default)]
    results: Vec<AggregateResult>,
}

#[derive(Deserialize)]
struct AggregateResult {
    #[serde(default)]
    group: HashMap<String, String>,
    #[serde(default)]
    data: Vec<AggregateData>,
}

#[derive(Deserialize)]
struct AggregateData {
    #[serde(default)]
    metrics: Vec<AggregateMetric>,
}

#[derive(Deserialize)]
struct AggregateMetric {
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    stats: Stats,
}

#[derive(Default, Deserialize)]
struct Stats {
    #[serde(default)]
    count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataAvailability {
    #[serde(default)]
    data_availability_date: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobCreated {
    #[serde(default)]
    job_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobStatus {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultsPage {
    #[serde(default)]
    conversations: Vec<Conversation>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    data_availability_date: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conversation {
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    conversation_end: Option<Timestamp>,
    #[serde(default)]
    participants: Vec<Participant>,
}

#[derive(Deserialize)]
struct Participant {
    #[serde(default)]
    attributes: HashMap<String, String>,
}

impl GenesysAnalytics {
    pub fn new(directory: GenesysDirectory) -> Self {
        GenesysAnalytics {
            directory,
            job_deadline: Duration::from_secs(600),
        }
    }

    /// Everything Genesys counted in `interval`; a details job is waited for up to
    /// [`Self::job_deadline`], and, with an invocation's `deadline`, no later than
    /// [`INVOCATION_RESERVE`] before it.
    pub async fn side(
        &self,
        interval: Interval,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<GenesysSide, AnalyticsError> {
        let mut side = GenesysSide::default();
        side.aggregates = self.flow_aggregates(interval, &mut side.skipped).await?;
        self.conversation_details(interval, deadline, &mut side).await?;
        Ok(side)
    }

    /// How far Genesys's conversation details go (`dataAvailabilityDate`), if it says.
    pub async fn data_availability(&self) -> Result<Option<Timestamp>, AnalyticsError> {
        let path = "/api/v2/analytics/conversations/details/jobs/availability";
        let answer: DataAvailability = self.get(&AVAILABILITY, path, &[]).await?;
        Ok(answer.data_availability_date)
    }

    /// Milestones and outcomes per flow, milestone or outcome, and value.
    async fn flow_aggregates(
        &self,
        interval: Interval,
        skipped: &mut Skipped,
    ) -> Result<BTreeMap<Subject, u64>, AnalyticsError> {
        let query = |group_by: &[&str], metrics: &[&str]| {
            json!({
                "interval": interval.to_string(),
                "groupBy": group_by,
                "metrics": metrics,
                "alternateTimeDimension": "eventTime",
            })
        };
        let mut counts = BTreeMap::new();
        let milestones: AggregateResponse = self
            .post(
                &AGGREGATES,
                "/api/v2/analytics/flows/aggregates/query",
                &query(&["flowId", "flowMilestoneId"], &["nFlowMilestone"]),
            )
            .await?;
        skipped.metrics += nameless(&milestones);
        for result in milestones.results {
            let (Some(flow), Some(milestone)) =
                (result.group.get("flowId"), result.group.get("flowMilestoneId"))
            else {
                continue;
            };
            let subject = Subject {
                source: "milestone",
                flow: flow.clone(),
                metric: milestone.clone(),
                value: None,
            };
            *counts.entry(subject).or_default() += count(&result.data, "nFlowMilestone");
        }
        let outcomes: AggregateResponse = self
            .post(
                &AGGREGATES,
                "/api/v2/analytics/flows/aggregates/query",
                &query(
                    &["flowId", "flowOutcomeId", "flowOutcomeValue"],
                    &["nFlowOutcome", "nFlowOutcomeFailed"],
                ),
            )
            .await?;
        skipped.metrics += nameless(&outcomes);
        for result in outcomes.results {
            let (Some(flow), Some(outcome)) = (result.group.get("flowId"), result.group.get("flowOutcomeId"))
            else {
                continue;
            };
            let subject = |value: &str| Subject {
                source: "outcome",
                flow: flow.clone(),
                metric: outcome.clone(),
                value: Some(value.to_owned()),
            };
            let all = count(&result.data, "nFlowOutcome");
            // Without the value dimension, the failed ones are told apart by their own metric.
            let split = match result.group.get("flowOutcomeValue") {
                Some(value) => vec![(subject(value), all)],
                None => {
                    let failed = count(&result.data, "nFlowOutcomeFailed");
                    vec![
                        (subject("SUCCESS"), all.saturating_sub(failed)),
                        (subject("FAILURE"), failed),
                    ]
                }
            };
            for (subject, count) in split.into_iter().filter(|(_, count)| *count > 0) {
                *counts.entry(subject).or_default() += count;
            }
        }
        Ok(counts)
    }

    /// Attribute metric keys with times in `interval`, from a conversation details job.
    async fn conversation_details(
        &self,
        interval: Interval,
        deadline: Option<tokio::time::Instant>,
        side: &mut GenesysSide,
    ) -> Result<(), AnalyticsError> {
        let jobs = "/api/v2/analytics/conversations/details/jobs";
        let body = json!({"interval": interval.to_string(), "order": "asc", "orderBy": "conversationStart"});
        let job = job_id(self.post::<JobCreated>(&DETAILS, jobs, &body).await?)?;
        let started = tokio::time::Instant::now();
        let left = deadline.map(|deadline| {
            deadline
                .saturating_duration_since(started)
                .saturating_sub(INVOCATION_RESERVE)
        });
        let limit = left.map_or(self.job_deadline, |left| left.min(self.job_deadline));
        let mut poll = FIRST_POLL;
        loop {
            let status: JobStatus = self.get(&DETAILS, &format!("{jobs}/{job}"), &[]).await?;
            let Some(state) = status.state else {
                return Err(AnalyticsError::Answer {
                    what: DETAILS.what,
                    reason: format!("the status of job {job} has no state"),
                });
            };
            match state.as_str() {
                "FULFILLED" => break,
                "QUEUED" | "PENDING" => {}
                _ => {
                    return Err(AnalyticsError::JobEnded {
                        job,
                        state,
                        message: status.error_message.unwrap_or_default(),
                    });
                }
            }
            if started.elapsed() >= limit {
                return Err(if limit < self.job_deadline {
                    AnalyticsError::JobOutlastsInvocation { job, waited: limit }
                } else {
                    AnalyticsError::JobTooSlow { job, waited: limit }
                });
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(LONGEST_POLL);
        }
        let mut cursor: Option<String> = None;
        loop {
            let query: Vec<(&str, &str)> = cursor.iter().map(|cursor| ("cursor", cursor.as_str())).collect();
            let page: ResultsPage = self
                .get(&DETAILS, &format!("{jobs}/{job}/results"), &query)
                .await?;
            match read_page(interval, page, side) {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn post<T: DeserializeOwned>(
        &self,
        call: &Call,
        path: &str,
        body: &Value,
    ) -> Result<T, AnalyticsError> {
        let body = body.to_string();
        self.call(call, &|client, base| {
            client
                .post(format!("{base}{path}"))
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        call: &Call,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, AnalyticsError> {
        self.call(call, &|client, base| {
            let url = format!("{base}{path}");
            // An address that does not parse fails the request itself, saying why.
            client.get(reqwest::Url::parse_with_params(&url, query).map_or(url, String::from))
        })
        .await
    }

    /// Sends a request, waiting out 429s, and reads the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        call: &Call,
        request: &(dyn Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Sync),
    ) -> Result<T, AnalyticsError> {
        for attempt in 1..=RATE_LIMITED_ATTEMPTS {
            let response = self.directory.send(request).await?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS && attempt < RATE_LIMITED_ATTEMPTS {
                let wait = retry_after(&response).unwrap_or(Duration::from_secs(1));
                tracing::info!(
                    what = call.what,
                    wait_s = wait.as_secs(),
                    "Genesys rate-limits; waiting"
                );
                tokio::time::sleep(wait.min(LONGEST_RETRY_AFTER)).await;
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                break;
            }
            if status == StatusCode::FORBIDDEN {
                return Err(AnalyticsError::Forbidden {
                    what: call.what,
                    permission: call.permission,
                    message: message(response).await,
                });
            }
            if !status.is_success() {
                return Err(AnalyticsError::Refused {
                    what: call.what,
                    status: status.as_u16(),
                    message: message(response).await,
                });
            }
            let answer = |reason: String| AnalyticsError::Answer {
                what: call.what,
                reason,
            };
            let body = response
                .text()
                .await
                .map_err(|error| answer(crate::error_text::with_causes(&error)))?;
            return serde_json::from_str(&body).map_err(|error| answer(error.to_string()));
        }
        Err(AnalyticsError::RateLimited { what: call.what })
    }
}

/// The job's id, which the published schema leaves optional.
fn job_id(created: JobCreated) -> Result<String, AnalyticsError> {
    created.job_id.ok_or_else(|| AnalyticsError::Answer {
        what: DETAILS.what,
        reason: "Genesys created the job without saying its jobId".to_owned(),
    })
}

/// A results page's conversations into `side` (those without an id skipped and counted); the
/// next page's cursor, if one follows.
fn read_page(interval: Interval, page: ResultsPage, side: &mut GenesysSide) -> Option<String> {
    if let Some(available) = page.data_availability_date {
        side.available_until = Some(
            side.available_until
                .map_or(available, |until| until.min(available)),
        );
    }
    for conversation in page.conversations {
        let Some(id) = conversation.conversation_id.as_deref() else {
            side.skipped.conversations += 1;
            continue;
        };
        read_keys(interval, id, &conversation, &mut side.keys);
        side.conversation_ends
            .insert(id.to_owned(), conversation.conversation_end);
    }
    page.cursor.filter(|next| !next.is_empty())
}

/// The metrics of an answer that do not say which metric they are.
fn nameless(answer: &AggregateResponse) -> u64 {
    answer
        .results
        .iter()
        .flat_map(|result| &result.data)
        .flat_map(|data| &data.metrics)
        .filter(|metric| metric.metric.is_none())
        .count() as u64
}

/// A metric's count over a result's data (one entry per granularity period).
fn count(data: &[AggregateData], metric: &str) -> u64 {
    data.iter()
        .flat_map(|data| &data.metrics)
        .filter(|found| found.metric.as_deref() == Some(metric))
        .map(|found| found.stats.count)
        .sum()
}

/// The valid metric keys of a conversation's participants whose times are in `interval`, once
/// each (a key shows on every participant that holds it).
fn read_keys(interval: Interval, id: &str, conversation: &Conversation, keys: &mut Vec<GenesysKey>) {
    let mut seen = std::collections::BTreeSet::new();
    for key in conversation
        .participants
        .iter()
        .flat_map(|participant| participant.attributes.keys())
    {
        if let Attribute::Metric(metric) = classify(key)
            && interval.contains(metric.time)
            && seen.insert(key.as_str())
        {
            keys.push(GenesysKey {
                conversation_id: id.to_owned(),
                key: key.clone(),
                flow: metric.flow.to_owned(),
                metric: metric.metric.to_owned(),
                time: metric.time,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour() -> Interval {
        "2026-12-01T10:00:00Z/2026-12-01T11:00:00Z"
            .parse()
            .expect("interval")
    }

    #[test]
    fn a_conversation_without_an_id_is_skipped_and_counted_not_fatal() {
        // Every field is optional in the published schema.
        let page: ResultsPage = serde_json::from_str(
            r#"{"conversations": [
                {"conversationStart": "2026-12-01T10:00:00Z",
                 "participants": [{"attributes": {"IVRMetric_Menu(2026-12-01T10:05:00Z)": "1"}}]},
                {"conversationId": "c2",
                 "participants": [{"attributes": {"IVRMetric_Menu(2026-12-01T10:06:00Z)": "1"}}]}
            ], "cursor": "next"}"#,
        )
        .expect("a page the schema allows");
        let mut side = GenesysSide::default();
        assert_eq!(read_page(hour(), page, &mut side), Some("next".to_owned()));
        assert_eq!(side.skipped.conversations, 1);
        assert_eq!(side.keys.len(), 1);
        assert_eq!(side.keys[0].conversation_id, "c2");
    }

    #[test]
    fn a_metric_without_its_name_is_skipped_and_counted() {
        let answer: AggregateResponse = serde_json::from_str(
            r#"{"results": [{"group": {"flowId": "f1", "flowMilestoneId": "m1"},
                "data": [{"metrics": [{"stats": {"count": 4}}, {"metric": "nFlowMilestone", "stats": {"count": 2}}]}]}]}"#,
        )
        .expect("an answer the schema allows");
        assert_eq!(nameless(&answer), 1);
        assert_eq!(count(&answer.results[0].data, "nFlowMilestone"), 2);
    }

    #[test]
    fn a_job_answer_without_its_id_is_an_error_saying_so() {
        let created: JobCreated = serde_json::from_str("{}").expect("an answer the schema allows");
        let error = job_id(created).expect_err("no id").to_string();
        assert!(error.contains("without saying its jobId"), "{error}");
        let status: JobStatus = serde_json::from_str("{}").expect("an answer the schema allows");
        assert_eq!(status.state, None);
    }
}
