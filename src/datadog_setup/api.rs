//! DataDog's management API, as its published specification describes the endpoints `apply`
//! uses: dashboards (`/api/v1/dashboard`), monitors (`/api/v1/monitor`), downtimes
//! (`/api/v2/downtime`) and metric tag configurations (`/api/v2/metrics/{metric}/tags`). Every
//! request carries both keys (`DD-API-KEY`, `DD-APPLICATION-KEY`, headers marked sensitive).
//!
//! A 429 is waited out as DataDog says (`X-RateLimit-Reset`, seconds) and asked again; reads are
//! retried on a 5xx or a broken connection, writes are not (a create answered 5xx may have been
//! made: the next `apply` finds it). A 403 names the permission the application key lacks.

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::error_text::with_causes;
use crate::sink::datadog::{ApiKey, USER_AGENT, rate_limit_wait};

/// Longest wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of one request (429s, and 5xx on reads).
const ATTEMPTS: u32 = 5;
/// Longest a 429 is waited out at once.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// Items asked per page of a list.
const PAGE_SIZE: usize = 100;

/// A DataDog application key: what the management API needs beside the API key. Printing it
/// shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct AppKey(String);

impl AppKey {
    /// A key given as text; `None` when empty.
    pub fn new(key: &str) -> Option<AppKey> {
        let key = key.trim();
        (!key.is_empty()).then(|| AppKey(key.to_owned()))
    }
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppKey(***)")
    }
}

/// What a request was for, and the permission DataDog requires for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub what: &'static str,
    pub permission: &'static str,
}

/// Why DataDog did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("DataDog refused to {} ({status}: {message}): the application key, or its user's role, lacks the permission {}", .action.what, .action.permission)]
    Forbidden {
        action: Action,
        status: u16,
        message: String,
    },
    #[error("DataDog found nothing to {} (404: {message})", .action.what)]
    NotFound { action: Action, message: String },
    #[error("DataDog refused the request to {} ({status}: {message})", .action.what)]
    Refused {
        action: Action,
        status: u16,
        message: String,
    },
    #[error("DataDog is still rate-limiting requests to {} after {ATTEMPTS} attempts (429): run apply again in a few minutes", .action.what)]
    RateLimited { action: Action },
    #[error("DataDog answered {status} to the request to {}: {message}", .action.what)]
    Status {
        action: Action,
        status: u16,
        message: String,
    },
    #[error("cannot reach DataDog at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("DataDog's answer to the request to {} is not what its specification describes: {reason}", .action.what)]
    Unexpected { action: Action, reason: String },
    #[error("the DataDog {0} holds characters a header cannot carry")]
    UnusableKey(&'static str),
}

/// A client of DataDog's management API on one site.
#[derive(Debug, Clone)]
pub struct DataDogApi {
    http: reqwest::Client,
    base_url: String,
    keys: HeaderMap,
}

/// What a page of a list is asked with.
enum Paging {
    /// `page` (from 0) and `page_size`: monitors.
    Pages,
    /// `start` (an offset) and `count`: dashboards.
    Offset,
    /// `page[offset]` and `page[limit]`: downtimes.
    JsonApi,
}

impl DataDogApi {
    /// A client of the API at `base_url` (`https://api.<site>`, or `DD_URL`).
    pub fn new(base_url: &str, api_key: &ApiKey, app_key: &AppKey) -> Result<DataDogApi, ApiError> {
        let mut keys = HeaderMap::new();
        for (header, value, name) in [
            ("DD-API-KEY", api_key.expose(), "API key"),
            ("DD-APPLICATION-KEY", app_key.0.as_str(), "application key"),
        ] {
            let mut value = HeaderValue::from_str(value).map_err(|_| ApiError::UnusableKey(name))?;
            value.set_sensitive(true);
            keys.insert(header, value);
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| ApiError::Unreachable {
                url: base_url.to_owned(),
                reason: with_causes(&error),
            })?;
        Ok(DataDogApi {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            keys,
        })
    }

