//! The engine's side of the run result ([`crate::outcome`]): how a source, pipeline or
//! destination error becomes a typed [`Failure`] (the stage, a message naming what failed,
//! never a secret, and whether retrying the run may help: a refused connection may, a wrong
//! passphrase will not), and the summary table the CLI prints.

use crate::destination::{DestinationError, ErrorKind};
use crate::engine::pipeline::PipelineError;
use crate::outcome::{io_retryable, Failure, Stage};
use crate::source::{Retry, SourceError};

pub(crate) mod summary;

/// Failures made from the errors of the layers below: the engine decides the stage and
/// whether a retry may help, from the error's kind (never its text).
pub(crate) trait FailureFrom {
    /// A source or data-path failure; `context` prefixes the message (`source 'www'`).
    fn from_pipeline(context: &str, e: &PipelineError) -> Self;
    /// A source that could not be opened or checked.
    fn from_source(stage: Stage, context: &str, e: &SourceError) -> Self;
    /// A destination operation that failed at `stage`.
    fn from_destination(stage: Stage, e: &DestinationError) -> Self;
}

impl FailureFrom for Failure {
    fn from_pipeline(context: &str, e: &PipelineError) -> Self {
        let retryable = match e {
            PipelineError::Source(s) => source_retryable(s),
            PipelineError::Compress(io) => io_retryable(io),
            PipelineError::Crypto(_) | PipelineError::Plan(_) => false,
        };
        Failure::new(Stage::Source, format!("{context}: {e}"), retryable)
    }

    fn from_source(stage: Stage, context: &str, e: &SourceError) -> Self {
        Failure::new(stage, format!("{context}: {e}"), source_retryable(e))
    }

    fn from_destination(stage: Stage, e: &DestinationError) -> Self {
        let retryable = match e {
            DestinationError::Io { source, .. } => io_retryable(source),
            DestinationError::Other { .. } => false,
            DestinationError::Store { kind, .. } => *kind == ErrorKind::Transient,
        };
        Failure::new(stage, e.to_string(), retryable)
    }
}

/// The kind the source decided where it made the error; an I/O error by its kind.
fn source_retryable(e: &SourceError) -> bool {
    match (e.retry(), e) {
        (Some(retry), _) => retry == Retry::Transient,
        (None, SourceError::Io { source, .. }) => io_retryable(source),
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests;
