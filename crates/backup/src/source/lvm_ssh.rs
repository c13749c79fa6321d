//! `type: lvm-ssh`: an LVM snapshot of a logical volume on another host, its image streamed
//! over the SSH transport ([`super::ssh`]).
//!
//! The original's sequence, with its keys (`vg_name`, `lv_name`, `size`, `retain_snapshots`)
//! and its names (snapshot `{lv}-{YYYYmmddHHMMSS}`, devices `/dev/mapper/{vg}-{lv}` with `-`
//! doubled, payload suffix `vol`): `lvcreate -L{size} -s -n SNAP ORIGIN`, then the snapshot's
//! image read with `dd` into the pipeline, then the old snapshots pruned. Snapshots are kept
//! (the newest `retain_snapshots`), as in the original. What custos does differently:
//! - pruning runs only after the new snapshot streamed successfully (the original pruned
//!   before reading, so a failed read could leave fewer good snapshots than asked for), and
//!   never removes the new snapshot;
//! - the `lvs` selection names the volume group too (`vg_name=VG && origin=LV`; the original
//!   selected `origin=LV` in every VG, so a same-named LV in another VG was counted and its
//!   snapshots' names were removed under this VG's path), and only snapshots named
//!   `{lv}-{14 digits}` (this source's) are ever pruned;
//! - each command is an argv list key (`lvcreate_command`, `lvs_command`, `lvremove_command`,
//!   `read_command`), so a deployment can put `sudo -n` in front and tests a stand-in;
//!   custos appends the operation's arguments (see [`LvmSshSource::lvcreate`] and friends).
//!
//! A failure to prune is logged as a warning and the run still succeeds: the data was read
//! from a good snapshot; only space on the remote VG is at stake.

use crate::cancel::Cancel;
use std::ffi::OsString;
use std::io::{self, Read};
use std::time::Duration;

use custos_kit::config::{Invalid, Validate};
use serde::Deserialize;

use super::process::Verdict;
use super::ssh::{ssh_source_config, words, SshTarget};
use super::{Source, SourceError, SourceStream};

/// The most `lvs` output read (a report of a few hundred LVs is far below).
const LVS_MAX_OUTPUT: usize = 4 << 20;

ssh_source_config! {
    /// `type: lvm-ssh`.
    pub struct LvmSshConfig {
        /// `vg_name`: the volume group.
        #[serde(alias = "vgname")]
        pub vg_name: String,
        /// `lv_name`: the logical volume to snapshot.
        #[serde(alias = "lvname")]
        pub lv_name: String,
        /// `size`: the snapshot's copy-on-write space (`lvcreate -L`), e.g. `5G`.
        pub size: String,
        /// `retain_snapshots`: how many of this source's snapshots stay on the host, the new
        /// one included (absent: none is removed).
        #[serde(default, deserialize_with = "custos_kit::config::values::count")]
        pub retain_snapshots: Option<u32>,
        /// custos `lvcreate_command` (default `["lvcreate"]`).
        #[serde(default, deserialize_with = "custos_kit::config::values::words")]
        pub lvcreate_command: Vec<String>,
        /// custos `lvs_command` (default `["lvs"]`).
        #[serde(default, deserialize_with = "custos_kit::config::values::words")]
        pub lvs_command: Vec<String>,
        /// custos `lvremove_command` (default `["lvremove"]`).
        #[serde(default, deserialize_with = "custos_kit::config::values::words")]
        pub lvremove_command: Vec<String>,
        /// custos `read_command` (default `["dd", "bs=4M", "status=none"]`; custos appends
        /// `if=DEVICE`).
        #[serde(default, deserialize_with = "custos_kit::config::values::words")]
        pub read_command: Vec<String>,
    }
}

impl LvmSshConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(LvmSshSource {
            id: id.to_owned(),
            name: name.to_owned(),
            config: self.clone(),
        })
    }
}

