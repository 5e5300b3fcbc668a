//! The names a push's occurrences go out under: a milestone's or outcome's flow and id are
//! looked up in the [`Directory`] (never waiting for it) and shown by name where known, by id
//! where not, and the misses are counted for the tally.

use std::sync::Arc;

use crate::count::Occurrence;
use crate::key::Source;
use crate::names::{Directory, NameKind};

/// The names found for an occurrence's ids, and how many were not.
#[derive(Default)]
pub(super) struct Resolved {
    flow: Option<Arc<str>>,
    metric: Option<Arc<str>>,
    pub(super) unresolved: usize,
}

/// The names of each occurrence's ids, in order; none at all when every occurrence is of an
/// attribute, whose key carries its names, so that such a push is sent as it is.
pub(super) fn resolve_all(directory: &dyn Directory, by_id: &[Occurrence<'_>]) -> Vec<Resolved> {
    if by_id
        .iter()
        .all(|occurrence| occurrence.source == Source::Attribute)
    {
        Vec::new()
    } else {
        by_id
            .iter()
            .map(|occurrence| resolve(directory, occurrence))
            .collect()
    }
}

/// The names of a milestone's or outcome's flow and id, where known.
fn resolve(directory: &dyn Directory, occurrence: &Occurrence<'_>) -> Resolved {
    let kind = match occurrence.source {
        Source::Attribute => return Resolved::default(),
        Source::Milestone => NameKind::Milestone,
        Source::Outcome { .. } => NameKind::Outcome,
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
