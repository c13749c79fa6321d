//! `type: azure-managed-disk`: a copy snapshot of an Azure managed disk, streamed as a disk
//! image (object `{id}.disk...`).
//!
//! The original's sequence and names, over ARM's REST API ([`arm`]): a client-credentials
//! token for the service principal in `TENANT_ID`/`CLIENT_ID`/`CLIENT_KEY` (or the Azure
//! SDKs' `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`) -> `disks.get` -> snapshot
//! `{disk}-{YYYYmmddHHMMSS}` (`Copy`) tagged `source_resource_group`, `source_disk_name`,
//! `timestamp`, `created_by` -> prune this disk's tagged snapshots beyond `retain_snapshots`
//! -> `beginGetAccess` (Read) -> the SAS URL's blob streamed into the pipeline ([`blob`]).
//!
//! Unlike the original, read access to the new snapshot is revoked (`endGetAccess`) after
//! the read whatever happened: at `finish`, or when the stream is dropped (a failed
//! destination, SIGINT/SIGTERM). A grant a `kill -9` left open is revoked by the next run,
//! which revokes every open grant on this disk's tagged snapshots. Pruning never touches the
//! new snapshot nor a snapshot without the tags, and counts the new one among those kept.

use std::io::{self, Read};
use std::time::Duration;

use custos_kit::config::{values::count, Invalid, Validate};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Retry, Source, SourceError, SourceStream};
use crate::cancel::Cancel;

pub mod arm;
pub mod blob;
pub mod error;
pub mod pages;

use arm::{Arm, Credentials, OnSignal};
use blob::Blob;
use error::AzureError;

/// Public Azure's Entra ID authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Public Azure's Resource Manager.
pub const DEFAULT_ARM: &str = "https://management.azure.com";
/// The `created_by` tag, the original's value (so each tool prunes the other's snapshots).
const CREATED_BY: &str = "backups";
/// Longest wait for revoking access (also after a signal, well within its grace period).
const REVOKE_BUDGET: Duration = Duration::from_secs(20);

/// `type: azure-managed-disk`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureDiskConfig {
    /// `subscription_id`.
    pub subscription_id: String,
    /// `source_resource_group`: the disk's resource group.
    pub source_resource_group: String,
    /// `destination_resource_group`: where snapshots are made and pruned.
    pub destination_resource_group: String,
    /// `disk_name`.
    pub disk_name: String,
    /// `retain_snapshots`: this disk's tagged snapshots kept, the new one included (at
    /// least the new one is kept); absent: none is deleted (the original's docs call it
    /// optional, its code required it).
    #[serde(default, deserialize_with = "count")]
    pub retain_snapshots: Option<u32>,
    /// custos `authority_host` (default: public Azure; else `AZURE_AUTHORITY_HOST`).
    #[serde(default)]
    pub authority_host: Option<String>,
    /// custos `arm_endpoint` (default: public Azure), for sovereign clouds.
    #[serde(default)]
    pub arm_endpoint: Option<String>,
    /// custos `access_duration`: seconds the read grant (SAS) is valid (default 7200 as
    /// the original); it must cover the whole download.
    #[serde(default, deserialize_with = "count")]
    pub access_duration: Option<u32>,
    /// custos `wait_timeout`: seconds one Azure operation (the snapshot copy, the grant)
    /// may take (default 14400).
    #[serde(default, deserialize_with = "count")]
    pub wait_timeout: Option<u32>,
}

impl AzureDiskConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(AzureDiskSource {
            id: id.to_owned(),
            name: name.to_owned(),
            config: self.clone(),
        })
    }

    fn access_duration(&self) -> u32 {
        self.access_duration.unwrap_or(7200)
    }

    fn wait_budget(&self) -> Duration {
        Duration::from_secs(u64::from(self.wait_timeout.unwrap_or(14_400)))
    }
}

/// Checks a name that goes into an ARM path: ARM's own character set, so it can never
/// change the path (`/`, `?`, `..`).
fn arm_name(key: &str, v: &str, max: usize) -> Result<(), Invalid> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
        && !v.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            key,
            v,
            format!("must be 1-{max} letters, digits, `-`, `_`, `.`, `(`, `)`, not ending in `.`"),
        ))
    }
}

/// An `https://` endpoint without path, query or credentials.
fn endpoint(key: &str, v: &str) -> Result<(), Invalid> {
    match reqwest::Url::parse(v) {
        Ok(u)
            if u.scheme() == "https"
                && u.host_str().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && matches!(u.path(), "" | "/")
                && u.query().is_none() =>
        {
            Ok(())
        }
        _ => Err(Invalid::new(
            key,
            v,
            "must be an https:// URL without path, e.g. https://management.usgovcloudapi.net",
        )),
    }
}