/// LVM's rule for VG and LV names (lvm(8) "VALID NAMES"): `A-Z a-z 0-9 + _ . -`, not
/// starting with `-`, not `.` or `..`, at most 127 characters.
fn lvm_name_ok(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-'))
}

/// `lvcreate -L` sizes: a number, a fraction allowed, and an optional unit letter.
fn size_ok(size: &str) -> bool {
    let digits = size.trim_end_matches(|c: char| "bBsSkKmMgGtTpPeE".contains(c));
    size.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|&c| c == '.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit())
}

impl Validate for LvmSshConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.ssh().validate()?;
        if !lvm_name_ok(&self.vg_name, 127) {
            return Err(Invalid::new(
                "vg_name",
                &self.vg_name,
                "must be an LVM name (A-Z a-z 0-9 + _ . -, not starting with '-')",
            ));
        }
        // The snapshot's name adds `-YYYYmmddHHMMSS` (15 characters).
        if !lvm_name_ok(&self.lv_name, 127 - 15) {
            return Err(Invalid::new(
                "lv_name",
                &self.lv_name,
                "must be an LVM name (A-Z a-z 0-9 + _ . -, not starting with '-', at most 112 characters)",
            ));
        }
        if !size_ok(&self.size) {
            return Err(Invalid::new(
                "size",
                &self.size,
                "must be an lvcreate -L size, e.g. 5G or 512M",
            ));
        }
        if self.retain_snapshots == Some(0) {
            return Err(Invalid::new(
                "retain_snapshots",
                0,
                "must be at least 1: the snapshot just read is never removed",
            ));
        }
        for (key, argv) in [
            ("lvcreate_command", &self.lvcreate_command),
            ("lvs_command", &self.lvs_command),
            ("lvremove_command", &self.lvremove_command),
            ("read_command", &self.read_command),
        ] {
            if argv
                .first()
                .is_some_and(|p| p.is_empty() || p.starts_with('-'))
            {
                return Err(Invalid::new(
                    key,
                    &argv[0],
                    "must start with the program, e.g. [\"sudo\", \"-n\", \"lvcreate\"]",
                ));
            }
        }
        Ok(())
    }
}

/// `/dev/mapper/{vg}-{lv}`, each `-` in the names doubled (device-mapper's escaping).
pub fn dev_mapper_name(vg: &str, lv: &str) -> String {
    format!(
        "/dev/mapper/{}-{}",
        vg.replace('-', "--"),
        lv.replace('-', "--")
    )
}

/// An LVM snapshot read on another host.
#[derive(Debug, Clone)]
pub struct LvmSshSource {
    id: String,
    name: String,
    config: LvmSshConfig,
}

/// A command key's argv, or its default.
fn argv(configured: &[String], default: &[&str]) -> Vec<OsString> {
    if configured.is_empty() {
        words(default.iter().copied())
    } else {
        words(configured.iter().cloned())
    }
}

impl LvmSshSource {
    /// `lvcreate -L{size} -s -n {snapshot} /dev/mapper/{vg}-{lv}`.
    pub fn lvcreate(&self, snapshot: &str) -> Vec<OsString> {
        let c = &self.config;
        let mut a = argv(&c.lvcreate_command, &["lvcreate"]);
        a.extend(words([
            format!("-L{}", c.size),
            "-s".into(),
            "-n".into(),
            snapshot.into(),
            dev_mapper_name(&c.vg_name, &c.lv_name),
        ]));
        a
    }

    /// `lvs --reportformat json -o lv_name,vg_name,origin -S 'vg_name=VG && origin=LV'`.
    pub fn lvs(&self) -> Vec<OsString> {
        let c = &self.config;
        let mut a = argv(&c.lvs_command, &["lvs"]);
        a.extend(words([
            "--reportformat".to_owned(),
            "json".into(),
            "-o".into(),
            "lv_name,vg_name,origin".into(),
            "-S".into(),
            format!("vg_name={} && origin={}", c.vg_name, c.lv_name),
        ]));
        a
    }

