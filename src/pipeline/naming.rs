//! The names a push's occurrences go out under: a milestone's or outcome's flow and id are
//! looked up in the [`Directory`] and shown by name where known, by id where not, and the misses
//! are counted for the tally.
//!
//! Looking an id up starts fetching its name; before a push, the ids still being fetched are
//! waited for, up to a bound the batch shares ([`crate::names::NAME_WAIT`], never past the
//! push's deadline less its minimal attempt), so that the first points after a cold start carry
//! names rather than ids. What is still unknown then goes out as an id.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::count::Occurrence;
use crate::key::Source;
use crate::names::{Directory, NameKind};

/// Pause between two looks at names being fetched.
const POLL: Duration = Duration::from_millis(5);

/// The names found for an occurrence's ids, and how many were not.
#[derive(Default)]
pub(super) struct Resolved {
    flow: Option<Arc<str>>,
    metric: Option<Arc<str>>,
    pub(super) unresolved: usize,
}

/// The names of each occurrence's ids, in order, waiting until `wait_until` at most for those
/// being fetched; none at all when every occurrence is of an attribute, whose key carries its
/// names, so that such a push is sent as it is.
pub(super) async fn resolve_all(
    directory: &dyn Directory,
    by_id: &[Occurrence<'_>],
    wait_until: Instant,
) -> Vec<Resolved> {
    if by_id
        .iter()
        .all(|occurrence| occurrence.source == Source::Attribute)
    {
        return Vec::new();
    }
    // The first look starts the fetches of every id not known.
    let mut names: Vec<Resolved> = Vec::with_capacity(by_id.len());
    for occurrence in by_id {
        names.push(resolve(directory, occurrence));
    }
    loop {
        let now = Instant::now();
        if now >= wait_until || !any_fetching(directory, by_id, &names) {
            return names;
        }
        tokio::time::sleep(POLL.min(wait_until - now)).await;
        for (occurrence, resolved) in by_id.iter().zip(names.iter_mut()) {
            if resolved.unresolved > 0 {
                *resolved = resolve(directory, occurrence);
            }
        }
    }
}

/// Whether an id still without a name is being fetched.
fn any_fetching(directory: &dyn Directory, by_id: &[Occurrence<'_>], names: &[Resolved]) -> bool {
    by_id.iter().zip(names).any(|(occurrence, resolved)| {
        let Some(kind) = kind_of(occurrence.source) else {
            return false;
        };
        (resolved.flow.is_none() && directory.is_fetching(NameKind::Flow, occurrence.flow))
            || (resolved.metric.is_none() && directory.is_fetching(kind, occurrence.metric))
    })
}

/// What a milestone's or outcome's own id names; nothing for an attribute.
fn kind_of(source: Source) -> Option<NameKind> {
    match source {
        Source::Attribute => None,
        Source::Milestone => Some(NameKind::Milestone),
        Source::Outcome { .. } => Some(NameKind::Outcome),
    }
}

/// The names of a milestone's or outcome's flow and id, where known.
fn resolve(directory: &dyn Directory, occurrence: &Occurrence<'_>) -> Resolved {
    let Some(kind) = kind_of(occurrence.source) else {
        return Resolved::default();
    };
    let flow = directory.name(NameKind::Flow, occurrence.flow);
    let metric = directory.name(kind, occurrence.metric);
    Resolved {
        unresolved: usize::from(flow.is_none()) + usize::from(metric.is_none()),
        flow,
        metric,
    }
}

/// The occurrences under the names of [`resolve_all`], keeping an id where no name was found.
pub(super) fn with_names<'a>(by_id: Vec<Occurrence<'a>>, names: &'a [Resolved]) -> Vec<Occurrence<'a>> {
    if names.is_empty() {
        return by_id;
    }
    by_id
        .iter()
        .zip(names)
        .map(|(occurrence, names)| Occurrence {
            flow: names.flow.as_deref().unwrap_or(occurrence.flow),
            metric: names.metric.as_deref().unwrap_or(occurrence.metric),
            ..*occurrence
        })
        .collect()
}