impl Validate for AzureDiskConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.subscription_id.is_empty()
            || !self
                .subscription_id
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '-')
        {
            return Err(Invalid::new(
                "subscription_id",
                &self.subscription_id,
                "must be a subscription id (a GUID)",
            ));
        }
        arm_name("source_resource_group", &self.source_resource_group, 90)?;
        arm_name(
            "destination_resource_group",
            &self.destination_resource_group,
            90,
        )?;
        // The snapshot `{disk}-{14 digits}` must fit ARM's 80 characters.
        arm_name("disk_name", &self.disk_name, 80 - 15)?;
        if let Some(h) = &self.authority_host {
            endpoint("authority_host", h)?;
        }
        if let Some(h) = &self.arm_endpoint {
            endpoint("arm_endpoint", h)?;
        }
        let d = self.access_duration();
        if !(300..=604_800).contains(&d) {
            return Err(Invalid::new(
                "access_duration",
                d,
                "must be 300 to 604800 seconds and cover the whole download",
            ));
        }
        if self.wait_timeout == Some(0) {
            return Err(Invalid::new("wait_timeout", 0, "must be at least 1 second"));
        }
        Ok(())
    }
}

/// The first of `names` set (and not empty) in the environment.
fn env_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

/// The service principal from the environment; a missing variable names both spellings.
fn credentials_from_env() -> Result<Credentials, AzureError> {
    let need = |names: &[&str]| {
        env_var(names).ok_or_else(|| {
            AzureError::Credentials(format!(
                "{} is not set (the service principal's credentials come from the environment)",
                names.join(" or ")
            ))
        })
    };
    let tenant = need(&["TENANT_ID", "AZURE_TENANT_ID"])?;
    if !tenant
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
    {
        return Err(AzureError::Credentials(format!(
            "TENANT_ID {tenant:?} is not a tenant id or domain"
        )));
    }
    Ok(Credentials {
        tenant,
        client_id: need(&["CLIENT_ID", "AZURE_CLIENT_ID"])?,
        secret: custos_kit::config::Secret::new(need(&["CLIENT_KEY", "AZURE_CLIENT_SECRET"])?),
    })
}

/// A managed disk backed up through a snapshot.
#[derive(Debug, Clone)]
pub struct AzureDiskSource {
    id: String,
    name: String,
    config: AzureDiskConfig,
}

