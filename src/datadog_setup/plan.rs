//! What `apply` changes, decided from what DataDog holds: each asset is created, updated (with
//! the fields that differ), left as it is, or removed. A field DataDog adds or fills with its
//! default (a widget's `id`, a monitor option never set) is not a difference; a field of ours
//! changed or dropped there is. Numbers compare by value (DataDog echoes `50` as `50.0`), and
//! lists of strings (tags) as sets.

use std::collections::BTreeSet;

use serde_json::Value;

/// What happens to one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create,
    /// The fields (`options.thresholds.critical`, `widgets`) DataDog holds otherwise.
    Update(Vec<String>),
    Unchanged,
    /// DataDog holds it, and this deployment no longer wants it (or holds it twice).
    Remove,
}

impl Change {
    /// Whether anything is written.
    pub fn writes(&self) -> bool {
        !matches!(self, Change::Unchanged)
    }

    /// How it reads in the plan: `create`, `update (query, tags)`, `unchanged`, `remove`.
    pub fn describe(&self, done: bool) -> String {
        let (future, past) = match self {
            Change::Create => ("would create", "created"),
            Change::Update(_) => ("would update", "updated"),
            Change::Unchanged => ("unchanged", "unchanged"),
            Change::Remove => ("would remove", "removed"),
        };
        let verb = if done { past } else { future };
        match self {
            Change::Update(fields) => format!("{verb} ({})", fields.join(", ")),
            _ => verb.to_owned(),
        }
    }
}

/// `Update` with the fields of `desired` that `found` holds otherwise, or `Unchanged`.
pub fn compare(desired: &Value, found: &Value) -> Change {
    let mut fields = Vec::new();
    differences(desired, found, "", &mut fields);
    if fields.is_empty() {
        Change::Unchanged
    } else {
        Change::Update(fields)
    }
}

fn differences(desired: &Value, found: &Value, path: &str, out: &mut Vec<String>) {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (desired, found) {
        (Value::Object(desired), Value::Object(found)) => {
            for (key, value) in desired {
                match found.get(key) {
                    Some(held) => differences(value, held, &at(key), out),
                    None if value.is_null() => {}
                    None => out.push(at(key)),
                }
            }
        }
        (Value::Array(desired), Value::Array(found)) if desired.iter().all(Value::is_string) => {
            let set = |items: &[Value]| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect::<BTreeSet<_>>()
            };
            if set(desired) != set(found) {
                out.push(path.to_owned());
            }
        }
        (Value::Array(desired), Value::Array(found)) => {
            if desired.len() != found.len() {
                out.push(path.to_owned());
                return;
            }
            let before = out.len();
            let mut inner = Vec::new();
            for (index, (desired, found)) in desired.iter().zip(found).enumerate() {
                differences(desired, found, &format!("{path}[{index}]"), &mut inner);
            }
            // A changed list is named once, at its first difference.
            if let Some(first) = inner.into_iter().next() {
                out.truncate(before);
                out.push(first);
            }
        }
        (Value::Number(desired), Value::Number(found)) => {
            if desired.as_f64() != found.as_f64() {
                out.push(path.to_owned());
            }
        }
        (desired, found) => {
            if desired != found {
                out.push(path.to_owned());
            }
        }
    }
}

/// A downtime's schedule as it repeats: each recurrence's rule, length and local start time
/// (the start's date is only its first occurrence, chosen afresh by each apply).
pub fn downtime_shape(attributes: &Value) -> (String, String, BTreeSet<(String, String, String)>) {
    let schedule = &attributes["schedule"];
    let recurrences = schedule["recurrences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|recurrence| {
            let start = recurrence["start"].as_str().unwrap_or_default();
            let time = start.split_once('T').map_or("", |(_, time)| time);
            (
                recurrence["rrule"].as_str().unwrap_or_default().to_owned(),
                recurrence["duration"].as_str().unwrap_or_default().to_owned(),
                time.get(..5).unwrap_or(time).to_owned(),
            )
        })
        .collect();
    (
        schedule["timezone"].as_str().unwrap_or_default().to_owned(),
        attributes["message"].as_str().unwrap_or_default().to_owned(),
        recurrences,
    )
}

