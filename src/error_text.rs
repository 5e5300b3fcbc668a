//! One-line error messages from error chains, for logs and for people.

use std::error::Error;

/// An error and its chain of causes on one line: `dispatch failure: io error: Connection refused`.
/// Unlike the SDKs' debug output, it never dumps requests or responses.
pub fn with_causes(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let next = inner.to_string();
        // Some errors repeat their source in their own message: keep each piece once.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = inner.source();
    }
    text
}
