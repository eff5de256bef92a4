//! Writing to stdout, where a reader that went away (`| head`) ends the
//! command quietly instead of with an error.

use std::io::{self, Write};

use anyhow::Result;

/// Writes `text` to stdout and flushes it, so that streams show at once.
///
/// # Errors
/// Stdout cannot be written (e.g. the reader went away).
pub(super) fn print(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// `result`, except that a closed stdout is a normal end.
pub(super) fn end_quietly_on_closed_stdout(result: Result<()>) -> Result<()> {
    match result {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}