    /// One request, answered with its status and JSON body (`Null` when empty). 429s are
    /// waited out; a read is asked again after a 5xx or a broken connection.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        action: Action,
    ) -> Result<(StatusCode, Value), ApiError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base_url)).map_err(|error| {
            ApiError::Unreachable {
                url: format!("{}{path}", self.base_url),
                reason: error.to_string(),
            }
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let body = body.map(Value::to_string);
        let read = method == Method::GET;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(self.keys.clone())
                .header(ACCEPT, "application/json");
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) if read && attempt < ATTEMPTS && !error.is_builder() => {
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(error) => {
                    return Err(ApiError::Unreachable {
                        url: url.to_string(),
                        reason: with_causes(&error.without_url()),
                    });
                }
            };
            let status = response.status();
            let wait = rate_limit_pause(response.headers());
            let text = response.text().await.unwrap_or_default();
            let message = || message_of(&text);
            match status.as_u16() {
                200..=299 => {
                    let value = if text.trim().is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text).map_err(|error| ApiError::Unexpected {
                            action,
                            reason: error.to_string(),
                        })?
                    };
                    return Ok((status, value));
                }
                429 if attempt < ATTEMPTS => tokio::time::sleep(wait).await,
                429 => return Err(ApiError::RateLimited { action }),
                500..=599 if read && attempt < ATTEMPTS => tokio::time::sleep(backoff(attempt)).await,
                401 | 403 => {
                    return Err(ApiError::Forbidden {
                        action,
                        status: status.as_u16(),
                        message: message(),
                    });
                }
                404 => {
                    return Err(ApiError::NotFound {
                        action,
                        message: message(),
                    });
                }
                400 | 409 | 422 => {
                    return Err(ApiError::Refused {
                        action,
                        status: status.as_u16(),
                        message: message(),
                    });
                }
                other => {
                    return Err(ApiError::Status {
                        action,
                        status: other,
                        message: message(),
                    });
                }
            }
        }
    }

    /// Every item of a paged list.
    async fn list(
        &self,
        path: &str,
        filter: &[(&str, String)],
        paging: Paging,
        items_of: fn(&Value) -> Option<&Vec<Value>>,
        action: Action,
    ) -> Result<Vec<Value>, ApiError> {
        let mut items = Vec::new();
        for page in 0.. {
            let mut query = filter.to_vec();
            let offset = page * PAGE_SIZE;
            query.extend(match paging {
                Paging::Pages => [("page", page.to_string()), ("page_size", PAGE_SIZE.to_string())],
                Paging::Offset => [("start", offset.to_string()), ("count", PAGE_SIZE.to_string())],
                Paging::JsonApi => [
                    ("page[offset]", offset.to_string()),
                    ("page[limit]", PAGE_SIZE.to_string()),
                ],
            });
            let (_, body) = self.call(Method::GET, path, &query, None, action).await?;
            let found = items_of(&body).ok_or_else(|| ApiError::Unexpected {
                action,
                reason: "no list of items".to_owned(),
            })?;
            let full = found.len() >= PAGE_SIZE;
            items.extend(found.iter().cloned());
            if !full {
                break;
            }
        }
        Ok(items)
    }

    /// The monitors carrying every tag of `monitor_tags`.
    pub async fn monitors_tagged(&self, monitor_tags: &str) -> Result<Vec<Value>, ApiError> {
        self.list(
            "/api/v1/monitor",
            &[("monitor_tags", monitor_tags.to_owned())],
            Paging::Pages,
            Value::as_array,
            READ_MONITORS,
        )
        .await
    }

    /// Creates a monitor; answers it, with its `id`.
    pub async fn create_monitor(&self, monitor: &Value) -> Result<Value, ApiError> {
        let action = WRITE_MONITORS;
        Ok(self
            .call(Method::POST, "/api/v1/monitor", &[], Some(monitor), action)
            .await?
            .1)
    }

    /// Replaces monitor `id` (its `options` whole, as DataDog does).
    pub async fn update_monitor(&self, id: i64, monitor: &Value) -> Result<Value, ApiError> {
        let path = format!("/api/v1/monitor/{id}");
        Ok(self
            .call(Method::PUT, &path, &[], Some(monitor), WRITE_MONITORS)
            .await?
            .1)
    }

    /// Deletes monitor `id`.
    pub async fn delete_monitor(&self, id: i64) -> Result<(), ApiError> {
        let path = format!("/api/v1/monitor/{id}");
        self.call(Method::DELETE, &path, &[], None, WRITE_MONITORS)
            .await?;
        Ok(())
    }

    /// Every custom dashboard's summary (`id`, `title`, `description`, …).
    pub async fn dashboards(&self) -> Result<Vec<Value>, ApiError> {
        fn items(body: &Value) -> Option<&Vec<Value>> {
            body["dashboards"].as_array()
        }
        self.list("/api/v1/dashboard", &[], Paging::Offset, items, READ_DASHBOARDS)
            .await
    }

    /// Dashboard `id`, whole.
    pub async fn dashboard(&self, id: &str) -> Result<Value, ApiError> {
        let path = format!("/api/v1/dashboard/{id}");
        Ok(self.call(Method::GET, &path, &[], None, READ_DASHBOARDS).await?.1)
    }

    /// Creates a dashboard; answers it, with its `id` and `url`.
    pub async fn create_dashboard(&self, dashboard: &Value) -> Result<Value, ApiError> {
        let action = WRITE_DASHBOARDS;
        Ok(self
            .call(Method::POST, "/api/v1/dashboard", &[], Some(dashboard), action)
            .await?
            .1)
    }

    /// Replaces dashboard `id`.
    pub async fn update_dashboard(&self, id: &str, dashboard: &Value) -> Result<Value, ApiError> {
        let path = format!("/api/v1/dashboard/{id}");
        Ok(self
            .call(Method::PUT, &path, &[], Some(dashboard), WRITE_DASHBOARDS)
            .await?
            .1)
    }

    /// Every downtime (`data[]`: `id`, `attributes`), cancelled ones included for a while.
    pub async fn downtimes(&self) -> Result<Vec<Value>, ApiError> {
        fn items(body: &Value) -> Option<&Vec<Value>> {
            body["data"].as_array()
        }
        self.list("/api/v2/downtime", &[], Paging::JsonApi, items, DOWNTIMES)
            .await
    }

    /// Schedules a downtime of `attributes`.
    pub async fn create_downtime(&self, attributes: &Value) -> Result<Value, ApiError> {
        let body = json!({"data": {"type": "downtime", "attributes": attributes}});
        Ok(self
            .call(Method::POST, "/api/v2/downtime", &[], Some(&body), DOWNTIMES)
            .await?
            .1)
    }

    /// Cancels downtime `id`.
    pub async fn cancel_downtime(&self, id: &str) -> Result<(), ApiError> {
        let path = format!("/api/v2/downtime/{id}");
        self.call(Method::DELETE, &path, &[], None, DOWNTIMES).await?;
        Ok(())
    }

    /// Metric `metric`'s tag configuration (`data.attributes`), or `None` if it has none.
    pub async fn tag_configuration(&self, metric: &str) -> Result<Option<Value>, ApiError> {
        let path = format!("/api/v2/metrics/{metric}/tags");
        match self.call(Method::GET, &path, &[], None, READ_METRICS).await {
            Ok((_, body)) => Ok(Some(body["data"]["attributes"].clone())),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Creates metric `metric`'s tag configuration: a distribution queryable by `tags`, with
    /// percentiles.
    pub async fn create_tag_configuration(&self, metric: &str, tags: &[String]) -> Result<(), ApiError> {
        let path = format!("/api/v2/metrics/{metric}/tags");
        let body = json!({"data": {"type": "manage_tags", "id": metric, "attributes": {
            "tags": tags, "metric_type": "distribution", "include_percentiles": true,
        }}});
        self.call(Method::POST, &path, &[], Some(&body), WRITE_METRIC_TAGS)
            .await?;
        Ok(())
    }

    /// Updates metric `metric`'s tag configuration: queryable by `tags`, with percentiles.
    pub async fn update_tag_configuration(&self, metric: &str, tags: &[String]) -> Result<(), ApiError> {
        let path = format!("/api/v2/metrics/{metric}/tags");
        let body = json!({"data": {"type": "manage_tags", "id": metric, "attributes": {
            "tags": tags, "include_percentiles": true,
        }}});
        self.call(Method::PATCH, &path, &[], Some(&body), WRITE_METRIC_TAGS)
            .await?;
        Ok(())
    }
}

pub const READ_MONITORS: Action = Action {
    what: "read monitors",
    permission: "monitors_read",
};
const WRITE_MONITORS: Action = Action {
    what: "create or change monitors",
    permission: "monitors_write",
};
const READ_DASHBOARDS: Action = Action {
    what: "read dashboards",
    permission: "dashboards_read",
};
const WRITE_DASHBOARDS: Action = Action {
    what: "create or change dashboards",
    permission: "dashboards_write",
};
const DOWNTIMES: Action = Action {
    what: "read or schedule downtimes",
    permission: "monitors_downtime",
};
const READ_METRICS: Action = Action {
    what: "read metric tag configurations",
    permission: "metrics_read",
};
const WRITE_METRIC_TAGS: Action = Action {
    what: "configure a metric's tags and percentiles",
    permission: "metric_tags_write",
};

/// Every permission `apply` needs, for the message that asks for a key.
pub const PERMISSIONS: [&str; 7] = [
    "dashboards_read",
    "dashboards_write",
    "monitors_read",
    "monitors_write",
    "monitors_downtime",
    "metrics_read",
    "metric_tags_write",
];

/// How long to wait after a 429: as DataDog says, else a second; at most [`MAX_RATE_LIMIT_WAIT`].
fn rate_limit_pause(headers: &HeaderMap) -> Duration {
    rate_limit_wait(headers)
        .unwrap_or(Duration::from_secs(1))
        .min(MAX_RATE_LIMIT_WAIT)
}

/// The wait before attempt `attempt + 1` of a read.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * 2u64.pow(attempt.min(5)))
}