impl AzureDiskSource {
    fn arm(&self, cancel: Cancel) -> Result<Arm, AzureError> {
        let authority = self
            .config
            .authority_host
            .clone()
            .or_else(|| env_var(&["AZURE_AUTHORITY_HOST"]))
            .unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned());
        let endpoint = self.config.arm_endpoint.as_deref().unwrap_or(DEFAULT_ARM);
        Ok(Arm::new(
            endpoint,
            &authority,
            credentials_from_env()?,
            cancel,
        ))
    }

    fn group_path(&self, group: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.Compute",
            self.config.subscription_id
        )
    }

    fn disk_path(&self) -> String {
        format!(
            "{}/disks/{}",
            self.group_path(&self.config.source_resource_group),
            self.config.disk_name
        )
    }

    fn snapshot_path(&self, name: &str) -> String {
        format!(
            "{}/snapshots/{name}",
            self.group_path(&self.config.destination_resource_group)
        )
    }

    /// Creates the snapshot and waits until it is ready; its name.
    fn create_snapshot(&self, arm: &Arm) -> Result<String, AzureError> {
        let c = &self.config;
        let what = format!("reading disk {}/{}", c.source_resource_group, c.disk_name);
        let disk = arm
            .expect(
                &what,
                reqwest::Method::GET,
                &arm.url(&self.disk_path()),
                None,
                &[200],
            )?
            .json(&what)?;
        let (Some(disk_id), Some(location)) = (disk["id"].as_str(), disk["location"].as_str())
        else {
            return Err(AzureError::Answer {
                what,
                detail: "no id or location in the disk".into(),
            });
        };
        let now = chrono::Local::now();
        let name = format!("{}-{}", c.disk_name, now.format("%Y%m%d%H%M%S"));
        let body = json!({
            "location": location,
            "tags": {
                "source_resource_group": c.source_resource_group,
                "source_disk_name": c.disk_name,
                // The original's `time.mktime(...)`: seconds as a float.
                "timestamp": format!("{:.1}", now.timestamp() as f64),
                "created_by": CREATED_BY,
            },
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": disk_id},
                "incremental": false,
            },
        });
        let what = format!("creating snapshot {name}");
        tracing::info!(source = %self.id, snapshot = %name, "snapshotting disk {}", c.disk_name);
        let url = arm.url(&self.snapshot_path(&name));
        let started = arm.expect(
            &what,
            reqwest::Method::PUT,
            &url,
            Some(&body),
            &[200, 201, 202],
        )?;
        arm.wait(&what, &started, c.wait_budget(), OnSignal::Stop)?;
        let snap = arm
            .expect(&what, reqwest::Method::GET, &url, None, &[200])?
            .json(&what)?;
        match snap["properties"]["provisioningState"].as_str() {
            Some("Succeeded") => Ok(name),
            state => Err(AzureError::Answer {
                what,
                detail: format!(
                    "the snapshot is {} after its creation finished",
                    state.unwrap_or("in no state")
                ),
            }),
        }
    }

    /// Whether `s` is one of this disk's tagged snapshots; its timestamp.
    fn tagged(&self, s: &Value) -> Option<f64> {
        let tags = &s["tags"];
        (tags["source_resource_group"].as_str()? == self.config.source_resource_group
            && tags["source_disk_name"].as_str()? == self.config.disk_name)
            .then(|| tags["timestamp"].as_str()?.trim().parse::<f64>().ok())
            .flatten()
            .filter(|t| t.is_finite())
    }

    /// Revokes grants a killed run left open on this disk's snapshots, and deletes the
    /// oldest beyond `retain_snapshots` (revoke, then delete). Never `new`, never a
    /// snapshot without the tags. Failures are logged: today's copy matters more.
    fn prune(&self, arm: &Arm, new: &str) {
        let c = &self.config;
        let what = format!("listing snapshots in {}", c.destination_resource_group);
        let url = arm.url(&format!(
            "{}/snapshots",
            self.group_path(&c.destination_resource_group)
        ));
        let all = match arm.list(&what, &url) {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(source = %self.id, "cannot prune snapshots: {e}");
                return;
            }
        };
        let mut ours: Vec<Ours> = all
            .iter()
            .filter_map(|s| {
                let name = s["name"].as_str().filter(|n| *n != new)?;
                Some(Ours {
                    timestamp: self.tagged(s)?,
                    name: name.to_owned(),
                    open: s["properties"]["diskState"].as_str() == Some("ActiveSAS"),
                    failed: s["properties"]["provisioningState"].as_str() == Some("Failed"),
                    prune: false,
                })
            })
            .collect();
        // Newest first; the new snapshot is one of those kept, and a snapshot whose creation
        // failed holds nothing: it is removed and keeps no good one out.
        ours.sort_by(|a, b| {
            b.timestamp
                .total_cmp(&a.timestamp)
                .then_with(|| b.name.cmp(&a.name))
        });
        // Without `retain_snapshots` every good snapshot stays.
        let mut room = c
            .retain_snapshots
            .map_or(usize::MAX, |n| n.max(1) as usize - 1);
        for s in &mut ours {
            if s.failed || room == 0 {
                s.prune = true;
            } else {
                room -= 1;
            }
        }
        // Oldest first: a run stopped half-way has removed the least valuable ones.
        for Ours {
            name, open, prune, ..
        } in ours.iter().rev()
        {
            if !prune && !open {
                continue;
            }
            if let Err(e) = self.revoke(arm, name) {
                tracing::warn!(source = %self.id, snapshot = %name, "{e}");
                continue;
            }
            if !prune {
                tracing::warn!(source = %self.id, snapshot = %name,
                    "revoked the read access an interrupted earlier run left open");
                continue;
            }
            let what = format!("deleting snapshot {name}");
            let url = arm.url(&self.snapshot_path(name));
            let deleted = arm
                .expect(&what, reqwest::Method::DELETE, &url, None, &[200, 202, 204])
                .and_then(|a| arm.wait(&what, &a, c.wait_budget(), OnSignal::Stop));
            match deleted {
                Ok(_) => {
                    tracing::info!(source = %self.id, snapshot = %name, "deleted redundant snapshot")
                }
                Err(e) => tracing::warn!(source = %self.id, snapshot = %name, "{e}"),
            }
        }
    }

    /// `endGetAccess` on snapshot `name`, waited for (briefly).
    fn revoke(&self, arm: &Arm, name: &str) -> Result<(), AzureError> {
        revoke(
            arm,
            &arm.url(&format!("{}/endGetAccess", self.snapshot_path(name))),
            name,
        )
    }

    /// `beginGetAccess` (Read): the SAS URL of the snapshot's blob.
    fn grant(&self, arm: &Arm, name: &str) -> Result<String, AzureError> {
        let what = format!("granting read access to snapshot {name}");
        let url = arm.url(&format!("{}/beginGetAccess", self.snapshot_path(name)));
        let body = json!({"access": "Read", "durationInSeconds": self.config.access_duration()});
        let started = arm.expect(&what, reqwest::Method::POST, &url, Some(&body), &[200, 202])?;
        let result = arm.wait(&what, &started, self.config.wait_budget(), OnSignal::Stop)?;
        // Location's answer has it at the top, an operation status under properties.output.
        result["accessSAS"]
            .as_str()
            .or_else(|| result["properties"]["output"]["accessSAS"].as_str())
            .filter(|s| s.starts_with("https://"))
            .map(str::to_owned)
            .ok_or_else(|| AzureError::Answer {
                what,
                detail: "no https accessSAS in the answer".into(),
            })
    }
}

