//! The `samba` destination: objects are files at the root of an SMB share in the original's
//! layout `{id}-{YYYYmmddHHMMSS}.{suffixes}` ([`layout`]), written, listed, read and deleted
//! by Debian's `smbclient`, as the original did ([`client`]), one process per operation.
//!
//! An upload streams through `put -` into `{file}.partial` and is renamed to its name only on
//! commit (smbclient's `rename` never replaces a file), so a run killed mid-upload leaves only
//! a partial, which `list` skips and the next run of the job removes
//! ([`Destination::remove_abandoned`]; the job's lock means no live run still writes it).
//! Unlike the original, retention works here: the engine lists, keeps and deletes through
//! the same layout.

use std::io::{self, Read, Write};
use std::process::{ChildStdin, ChildStdout, Stdio};

use custos_process::Stdin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Destination, DestinationError, ErrorKind, ObjectInfo, ObjectWriter};
use custos_kit::config::{Invalid, Secret, Validate};

mod client;
pub mod layout;
mod listing;

use client::{Process, Share};
use listing::{parse_ls, Entry};

/// Bytes read ahead when an object is opened, to report a missing object at `open`.
const FIRST_READ: usize = 64 << 10;

/// `type: samba`, keys as in the original.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SambaConfig {
    /// `host`: the server's name or address; custos also takes `host:port`.
    pub host: String,
    /// `share`: the share's name.
    pub share: String,
    /// `workgroup`: the SMB domain or workgroup of the user.
    pub workgroup: String,
    /// `credentials`.
    pub credentials: SambaCredentials,
    /// `suffix`: the original names every file `{id}-{stamp}.{suffix}`; custos writes the
    /// suffixes the object really has (`tar.zst.gpg`), which restore needs, and warns when
    /// they do not end in this one.
    pub suffix: String,
}

/// `credentials` of a `samba` destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SambaCredentials {
    pub username: String,
    pub password: Secret,
}

impl SambaConfig {
    /// `host` without and with its port.
    fn host_port(&self) -> (&str, Option<u16>) {
        match self.host.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
            _ => (&self.host, None),
        }
    }

    /// The destination this config describes; `stall` bounds each smbclient request.
    pub fn build(
        &self,
        id: &str,
        stall: Duration,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        let (host, port) = self.host_port();
        Ok(Box::new(Samba {
            share: Arc::new(Share {
                destination: id.to_string(),
                service: format!("//{host}/{}", self.share),
                port,
                workgroup: self.workgroup.clone(),
                username: self.credentials.username.clone(),
                password: self.credentials.password.clone(),
                timeout: stall,
            }),
            suffix: self.suffix.clone(),
        }))
    }
}

/// A value that goes into smbclient's authentication file or `//host/share`: one line, no
/// separators.
fn plain(key: &str, value: &str, shown: &str, extra: &[char]) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(key, shown, "must not be empty"));
    }
    if value.chars().any(|c| c.is_control() || extra.contains(&c)) {
        let list: String = extra.iter().collect();
        return Err(Invalid::new(
            key,
            shown,
            format!("must be one line without any of {list:?}"),
        ));
    }
    Ok(())
}

impl Validate for SambaConfig {
    fn validate(&self) -> Result<(), Invalid> {
        plain("host", &self.host, &self.host, &['/', '\\', ' '])?;
        let (host, port) = self.host_port();
        if host.is_empty() || (self.host.matches(':').count() == 1 && port.is_none_or(|p| p == 0)) {
            return Err(Invalid::new(
                "host",
                &self.host,
                "must be host or host:port",
            ));
        }
        plain("share", &self.share, &self.share, &['/', '\\'])?;
        plain("workgroup", &self.workgroup, &self.workgroup, &[])?;
        let user = &self.credentials.username;
        plain("credentials.username", user, user, &[])?;
        plain(
            "credentials.password",
            self.credentials.password.expose(),
            "<secret>",
            &[],
        )?;
        plain("suffix", &self.suffix, &self.suffix, &['/', '\\'])?;
        Ok(())
    }
}