/// DataDog's message: its `errors` (strings, or JSON:API objects' `detail`/`title`), else the
/// start of the body.
fn message_of(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let errors: Vec<String> = parsed
        .as_ref()
        .and_then(|value| value["errors"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|error| match error {
            Value::String(text) => Some(text.clone()),
            other => other["detail"]
                .as_str()
                .or(other["title"].as_str())
                .map(str::to_owned),
        })
        .collect();
    if errors.is_empty() {
        body.trim().chars().take(200).collect()
    } else {
        errors.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datadogs_messages_are_read_in_both_shapes() {
        assert_eq!(message_of(r#"{"errors": ["Forbidden"]}"#), "Forbidden");
        assert_eq!(
            message_of(r#"{"errors": [{"status": "409", "title": "Conflict", "detail": "exists"}]}"#),
            "exists"
        );
        assert_eq!(message_of("<html>bad gateway</html>"), "<html>bad gateway</html>");
    }

    #[test]
    fn a_429_is_waited_out_as_datadog_says_within_a_minute() {
        let mut headers = HeaderMap::new();
        assert_eq!(rate_limit_pause(&headers), Duration::from_secs(1));
        headers.insert("X-RateLimit-Reset", HeaderValue::from_static("3"));
        assert_eq!(rate_limit_pause(&headers), Duration::from_secs(3));
        headers.insert("X-RateLimit-Reset", HeaderValue::from_static("3600"));
        assert_eq!(rate_limit_pause(&headers), MAX_RATE_LIMIT_WAIT);
    }

    #[test]
    fn keys_never_print() {
        let key = AppKey::new(" 0123456789abcdef0123456789abcdef01234567 ").expect("a key");
        assert_eq!(format!("{key:?}"), "AppKey(***)");
        assert!(AppKey::new("  ").is_none());
    }
}