/// One of this disk's earlier snapshots, as pruning sees it.
struct Ours {
    timestamp: f64,
    name: String,
    /// Read access is granted (a run was killed during its download).
    open: bool,
    /// Its creation failed.
    failed: bool,
    /// Beyond `retain_snapshots`, or failed: to be deleted.
    prune: bool,
}

/// `endGetAccess` at `url` for snapshot `name`, waited for at most [`REVOKE_BUDGET`].
fn revoke(arm: &Arm, url: &str, name: &str) -> Result<(), AzureError> {
    let what = format!("revoking read access to snapshot {name}");
    let started = arm.expect(&what, reqwest::Method::POST, url, None, &[200, 202, 204])?;
    match arm.wait(&what, &started, REVOKE_BUDGET, OnSignal::Finish) {
        // Accepted: Azure revokes it even if we stop watching.
        Err(AzureError::Timeout { .. }) => {
            tracing::warn!(snapshot = %name, "revocation accepted; not confirmed within {} s", REVOKE_BUDGET.as_secs());
            Ok(())
        }
        r => r.map(drop),
    }
}

/// The read grant on the new snapshot: revoked exactly once, at `finish` or on drop.
struct Access {
    arm: Arm,
    url: String,
    snapshot: String,
    revoked: bool,
}

impl Access {
    fn revoke(&mut self) -> Result<(), AzureError> {
        if self.revoked {
            return Ok(());
        }
        self.revoked = true;
        revoke(&self.arm, &self.url, &self.snapshot)?;
        tracing::debug!(snapshot = %self.snapshot, "read access revoked");
        Ok(())
    }
}

impl Drop for Access {
    fn drop(&mut self) {
        if let Err(e) = self.revoke() {
            tracing::error!(snapshot = %self.snapshot, "{e}; the SAS URL stays valid until it expires");
        }
    }
}

/// The disk image being read; access is revoked when it ends.
struct DiskStream {
    blob: Blob,
    access: Access,
}

impl Read for DiskStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.blob.read(buf)
    }
}

impl SourceStream for DiskStream {
    fn finish(mut self: Box<Self>) -> Result<(), SourceError> {
        let complete = self.blob.complete();
        let (read, total) = self.blob.progress();
        let revoked = self.access.revoke();
        if !complete {
            return Err(SourceError::Unavailable {
                retry: Retry::Permanent,
                message: format!(
                    "snapshot {}: read {read} of {} bytes",
                    self.access.snapshot,
                    total.map_or("?".to_owned(), |t| t.to_string())
                ),
            });
        }
        // The copy is whole, but a SAS left valid is a leak the run must report.
        revoked.map_err(|e| SourceError::Unavailable {
            retry: Retry::Permanent,
            message: format!("{e}; the SAS URL stays valid until it expires"),
        })
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.blob.set_deadline(timeout);
    }
}

