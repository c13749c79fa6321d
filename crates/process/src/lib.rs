//! Child processes, written once for every custos binary (docs/ARCHITECTURE.md §3).
//!
//! Every child runs in its own process group, so a deadline or a cancellation kills a
//! wrapper script's children too; its stderr is drained by a thread into a bounded tail (cut
//! at a char boundary), so a chatty child never blocks on a full pipe and an error still
//! says what went wrong; secrets reach it as a memfd on its stdin, never argv or the
//! environment. Failures are a typed [`ProcessError`] whose variant says what happened (not
//! found, permission denied, exit status, signal, timeout, I/O), so callers decide retries
//! and exit codes on the kind, never on the text.
//!
//! Two ways to use it: [`run`] runs a command to its end within a deadline and returns its
//! (bounded) stdout; [`Spawn::spawn`] starts a [`Child`] whose stdin/stdout the caller
//! streams (a dump read through a pipe, an upload written into one, an `ssh` command's
//! output), finished later with [`Child::wait`]. A [`Registry`] holds the children a signal
//! handler must be able to kill all at once.

mod child;
mod error;
mod registry;
mod run;
mod secret;
mod tail;

pub use child::{Child, Exit, Spawn, Stdin};
pub use error::ProcessError;
pub use registry::Registry;
pub use run::{run, Output};
pub use secret::SecretFile;
pub use tail::one_line;

#[cfg(test)]
mod tests;