/// A share reached with smbclient.
pub struct Samba {
    share: Arc<Share>,
    suffix: String,
}

impl std::fmt::Debug for Samba {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Samba")
            .field("id", &self.share.destination)
            .field("service", &self.share.service)
            .finish()
    }
}

impl Samba {
    fn file_of(&self, name: &str) -> Result<String, DestinationError> {
        layout::to_share(name).ok_or_else(|| DestinationError::Other {
            destination: self.share.destination.clone(),
            message: format!(
                "invalid object name {name:?} (not an object name this share can hold)"
            ),
        })
    }

    /// The files at the share's root.
    fn ls(&self, prefix: &str) -> Result<Vec<Entry>, DestinationError> {
        let out = self.share.run("list", prefix, "ls")?;
        Ok(parse_ls(&String::from_utf8_lossy(&out)))
    }

    fn del(&self, op: &'static str, name: &str, file: &str) -> Result<(), DestinationError> {
        self.share
            .run(op, name, &format!("del \"{file}\""))
            .map(|_| ())
    }
}

impl Destination for Samba {
    fn id(&self) -> &str {
        &self.share.destination
    }

    fn kind(&self) -> &'static str {
        "samba"
    }

    /// Logs in and asks for the share's free space: proves the server, the credentials and
    /// the share, without writing.
    fn check(&self) -> Result<(), DestinationError> {
        self.share.run("check", "", "volume").map(|_| ())
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        let file = self.file_of(name)?;
        if !is_sidecar(&file) && !file.ends_with(&format!(".{}", self.suffix)) {
            tracing::warn!(destination = %self.share.destination, file = %file, suffix = %self.suffix,
                "the object's suffixes do not end in the configured suffix; named by its suffixes");
        }
        let partial = layout::partial(&file);
        let mut process = self.share.spawn(
            "create",
            name,
            &format!("put - \"{partial}\""),
            Stdin::Piped,
            Stdio::null(),
        )?;
        let stdin = process.stdin();
        Ok(Box::new(SambaWriter {
            share: self.share.clone(),
            object: name.to_string(),
            file,
            partial,
            process: Some(process),
            stdin,
            closed: false,
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        let mut out: Vec<ObjectInfo> = self
            .ls(prefix)?
            .into_iter()
            .filter(|e| !e.dir)
            .filter_map(|e| {
                let name = layout::from_share(&e.name)?;
                name.starts_with(prefix).then_some(ObjectInfo {
                    name,
                    size: e.size,
                    modified: e.modified,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
        let file = self.file_of(name)?;
        let mut process = self.share.spawn(
            "open",
            name,
            &format!("get \"{file}\" -"),
            Stdin::Null,
            Stdio::piped(),
        )?;
        let stdout = process.stdout().ok_or_else(|| DestinationError::Other {
            destination: self.share.destination.clone(),
            message: "smbclient without stdout".into(),
        })?;
        let mut r = SambaReader {
            share: self.share.clone(),
            object: name.to_string(),
            process,
            stdout,
            buf: vec![0; FIRST_READ],
            at: 0,
            done: false,
        };
        // The first bytes, or the end: a missing object fails here, typed.
        let n = r
            .stdout
            .read(&mut r.buf)
            .map_err(|e| DestinationError::Io {
                destination: self.share.destination.clone(),
                op: "open",
                object: name.to_string(),
                source: e,
            })?;
        r.buf.truncate(n);
        if n == 0 {
            r.finish()
                .map_err(|(kind, message)| DestinationError::Store {
                    destination: self.share.destination.clone(),
                    op: "open",
                    object: name.to_string(),
                    kind,
                    message,
                })?;
        }
        Ok(Box::new(r))
    }

    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        let file = self.file_of(name)?;
        self.del("delete", name, &file)
    }

    /// Removes the partials of this prefix's objects: only a run killed mid-upload leaves
    /// one, and the job's lock means no run of it is writing now.
    fn remove_abandoned(&self, prefix: &str) -> Result<Vec<String>, DestinationError> {
        let mut removed = Vec::new();
        for e in self.ls(prefix)? {
            let Some(object) = layout::from_partial(&e.name) else {
                continue;
            };
            if e.dir || !object.starts_with(prefix) {
                continue;
            }
            self.del("remove abandoned", &object, &e.name)?;
            tracing::info!(destination = %self.share.destination, file = %e.name,
                "removed the partial upload of a run that was killed");
            removed.push(e.name);
        }
        Ok(removed)
    }

    fn stall_timeout(&self) -> Duration {
        self.share.timeout
    }

    /// One, as the original wrote: each upload is an smbclient session of its own, and SMB
    /// servers cap the sessions of one user (Windows client editions take 20 connections
    /// in all, NAS firmwares fewer), while a share is mostly one disk behind one link that
    /// two streams would only split.
    fn max_uploads(&self) -> Option<std::num::NonZeroUsize> {
        super::ONE_UPLOAD
    }
}

fn is_sidecar(file: &str) -> bool {
    crate::naming::is_sidecar(file)
}

/// The io error of a failed smbclient, keeping its kind for [`DestinationError::kind`].
fn io_error(kind: ErrorKind, message: String) -> io::Error {
    let k = match kind {
        ErrorKind::NotFound => io::ErrorKind::NotFound,
        ErrorKind::Auth => io::ErrorKind::PermissionDenied,
        ErrorKind::Transient => io::ErrorKind::ConnectionAborted,
        ErrorKind::Other => io::ErrorKind::Other,
    };
    io::Error::new(k, message)
}

/// An upload in progress: smbclient's `put -` into the partial file.
struct SambaWriter {
    share: Arc<Share>,
    object: String,
    file: String,
    partial: String,
    process: Option<Process>,
    stdin: Option<ChildStdin>,
    /// Committed or discarded: nothing left to clean up.
    closed: bool,
}

impl SambaWriter {
    /// Waits for smbclient after its stdin closed; the failure's kind and text.
    fn finish_upload(&mut self) -> Result<(), (ErrorKind, String)> {
        self.stdin = None;
        let Some(mut p) = self.process.take() else {
            return Err((ErrorKind::Other, "upload already closed".into()));
        };
        self.share.outcome(&mut p, None)
    }

    /// Stops the upload and removes the partial (best effort: the server may be the
    /// problem; the next run removes what is left).
    fn discard(&mut self) {
        self.closed = true;
        self.stdin = None;
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
        if let Err(e) = self
            .share
            .run("abort", &self.object, &format!("del \"{}\"", self.partial))
        {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(destination = %self.share.destination, object = %self.object,
                    error = %e, "could not remove the partial upload; the next run of this job removes it");
            }
        }
    }
}

impl Write for SambaWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(io::Error::other("object already closed"));
        };
        match stdin.write_all(buf) {
            Ok(()) => Ok(buf.len()),
            // smbclient ended: say why.
            Err(_) => {
                let (kind, message) = match self.finish_upload() {
                    Ok(()) => (ErrorKind::Transient, "smbclient ended early".to_string()),
                    Err(e) => e,
                };
                Err(io_error(kind, format!("upload: {message}")))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for SambaWriter {
    /// Ends the upload, then renames the partial to the object's name.
    fn commit(mut self: Box<Self>) -> Result<(), DestinationError> {
        let store_err =
            |w: &SambaWriter, (kind, message): (ErrorKind, String)| DestinationError::Store {
                destination: w.share.destination.clone(),
                op: "upload",
                object: w.object.clone(),
                kind,
                message,
            };
        if let Err(e) = self.finish_upload() {
            let err = store_err(&self, e);
            self.discard();
            return Err(err);
        }
        let rename = format!("rename \"{}\" \"{}\"", self.partial, self.file);
        if let Err(e) = self.share.run("commit", &self.object, &rename) {
            self.discard();
            return Err(e);
        }
        self.closed = true;
        Ok(())
    }

    fn abort(mut self: Box<Self>) {
        self.discard();
    }
}

impl Drop for SambaWriter {
    /// Neither committed nor aborted: discard.
    fn drop(&mut self) {
        if !self.closed {
            self.discard();
        }
    }
}

/// An object being read: smbclient's `get NAME -`.
struct SambaReader {
    share: Arc<Share>,
    object: String,
    process: Process,
    stdout: ChildStdout,
    buf: Vec<u8>,
    at: usize,
    done: bool,
}

impl SambaReader {
    /// At the end of the data: did smbclient succeed (or was the object cut short)?
    fn finish(&mut self) -> Result<(), (ErrorKind, String)> {
        self.done = true;
        let timed_out = format!("smbclient did not finish reading {}", self.object);
        self.share.outcome(&mut self.process, Some(timed_out))
    }
}

impl Read for SambaReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at < self.buf.len() {
            let n = out.len().min(self.buf.len() - self.at);
            out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        if self.done {
            return Ok(0);
        }
        let n = self.stdout.read(out)?;
        if n == 0 {
            self.finish()
                .map_err(|(kind, message)| io_error(kind, format!("read: {message}")))?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(host: &str) -> SambaConfig {
        serde_json::from_value(serde_json::json!({
            "host": host, "share": "Backups", "workgroup": "WORKGROUP",
            "credentials": {"username": "backups", "password": "pw"}, "suffix": "gpg",
        }))
        .expect("config")
    }

    /// The destination of the original's docs/destinations/samba.md, verbatim, in a job.
    #[test]
    fn the_original_example_loads_unchanged() {
        let text = r#"{
  "sources": [{"id": "www", "name": "Web", "type": "folder", "path": "/srv/www",
               "passphrase": "pp"}],
  "destinations": [
{
  "id": "samba-backup",
  "type": "samba",
  "host": "server1.local.lan",
  "share": "Backups",
  "workgroup": "WORKGROUP",
  "credentials": {
    "username": "backups",
    "password": "your-password"
  },
  "suffix": "gpg"
}
  ]
}"#;
        let job = crate::job::parse(std::path::Path::new("job.json"), text).expect("parse");
        assert!(job.unknown_keys.is_empty(), "{:?}", job.unknown_keys);
        job.validate().expect("valid");
        let d = &job.destinations[0];
        let crate::destination::DestinationSpec::Samba(c) = &d.spec else {
            panic!("not samba: {:?}", d.spec);
        };
        assert_eq!(c.host_port(), ("server1.local.lan", None));
        assert_eq!(c.credentials.password.expose(), "your-password");
        let built = c.build(&d.id, Duration::from_secs(300)).expect("build");
        assert_eq!((built.id(), built.kind()), ("samba-backup", "samba"));
        assert!(!format!("{c:?}").contains("your-password"));
    }

    #[test]
    fn host_may_carry_a_port() {
        assert_eq!(
            config("server1.local.lan").host_port(),
            ("server1.local.lan", None)
        );
        assert_eq!(
            config("127.0.0.1:4450").host_port(),
            ("127.0.0.1", Some(4450))
        );
        assert!(config("127.0.0.1:4450").validate().is_ok());
        for bad in ["", "h:x", "h:0", "h/x", "a b", "h:"] {
            let e = config(bad).validate().expect_err(bad);
            assert_eq!(e.key, "host", "{bad}");
        }
    }

    #[test]
    fn a_password_on_two_lines_is_refused_without_showing_it() {
        let mut c = config("h");
        c.credentials.password = Secret::new("pw\nusername = root");
        let e = c.validate().expect_err("newline");
        assert_eq!(e.key, "credentials.password");
        assert!(!e.value.contains("pw"), "{e:?}");
    }
}
