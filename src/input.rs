//! Event files for replays: how a file's bytes are cut into events, each with its line.
//!
//! Three layouts are read, told apart by the first non-blank line:
//! - it starts with `[`: a JSON array of events, streamed element by element;
//! - it is a complete JSON value on its own: JSON Lines, one event per non-blank line (a broken
//!   line is reported and the next lines are still read);
//! - otherwise: one JSON document (a pretty-printed event, or several in a row).
//!
//! Events are handed out one at a time as they are read, so memory does not grow with the file.
//! Nothing here knows what an event means: the pipeline decodes each one.

use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::ops::ControlFlow;
use std::rc::Rc;

use serde::de::{Deserializer as _, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// One event's text and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub line: u64,
    pub json: String,
}

/// A part of a file that could not be cut into events.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// The file could not be read: nothing after this point was seen.
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    /// The JSON is broken where events cannot be told apart: the rest of the file is unread.
    #[error("broken JSON, the rest of the file is skipped: {message}")]
    Syntax { line: u64, message: String },
}

/// Reads `reader` and calls `each` with every event in order. `each` may stop the reading by
/// returning `ControlFlow::Break`. A JSON Lines file's broken lines are handed out as events
/// (the pipeline rejects them with a reason); an error that ends the file is returned.
pub fn read_events<R, F>(mut reader: R, mut each: F) -> Result<(), FramingError>
where
    R: BufRead,
    F: FnMut(RawEvent) -> ControlFlow<()>,
{
    // Leading blank lines stay in `first`, so serde_json counts lines from the file's start.
    let mut first = String::new();
    let mut blank_lines = 0;
    loop {
        if reader.read_line(&mut first)? == 0 {
            return Ok(());
        }
        if !first.trim().is_empty() {
            break;
        }
        blank_lines += 1;
    }
    let trimmed = first.trim();
    let is_array = trimmed.starts_with('[');
    if !is_array && serde_json::from_str::<IgnoredAny>(trimmed).is_ok() {
        let event = RawEvent {
            line: blank_lines + 1,
            json: trimmed.to_owned(),
        };
        if each(event).is_break() {
            return Ok(());
        }
        return read_json_lines(reader, blank_lines + 1, each);
    }
    let rest = LineCounter::new(io::Cursor::new(first.into_bytes()).chain(reader));
    if is_array {
        read_array(rest, each)
    } else {
        read_document(rest, each)
    }
}

fn read_json_lines<R, F>(mut reader: R, mut line_number: u64, mut each: F) -> Result<(), FramingError>
where
    R: BufRead,
    F: FnMut(RawEvent) -> ControlFlow<()>,
{
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        line_number += 1;
        let json = line.trim();
        if json.is_empty() {
            continue;
        }
        let event = RawEvent {
            line: line_number,
            json: json.to_owned(),
        };
        if each(event).is_break() {
            return Ok(());
        }
    }
}

fn read_document<R, F>(reader: LineCounter<R>, mut each: F) -> Result<(), FramingError>
where
    R: Read,
    F: FnMut(RawEvent) -> ControlFlow<()>,
{
    let lines = reader.lines();
    for value in serde_json::Deserializer::from_reader(reader).into_iter::<Box<RawValue>>() {
        let value = value.map_err(framing_error)?;
        if each(lines.event_ending_here(value)).is_break() {
            break;
        }
    }
    Ok(())
}

fn read_array<R, F>(reader: LineCounter<R>, each: F) -> Result<(), FramingError>
where
    R: Read,
    F: FnMut(RawEvent) -> ControlFlow<()>,
{
    struct ArrayVisitor<'l, F> {
        lines: &'l Lines,
        each: F,
    }
    impl<'de, F: FnMut(RawEvent) -> ControlFlow<()>> Visitor<'de> for ArrayVisitor<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of events")
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            while let Some(value) = seq.next_element::<Box<RawValue>>()? {
                if (self.each)(self.lines.event_ending_here(value)).is_break() {
                    // Read to the end unseen, so that stopping is not taken for broken JSON.
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    break;
                }
            }
            Ok(())
        }
    }
    let lines = reader.lines();
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    deserializer
        .deserialize_seq(ArrayVisitor { lines: &lines, each })
        .and_then(|()| deserializer.end())
        .map_err(framing_error)
}

/// Counts the newlines that pass through a reader, so that an event read by serde_json can be
/// given the line it starts on.
struct LineCounter<R> {
    inner: R,
    lines: Lines,
}

/// A shared count of the lines a [`LineCounter`] has read past.
#[derive(Clone)]
struct Lines {
    newlines: Rc<Cell<u64>>,
}

impl<R> LineCounter<R> {
    fn new(inner: R) -> Self {
        LineCounter {
            inner,
            lines: Lines {
                newlines: Rc::default(),
            },
        }
    }

    fn lines(&self) -> Lines {
        self.lines.clone()
    }
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        let newlines = buf[..read].iter().filter(|&&byte| byte == b'\n').count() as u64;
        self.lines.newlines.set(self.lines.newlines.get() + newlines);
        Ok(read)
    }
}

impl Lines {
    /// The event whose last byte was just read: serde_json stops right after an object's `}`,
    /// so its first line is the current line less the newlines inside it.
    fn event_ending_here(&self, value: Box<RawValue>) -> RawEvent {
        let json = String::from(Box::<str>::from(value));
        let inside = json.bytes().filter(|&byte| byte == b'\n').count() as u64;
        RawEvent {
            line: (self.newlines.get() + 1).saturating_sub(inside),
            json,
        }
    }
}

fn framing_error(error: serde_json::Error) -> FramingError {
    if error.is_io() {
        FramingError::Io(error.into())
    } else {
        FramingError::Syntax {
            line: error.line() as u64,
            message: error.to_string(),
        }
    }
}
