//! `backup restore --database NAME [--as NEW]`: one database's dump loaded back into the
//! job's own server, through the source's client and credentials ([`Server`]).
//!
//! The object is read twice: once end to end to check it (sidecar sha256, OpenPGP MDC,
//! compression checksum) before the server sees a byte, then again into the client, so a
//! damaged or tampered copy never half-loads into a database. A database that exists and
//! holds tables is left alone unless `force`; a missing one is created.

use std::io;
use std::path::Path;

use super::decode::{copy_payload, open_decoded};
use super::{choose, find_destination, read_sidecar, Copy, RestoreError, SidecarCheck};
use crate::cancel::Cancel;
use crate::crypto::Decryption;
use crate::destination::Destination;
use crate::naming::{Payload, RunStamp};
use crate::source::databases::Server;

/// What to load, from where, into which database.
#[derive(Debug)]
pub struct LoadRequest<'a> {
    pub source_id: &'a str,
    /// The database whose dump to load (its name in the object).
    pub database: &'a str,
    /// The database to load into: `--as`, else `database`.
    pub into: &'a str,
    pub at: Option<RunStamp>,
    pub destination: Option<&'a str>,
    pub decryption: Option<&'a Decryption>,
    /// Load even into a database that holds tables.
    pub force: bool,
    /// Every client is registered here: SIGINT/SIGTERM kill it.
    pub cancel: Cancel,
}

/// What [`load`] did.
#[derive(Debug)]
pub struct Loaded {
    pub copy: Copy,
    pub sidecar: SidecarCheck,
    pub payload_bytes: u64,
    /// The database was created by this restore.
    pub created: bool,
}

/// Checks the copy of `request.database`, then loads it into `request.into` on `server`.
pub fn load(
    destinations: &[&dyn Destination],
    request: &LoadRequest<'_>,
    server: &dyn Server,
) -> Result<Loaded, RestoreError> {
    // The source's one object, when it is this database's dump; else its own object.
    let whole = server.single_database() == Some(request.database);
    let (copy, _) = choose(
        destinations,
        request.source_id,
        request.at,
        request.destination,
        (!whole).then_some(request.database),
    )?;
    let object = copy.name.path();
    if !matches!(copy.name.payload, Payload::Sql | Payload::Dump) {
        return Err(RestoreError::NotADump { object });
    }
    let dest = find_destination(destinations, &copy.destination).ok_or_else(|| {
        RestoreError::NotFound {
            source_id: request.source_id.to_owned(),
            at: String::new(),
            on: String::new(),
        }
    })?;
    let expected = read_sidecar(dest, &copy)?;
    // First pass: the whole object checks out before the server sees it.
    let mut decoded = open_decoded(dest, &copy, request.decryption, expected.as_deref())?;
    copy_payload(
        &mut decoded,
        &mut io::sink(),
        &object,
        Path::new("/dev/null"),
    )?;
    decoded.finish(expected.as_deref())?;

    let server_error = |source| RestoreError::Server {
        database: request.into.to_owned(),
        source,
    };
    let created = match server
        .holds_data(request.into, request.cancel)
        .map_err(server_error)?
    {
        Some(true) if !request.force => {
            return Err(RestoreError::NotEmpty {
                database: request.into.to_owned(),
            })
        }
        Some(_) => false,
        None => {
            server
                .create(request.into, request.cancel)
                .map_err(server_error)?;
            true
        }
    };
    let mut loader = server
        .load(
            request.into,
            copy.name.payload,
            request.force,
            request.cancel,
        )
        .map_err(server_error)?;
    let mut decoded = open_decoded(dest, &copy, request.decryption, expected.as_deref())?;
    let copied = copy_payload(&mut decoded, &mut loader, &object, Path::new(request.into));
    // The client's own error (a failing statement) says more than the broken pipe it caused.
    let finished = loader.finish().map_err(server_error);
    let payload_bytes = match (copied, finished) {
        (_, Err(e)) | (Err(e), Ok(())) => return Err(e),
        (Ok(n), Ok(())) => n,
    };
    let (_, sidecar) = decoded.finish(expected.as_deref())?;
    Ok(Loaded {
        copy,
        sidecar,
        payload_bytes,
        created,
    })
}
