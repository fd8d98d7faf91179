//! Writing results to stdout: JSON documents for `--json`, text lines otherwise.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

/// Writes `value` to stdout as one pretty-printed JSON document.
pub(crate) fn json(value: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).context("cannot write JSON to stdout")?;
    writeln!(out).context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")
}

/// Writes text to stdout as it is (the caller ends its lines).
pub(crate) fn text(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Writes text to stderr (notes and warnings that belong to the command's output, not to the
/// log); a failing stderr is ignored, as there is nowhere left to report it.
pub(crate) fn note(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Whether an error is only stdout closed early (`enrich status | head`): not worth reporting.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let broken = Some(std::io::ErrorKind::BrokenPipe);
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            == broken
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == broken
    })
}