    /// `lvremove -f /dev/mapper/{vg}-{snapshot}`.
    pub fn lvremove(&self, snapshot: &str) -> Vec<OsString> {
        let c = &self.config;
        let mut a = argv(&c.lvremove_command, &["lvremove"]);
        a.extend(words([
            "-f".to_owned(),
            dev_mapper_name(&c.vg_name, snapshot),
        ]));
        a
    }

    /// `dd bs=4M status=none if=/dev/mapper/{vg}-{snapshot}`.
    pub fn read(&self, snapshot: &str) -> Vec<OsString> {
        let c = &self.config;
        let mut a = argv(&c.read_command, &["dd", "bs=4M", "status=none"]);
        a.push(format!("if={}", dev_mapper_name(&c.vg_name, snapshot)).into());
        a
    }

    /// The new snapshot's name: `{lv}-{YYYYmmddHHMMSS}`, local time as the original.
    fn snapshot_name(&self) -> String {
        format!(
            "{}-{}",
            self.config.lv_name,
            chrono::Local::now().format("%Y%m%d%H%M%S")
        )
    }
}

/// The part of `lvs --reportformat json` custos reads.
#[derive(Debug, Deserialize)]
struct LvsReport {
    report: Vec<LvsSection>,
}

#[derive(Debug, Deserialize)]
struct LvsSection {
    #[serde(default)]
    lv: Vec<LvsRow>,
}

#[derive(Debug, Deserialize)]
struct LvsRow {
    lv_name: String,
    #[serde(default)]
    vg_name: Option<String>,
    #[serde(default)]
    origin: Option<String>,
}