/// The tag configuration to write so that `metric` has percentiles and is queryable by
/// `tags`, given the one DataDog holds; `None` when it already is. An allow-list keeps its
/// other tags; a deny-list (`exclude_tags_mode`) stops excluding ours.
pub fn tag_configuration(wanted: &BTreeSet<String>, found: Option<&Value>) -> Option<Vec<String>> {
    let Some(found) = found else {
        return Some(wanted.iter().cloned().collect());
    };
    let held: BTreeSet<String> = found["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let percentiles = found["include_percentiles"].as_bool() == Some(true);
    if found["exclude_tags_mode"].as_bool() == Some(true) {
        let kept: BTreeSet<String> = held.difference(wanted).cloned().collect();
        return (!percentiles || kept != held).then(|| kept.into_iter().collect());
    }
    let all: BTreeSet<String> = held.union(wanted).cloned().collect();
    (!percentiles || all != held).then(|| all.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn what_datadog_adds_or_fills_in_is_no_change() {
        let desired = json!({
            "name": "n", "tags": ["b", "a"], "priority": 2,
            "options": {"thresholds": {"critical": 50}, "notify_no_data": false},
            "widgets": [{"definition": {"type": "timeseries"}}]
        });
        let found = json!({
            "id": 7, "name": "n", "tags": ["a", "b"], "priority": 2, "overall_state": "OK",
            "options": {"thresholds": {"critical": 50.0}, "notify_no_data": false, "notify_audit": false, "silenced": {}},
            "widgets": [{"id": 3025185757829094_u64, "definition": {"type": "timeseries"}}]
        });
        assert_eq!(compare(&desired, &found), Change::Unchanged);
    }

    #[test]
    fn a_field_changed_or_dropped_in_datadog_is_a_change() {
        let desired = json!({
            "query": "q > 50", "tags": ["a", "b"],
            "options": {"thresholds": {"critical": 50, "warning": 25}},
            "widgets": [{"definition": {"title": "one"}}, {"definition": {"title": "two"}}]
        });
        let found = json!({
            "query": "q > 60", "tags": ["a"],
            "options": {"thresholds": {"critical": 50.0}},
            "widgets": [{"definition": {"title": "one"}}, {"definition": {"title": "2"}}]
        });
        assert_eq!(
            compare(&desired, &found),
            Change::Update(vec![
                "query".to_owned(),
                "tags".to_owned(),
                "options.thresholds.warning".to_owned(),
                "widgets[1].definition.title".to_owned(),
            ])
        );
        let one_widget_more =
            json!({"widgets": [{"definition": {"title": "one"}}, {"definition": {"title": "two"}}, {}]});
        assert_eq!(
            compare(&json!({"widgets": desired["widgets"]}), &one_widget_more),
            Change::Update(vec!["widgets".to_owned()])
        );
    }

    #[test]
    fn a_downtime_is_the_same_whatever_date_its_first_start_falls_on() {
        let ours = json!({"message": "m", "schedule": {"timezone": "Europe/Dublin", "recurrences": [
            {"rrule": "FREQ=WEEKLY;BYDAY=FR", "duration": "62h", "start": "2026-11-27T18:00"}]}});
        let held = json!({"message": "m", "schedule": {"timezone": "Europe/Dublin", "recurrences": [
            {"rrule": "FREQ=WEEKLY;BYDAY=FR", "duration": "62h", "start": "2026-10-02T18:00:00"}],
            "current_downtime": {"start": "2026-11-27T18:00:00+00:00"}}});
        assert_eq!(downtime_shape(&ours), downtime_shape(&held));
        let later = json!({"message": "m", "schedule": {"timezone": "Europe/Dublin", "recurrences": [
            {"rrule": "FREQ=WEEKLY;BYDAY=FR", "duration": "62h", "start": "2026-11-27T19:00"}]}});
        assert_ne!(downtime_shape(&ours), downtime_shape(&later));
    }

    #[test]
    fn percentiles_are_turned_on_keeping_what_others_configured() {
        let wanted: BTreeSet<String> = ["env", "flow", "metric"].map(str::to_owned).into();
        assert_eq!(
            tag_configuration(&wanted, None),
            Some(vec!["env".into(), "flow".into(), "metric".into()])
        );
        let done = json!({"tags": ["metric", "flow", "env"], "include_percentiles": true});
        assert_eq!(tag_configuration(&wanted, Some(&done)), None);
        let others = json!({"tags": ["region"], "include_percentiles": false});
        assert_eq!(
            tag_configuration(&wanted, Some(&others)),
            Some(vec![
                "env".into(),
                "flow".into(),
                "metric".into(),
                "region".into()
            ])
        );
        let deny = json!({"tags": ["flow", "host"], "exclude_tags_mode": true, "include_percentiles": true});
        assert_eq!(tag_configuration(&wanted, Some(&deny)), Some(vec!["host".into()]));
    }
}