impl Source for AzureDiskSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "azure-managed-disk"
    }

    fn suffix(&self) -> &'static str {
        "disk"
    }

    /// Gets a token and reads the disk: proves credentials, endpoint and names.
    fn check(&self, cancel: Cancel) -> Result<(), SourceError> {
        let arm = self.arm(cancel)?;
        let what = format!(
            "reading disk {}/{}",
            self.config.source_resource_group, self.config.disk_name
        );
        arm.expect(
            &what,
            reqwest::Method::GET,
            &arm.url(&self.disk_path()),
            None,
            &[200],
        )?;
        Ok(())
    }

    fn open(&self, cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError> {
        let arm = self.arm(cancel)?;
        let name = self.create_snapshot(&arm)?;
        self.prune(&arm, &name);
        // From the request on, the guard revokes whatever the grant did.
        let mut access = Access {
            url: arm.url(&format!("{}/endGetAccess", self.snapshot_path(&name))),
            snapshot: name.clone(),
            revoked: false,
            arm,
        };
        let sas = match self.grant(&access.arm, &name) {
            Ok(sas) => sas,
            Err(e) => {
                let _ = access.revoke();
                return Err(e.into());
            }
        };
        tracing::info!(source = %self.id, snapshot = %name, from = %arm::origin(&sas), "downloading snapshot");
        Ok(Box::new(DiskStream {
            blob: Blob::new(sas, name, cancel),
            access,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AzureDiskConfig {
        AzureDiskConfig {
            subscription_id: "00000000-0000-0000-0000-000000000001".into(),
            source_resource_group: "prod-rg".into(),
            destination_resource_group: "backup-rg".into(),
            disk_name: "web01_OsDisk_1".into(),
            retain_snapshots: Some(3),
            authority_host: None,
            arm_endpoint: None,
            access_duration: None,
            wait_timeout: None,
        }
    }

    #[test]
    fn names_that_would_change_the_arm_path_are_refused() {
        config().validate().unwrap();
        type Change = fn(&mut AzureDiskConfig);
        let cases: [(&str, Change); 7] = [
            ("disk_name", |c| c.disk_name = "a/../b".into()),
            ("disk_name", |c| c.disk_name = "d?x=1".into()),
            ("source_resource_group", |c| {
                c.source_resource_group = "".into()
            }),
            ("subscription_id", |c| c.subscription_id = "../x".into()),
            ("arm_endpoint", |c| {
                c.arm_endpoint = Some("http://management.azure.com".into())
            }),
            ("authority_host", |c| {
                c.authority_host = Some("https://login.example/tenant".into())
            }),
            ("access_duration", |c| c.access_duration = Some(10)),
        ];
        for (key, set) in cases {
            let mut c = config();
            set(&mut c);
            assert_eq!(c.validate().unwrap_err().key, key);
        }
    }

    /// The original's documented example (docs/sources/azure-managed-disk.md) loads as
    /// written, plus the encryption every source needs.
    #[test]
    fn the_original_example_loads() {
        let text = r#"{"sources": [{
  "id": "mydisk1",
  "type": "azure-managed-disk",
  "name": "My Disk 1",
  "subscription_id": "285adaab-abcd-41cc-1234-9f256543d534",
  "source_resource_group": "MC_KUBERNETES_AZURECLUSTER1_NORTHEUROPE",
  "destination_resource_group": "MyBackupsResourceGroup",
  "disk_name": "mydisk1",
  "retain_snapshots": 3,
  "passphrase": "p"
}], "destinations": [{"id": "l", "type": "local", "path": "/b"}]}"#;
        let job = crate::job::parse(std::path::Path::new("/etc/backups/job.json"), text)
            .unwrap_or_else(|e| panic!("{e}"));
        job.validate().unwrap_or_else(|e| panic!("{e}"));
        match &job.sources[0].spec {
            super::super::SourceSpec::AzureManagedDisk(c) => {
                assert_eq!(c.disk_name, "mydisk1");
                assert_eq!(c.retain_snapshots, Some(3));
            }
            other => panic!("{other:?}"),
        }
    }

    /// Only this disk's snapshots with all tags and a readable timestamp are ours.
    #[test]
    fn tagged_snapshots_are_recognised_by_group_disk_and_timestamp() {
        let s = AzureDiskSource {
            id: "d".into(),
            name: "d".into(),
            config: config(),
        };
        let snap = |tags: Value| json!({"name": "x", "tags": tags});
        assert_eq!(
            s.tagged(&snap(json!({"source_resource_group": "prod-rg",
                "source_disk_name": "web01_OsDisk_1", "timestamp": "1700000000.0",
                "created_by": "backups"}))),
            Some(1_700_000_000.0)
        );
        for tags in [
            json!(null),
            json!({"source_resource_group": "prod-rg", "source_disk_name": "web01_OsDisk_1"}),
            json!({"source_resource_group": "other", "source_disk_name": "web01_OsDisk_1",
                   "timestamp": "1"}),
            json!({"source_resource_group": "prod-rg", "source_disk_name": "web01_OsDisk_1",
                   "timestamp": "NaN"}),
        ] {
            assert_eq!(s.tagged(&snap(tags.clone())), None, "{tags}");
        }
    }
}