/// This source's earlier snapshots in an `lvs` JSON report, oldest first: in `vg`, of
/// `origin`, named `{origin}-{14 digits}`, other than `new`. Rows of other VGs or origins are
/// skipped even if the selection let them through (an `lvs` that ignored `-S`).
pub fn earlier_snapshots(
    json: &[u8],
    vg: &str,
    origin: &str,
    new: &str,
) -> Result<Vec<String>, serde_json::Error> {
    let report: LvsReport = serde_json::from_slice(json)?;
    let prefix = format!("{origin}-");
    let mut names: Vec<String> = report
        .report
        .into_iter()
        .flat_map(|s| s.lv)
        .filter(|r| r.vg_name.as_deref().is_none_or(|v| v == vg))
        .filter(|r| r.origin.as_deref() == Some(origin))
        .map(|r| r.lv_name)
        .filter(|n| {
            n != new
                && n.strip_prefix(&prefix)
                    .is_some_and(|s| s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

impl Source for LvmSshSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "lvm-ssh"
    }

    fn suffix(&self) -> &'static str {
        "vol"
    }

    /// Lists the origin's snapshots: proves the connection, the lvs command (and its sudo
    /// rule) and that the VG exists.
    fn check(&self, cancel: Cancel) -> Result<(), SourceError> {
        let out = self
            .config
            .ssh()
            .output("lvs", &self.lvs(), LVS_MAX_OUTPUT, cancel)?;
        earlier_snapshots(&out, &self.config.vg_name, &self.config.lv_name, "")
            .map(drop)
            .map_err(|e| {
                SourceError::permanent(format!(
                    "lvs on {}: unreadable JSON report: {e}",
                    self.config.ssh().display()
                ))
            })
    }

    fn open(&self, cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError> {
        let ssh = self.config.ssh();
        let snapshot = self.snapshot_name();
        tracing::info!(source = %self.id, host = %ssh.display(), snapshot = %snapshot, "creating LVM snapshot");
        ssh.check("lvcreate", &self.lvcreate(&snapshot), None, cancel)?;
        let stream = ssh.stream(
            "dd",
            &self.read(&snapshot),
            Verdict::zero_only,
            None,
            cancel,
        )?;
        Ok(Box::new(SnapshotStream {
            inner: Box::new(stream),
            source: self.clone(),
            ssh,
            snapshot,
            cancel,
        }))
    }
}

/// The snapshot's image; once it was read completely and its reader succeeded, the older
/// snapshots beyond `retain_snapshots` are removed.
struct SnapshotStream {
    inner: Box<dyn SourceStream>,
    source: LvmSshSource,
    ssh: SshTarget,
    snapshot: String,
    cancel: Cancel,
}

impl Read for SnapshotStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl SourceStream for SnapshotStream {
    fn finish(self: Box<Self>) -> Result<(), SourceError> {
        let SnapshotStream {
            inner,
            source,
            ssh,
            snapshot,
            cancel,
        } = *self;
        inner.finish()?;
        if let Some(retain) = source.config.retain_snapshots {
            source.prune(&ssh, &snapshot, retain, cancel);
        }
        Ok(())
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.inner.set_timeout(timeout);
    }
}

impl LvmSshSource {
    /// Removes this source's oldest snapshots so that `retain` remain, `new` (the one just
    /// read) included and never removed. Failures are warnings (see the module's doc).
    fn prune(&self, ssh: &SshTarget, new: &str, retain: u32, cancel: Cancel) {
        let c = &self.config;
        let id = &self.id;
        let listed = ssh
            .output("lvs", &self.lvs(), LVS_MAX_OUTPUT, cancel)
            .and_then(|out| {
                earlier_snapshots(&out, &c.vg_name, &c.lv_name, new).map_err(|e| {
                    SourceError::permanent(format!("unreadable JSON report from lvs: {e}"))
                })
            });
        let earlier = match listed {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(source = %id, "cannot list the snapshots to prune, none removed: {e}");
                return;
            }
        };
        let keep_earlier = usize::try_from(retain.saturating_sub(1)).unwrap_or(usize::MAX);
        let excess = earlier.len().saturating_sub(keep_earlier);
        for old in &earlier[..excess] {
            match ssh.check("lvremove", &self.lvremove(old), None, cancel) {
                Ok(()) => tracing::info!(source = %id, snapshot = %old, "removed old LVM snapshot"),
                Err(e) => {
                    tracing::warn!(source = %id, snapshot = %old, "cannot remove old LVM snapshot: {e}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lvs --reportformat json -S 'origin=data-lv'` (the original's selection) from lvm2
    /// 2.03.16 (Debian 12), captured on a host with two VGs that each hold an LV named
    /// `data-lv` with snapshots; see crates/backup/tests/fixtures/lvm/README.md.
    const UNQUALIFIED: &str = include_str!("../../tests/fixtures/lvm/lvs-origin-unqualified.json");
    /// The same host with custos' selection (`-o lv_name,vg_name,origin -S 'vg_name=custos-vg
    /// && origin=data-lv'`).
    const QUALIFIED: &str = include_str!("../../tests/fixtures/lvm/lvs-origin-qualified.json");

    fn config() -> LvmSshConfig {
        LvmSshConfig {
            sshhost: "vmhost".into(),
            sshuser: Some("root".into()),
            sshport: None,
            sshidentity: None,
            ssh_command: vec![],
            vg_name: "custos-vg".into(),
            lv_name: "data-lv".into(),
            size: "5G".into(),
            retain_snapshots: Some(3),
            lvcreate_command: vec![],
            lvs_command: vec![],
            lvremove_command: vec![],
            read_command: vec![],
        }
    }

    fn source(c: LvmSshConfig) -> LvmSshSource {
        LvmSshSource {
            id: "disk".into(),
            name: "Disk".into(),
            config: c,
        }
    }

    fn text(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn commands_follow_the_original_with_escaped_device_names_and_a_qualified_selection() {
        let s = source(config());
        let snap = "data-lv-20261207054501";
        assert_eq!(
            text(&s.lvcreate(snap)),
            [
                "lvcreate",
                "-L5G",
                "-s",
                "-n",
                snap,
                "/dev/mapper/custos--vg-data--lv"
            ]
        );
        assert_eq!(
            text(&s.lvs()),
            [
                "lvs",
                "--reportformat",
                "json",
                "-o",
                "lv_name,vg_name,origin",
                "-S",
                "vg_name=custos-vg && origin=data-lv"
            ]
        );
        assert_eq!(
            text(&s.lvremove(snap)),
            [
                "lvremove",
                "-f",
                "/dev/mapper/custos--vg-data--lv--20261207054501"
            ]
        );
        assert_eq!(
            text(&s.read(snap)),
            [
                "dd",
                "bs=4M",
                "status=none",
                "if=/dev/mapper/custos--vg-data--lv--20261207054501"
            ]
        );
        let mut c = config();
        c.lvcreate_command = vec!["sudo".into(), "-n".into(), "lvcreate".into()];
        c.read_command = vec!["sudo".into(), "-n".into(), "dd".into(), "bs=1M".into()];
        let s = source(c);
        assert_eq!(
            text(&s.lvcreate(snap))[..4],
            ["sudo", "-n", "lvcreate", "-L5G"]
        );
        assert_eq!(text(&s.read(snap))[..4], ["sudo", "-n", "dd", "bs=1M"]);
    }

    /// Real lvm2 output: the original's selection also lists `other-vg`'s snapshot of its
    /// own `data-lv`; it is never this source's to prune. The new snapshot is never listed.
    #[test]
    fn earlier_snapshots_are_this_vgs_oldest_first_without_the_new_one() {
        for json in [UNQUALIFIED, QUALIFIED] {
            assert_eq!(
                earlier_snapshots(
                    json.as_bytes(),
                    "custos-vg",
                    "data-lv",
                    "data-lv-20261207055002"
                )
                .unwrap(),
                ["data-lv-20261207054501"]
            );
        }
        assert_eq!(
            earlier_snapshots(UNQUALIFIED.as_bytes(), "other-vg", "data-lv", "").unwrap(),
            ["data-lv-20261201000000"]
        );
        // Another origin, a hand-made snapshot, a bad stamp: not ours.
        let json = br#"{"report":[{"lv":[
            {"lv_name":"data-lv-before-upgrade","vg_name":"vg","origin":"data-lv"},
            {"lv_name":"data-lv-2026120705450","vg_name":"vg","origin":"data-lv"},
            {"lv_name":"data-lv-20261207054501","vg_name":"vg","origin":"other"},
            {"lv_name":"data-lv-20261207054502","vg_name":"vg","origin":"data-lv"}]}]}"#;
        assert_eq!(
            earlier_snapshots(json, "vg", "data-lv", "").unwrap(),
            ["data-lv-20261207054502"]
        );
        assert!(earlier_snapshots(b"lvs: not json", "vg", "data-lv", "").is_err());
    }

    #[test]
    fn validate_refuses_names_sizes_and_commands_lvm_would_not_take() {
        config().validate().unwrap();
        for (key, edit) in [
            (
                "vg_name",
                (|c: &mut LvmSshConfig| c.vg_name = "-vg".into()) as fn(&mut LvmSshConfig),
            ),
            ("vg_name", |c| c.vg_name = "vg/x".into()),
            ("lv_name", |c| c.lv_name = "lv name".into()),
            ("lv_name", |c| c.lv_name = "x".repeat(113)),
            ("size", |c| c.size = "5 G".into()),
            ("size", |c| c.size = "G".into()),
            ("size", |c| c.size = "1.2.3G".into()),
            ("retain_snapshots", |c| c.retain_snapshots = Some(0)),
            ("read_command", |c| c.read_command = vec!["-x".into()]),
        ] {
            let mut c = config();
            edit(&mut c);
            assert_eq!(c.validate().unwrap_err().key, key);
        }
        for size in ["5G", "512m", "1.5T", "100"] {
            let mut c = config();
            c.size = size.into();
            c.validate().unwrap();
        }
    }
}
