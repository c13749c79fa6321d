//! `type: snapshot`: EBS snapshots of the named volumes (`volume_id`) or of every volume
//! attached to an instance (`instance_id`), tagged with their owner ([`super::Owner`]),
//! waited for until complete, and `retain_snapshots` kept per volume. The original's type
//! never ran (an abstract class, an undefined attribute, `create_image` on the wrong
//! object); custos defines it as above.
//!
//! There is no payload: the snapshot ids are this source's result in the run report, and no
//! object is written at the destinations. Retention deletes only snapshots that carry this
//! job's and this source's tags, never this run's, never anyone else's.

use crate::cancel::Cancel;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use custos_kit::config::values::{count, names, opt_seconds};
use custos_kit::config::{Invalid, Validate};
use serde::Deserialize;

use super::aws::{
    self, param as p, Api, AwsCredentials, AwsError, Endpoint, Ignored, Tag, Waiting,
};
use super::{CleanupError, Owner, Retry, Source, SourceError, SourceStream};

/// The EC2 Query API version.
const EC2_VERSION: &str = "2016-11-15";
/// Snapshots of big volumes take hours.
const DEFAULT_WAIT: f64 = 4.0 * 3600.0;
const DEFAULT_POLL: f64 = 15.0;
const MAX_WAIT: f64 = 7.0 * 86400.0;

/// `type: snapshot` (the original's `volume_id`, `availability_zone`, `credentials`, plus
/// custos `instance_id`, `region`, `retain_snapshots`, `endpoint_url`, `wait_timeout`,
/// `poll_interval`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// `volume_id`: one volume, several separated by spaces, or a list.
    #[serde(default, deserialize_with = "names")]
    pub volume_id: Vec<String>,
    /// `instance_id`: snapshot every volume attached to this instance.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// `region` (else taken from `availability_zone`).
    #[serde(default)]
    pub region: Option<String>,
    /// `availability_zone` (the original's key; gives the region when `region` is absent).
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// `retain_snapshots`: snapshots of this source kept per volume, this run's included
    /// (absent: all are kept).
    #[serde(default, deserialize_with = "count")]
    pub retain_snapshots: Option<u32>,
    /// `credentials`; without them the standard AWS chain.
    #[serde(default)]
    pub credentials: Option<AwsCredentials>,
    /// `endpoint_url` (else `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// `wait_timeout`: seconds until every snapshot must be complete.
    #[serde(default, deserialize_with = "opt_seconds")]
    pub wait_timeout: Option<f64>,
    /// `poll_interval`: seconds between status checks.
    #[serde(default, deserialize_with = "opt_seconds")]
    pub poll_interval: Option<f64>,
}

impl SnapshotConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(SnapshotSource {
            id: id.to_owned(),
            name: name.to_owned(),
            config: self.clone(),
            owner: Mutex::new(None),
        })
    }

    /// `region`, else `availability_zone` without its zone letter (`eu-west-1b`).
    fn region(&self) -> Option<String> {
        self.region.clone().or_else(|| {
            self.availability_zone.as_deref().map(|az| {
                az.trim_end_matches(|c: char| c.is_ascii_lowercase())
                    .to_owned()
            })
        })
    }
}

impl Validate for SnapshotConfig {
    fn validate(&self) -> Result<(), Invalid> {
        match (&self.volume_id[..], &self.instance_id) {
            ([], None) => {
                return Err(Invalid::new(
                    "volume_id",
                    "",
                    "name the volumes (volume_id) or an instance (instance_id)",
                ))
            }
            ([_, ..], Some(i)) => {
                return Err(Invalid::new(
                    "instance_id",
                    i,
                    "give volume_id or instance_id, not both",
                ))
            }
            _ => {}
        }
        if let Some(v) = self.volume_id.iter().find(|v| !v.starts_with("vol-")) {
            return Err(Invalid::new(
                "volume_id",
                v,
                "must be an EBS volume id (vol-...)",
            ));
        }
        if let Some(i) = self.instance_id.as_deref().filter(|i| !i.starts_with("i-")) {
            return Err(Invalid::new(
                "instance_id",
                i,
                "must be an EC2 instance id (i-...)",
            ));
        }
        match (&self.region, self.region()) {
            (_, None) => {
                return Err(Invalid::new(
                    "region",
                    "",
                    "required (or availability_zone)",
                ))
            }
            (Some(_), Some(r)) => aws::check_region(&r)?,
            (None, Some(r)) => aws::check_region(&r).map_err(|_| {
                Invalid::new(
                    "availability_zone",
                    self.availability_zone.as_deref().unwrap_or_default(),
                    "must be an availability zone such as eu-west-1b",
                )
            })?,
        }
        if self.retain_snapshots == Some(0) {
            return Err(Invalid::new(
                "retain_snapshots",
                0,
                "must be at least 1 (this run's snapshot is always kept)",
            ));
        }
        if let Some(url) = &self.endpoint_url {
            aws::check_endpoint(url)?;
        }
        aws::check_seconds("wait_timeout", self.wait_timeout, MAX_WAIT)?;
        aws::check_seconds("poll_interval", self.poll_interval, 3600.0)?;
        Ok(())
    }
}

/// EBS snapshots of volumes.
pub struct SnapshotSource {
    id: String,
    name: String,
    config: SnapshotConfig,
    owner: Mutex<Option<Owner>>,
}

/// One `<item>` of a DescribeSnapshots `snapshotSet` (or a CreateSnapshot reply).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    #[serde(default)]
    snapshot_id: String,
    #[serde(default)]
    volume_id: String,
    #[serde(default)]
    status: String,
    /// ISO 8601, UTC: sorts as text.
    #[serde(default)]
    start_time: String,
    #[serde(default)]
    state_message: Option<String>,
    #[serde(default)]
    tag_set: Option<Items<Tag>>,
}

#[derive(Debug, Clone, Deserialize)]
struct Items<T> {
    #[serde(rename = "item", default)]
    items: Vec<T>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items { items: Vec::new() }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotPage {
    #[serde(default)]
    snapshot_set: Items<Snapshot>,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    #[serde(default)]
    volume_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumePage {
    #[serde(default)]
    volume_set: Items<Volume>,
    #[serde(default)]
    next_token: Option<String>,
}

/// Reads every page of an EC2 `Describe*` call (paged by `NextToken`).
fn pages<T>(
    api: &Api,
    action: &'static str,
    params: &[(String, String)],
    mut read: impl FnMut(T) -> Option<String>,
) -> Result<(), AwsError>
where
    T: serde::de::DeserializeOwned,
{
    let mut token: Option<String> = None;
    for _ in 0..aws::MAX_PAGES {
        let mut all = params.to_vec();
        if let Some(t) = &token {
            all.push(p("NextToken", t.clone()));
        }
        let next = read(api.call(action, &all)?).filter(|t| !t.is_empty());
        match next {
            Some(t) if token.as_ref() != Some(&t) => token = Some(t),
            _ => return Ok(()),
        }
    }
    Ok(())
}

impl SnapshotSource {
    fn api(&self) -> Result<Api, AwsError> {
        Api::new(
            Endpoint {
                service: "ec2",
                version: EC2_VERSION,
                region: self.config.region().unwrap_or_default(),
                url: self.config.endpoint_url.clone(),
            },
            self.config.credentials.as_ref(),
        )
    }

    /// The volumes to snapshot: `volume_id`, or those attached to `instance_id`.
    fn volumes(&self, api: &Api) -> Result<Vec<String>, SourceError> {
        let Some(instance) = &self.config.instance_id else {
            return Ok(self.config.volume_id.clone());
        };
        let mut out = Vec::new();
        let params = [
            p("Filter.1.Name", "attachment.instance-id"),
            p("Filter.1.Value.1", instance.clone()),
        ];
        pages(api, "DescribeVolumes", &params, |page: VolumePage| {
            out.extend(page.volume_set.items.into_iter().map(|v| v.volume_id));
            page.next_token
        })?;
        if out.is_empty() {
            return Err(SourceError::Unavailable {
                retry: Retry::Permanent,
                message: format!(
                    "no EBS volume attached to instance {instance} in {}",
                    api.region()
                ),
            });
        }
        Ok(out)
    }

    /// Snapshots matching `params` (DescribeSnapshots, every page).
    fn describe(&self, api: &Api, params: &[(String, String)]) -> Result<Vec<Snapshot>, AwsError> {
        let mut out = Vec::new();
        pages(api, "DescribeSnapshots", params, |page: SnapshotPage| {
            out.extend(page.snapshot_set.items);
            page.next_token
        })?;
        Ok(out)
    }

    /// Polls until every snapshot in `ids` is complete.
    fn wait(&self, api: &Api, ids: &[String], cancel: Cancel) -> Result<(), SourceError> {
        let waiting = Waiting {
            timeout: Duration::from_secs_f64(self.config.wait_timeout.unwrap_or(DEFAULT_WAIT)),
            poll: Duration::from_secs_f64(self.config.poll_interval.unwrap_or(DEFAULT_POLL)),
            cancel,
        };
        waiting.until(&format!("EBS snapshots {}", ids.join(", ")), || {
            let snaps = self.describe(api, &aws::numbered("SnapshotId", ids))?;
            if let Some(bad) = snaps.iter().find(|s| s.status == "error") {
                return Err(SourceError::Unavailable {
                    retry: Retry::Transient,
                    message: format!(
                        "EBS snapshot {} of {} failed: {}",
                        bad.snapshot_id,
                        bad.volume_id,
                        bad.state_message.as_deref().unwrap_or("status error")
                    ),
                });
            }
            let pending: Vec<&str> = ids
                .iter()
                .filter(|id| {
                    !snaps
                        .iter()
                        .any(|s| &s.snapshot_id == *id && s.status == "completed")
                })
                .map(String::as_str)
                .collect();
            Ok(match pending[..] {
                [] => Ok(()),
                _ => Err(format!("pending: {}", pending.join(", "))),
            })
        })
    }

    /// Deletes this source's snapshots beyond `retain_snapshots` per volume, newest kept,
    /// this run's (`made`) always kept; returns the ids deleted.
    fn retain(
        &self,
        api: &Api,
        owner: &Owner,
        made: &[String],
        keep: usize,
    ) -> Result<Vec<String>, SourceError> {
        let [(job_key, job), (source_key, source)] = aws::owner_tags(owner);
        let params = [
            p("Owner.1", "self"),
            p("Filter.1.Name", format!("tag:{job_key}")),
            p("Filter.1.Value.1", job),
            p("Filter.2.Name", format!("tag:{source_key}")),
            p("Filter.2.Value.1", source),
        ];
        let mut per_volume: BTreeMap<String, Vec<Snapshot>> = BTreeMap::new();
        for s in self.describe(api, &params)? {
            // The filter already says so; checked again so that a server ignoring it
            // never makes us delete someone else's snapshot.
            let tags = s.tag_set.as_ref().map(|t| &t.items[..]).unwrap_or_default();
            if aws::owned_by(tags, owner) {
                per_volume.entry(s.volume_id.clone()).or_default().push(s);
            }
        }
        let mut deleted = Vec::new();
        for (volume, mut snaps) in per_volume {
            // This run's first, then newest first.
            snaps.sort_by(|a, b| {
                let ours = |s: &Snapshot| made.contains(&s.snapshot_id);
                ours(b)
                    .cmp(&ours(a))
                    .then_with(|| b.start_time.cmp(&a.start_time))
            });
            for old in snaps.iter().skip(keep) {
                if made.contains(&old.snapshot_id) {
                    continue;
                }
                api.call::<Ignored>(
                    "DeleteSnapshot",
                    &[p("SnapshotId", old.snapshot_id.clone())],
                )
                .map_err(|e| SourceError::Unavailable {
                    retry: e.retry(),
                    message: format!(
                        "retain_snapshots: EBS snapshot {} of {volume} not deleted: {e}",
                        old.snapshot_id
                    ),
                })?;
                tracing::info!(source = %self.id, snapshot = %old.snapshot_id, %volume, "deleted an old snapshot (retain_snapshots)");
                deleted.push(old.snapshot_id.clone());
            }
        }
        Ok(deleted)
    }
}

impl Source for SnapshotSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "snapshot"
    }

    fn suffix(&self) -> &'static str {
        "snapshot"
    }

    /// Credentials, permission and the volumes (nothing is created).
    fn check(&self, _cancel: Cancel) -> Result<(), SourceError> {
        let api = self.api()?;
        let volumes = self.volumes(&api)?;
        pages(
            &api,
            "DescribeVolumes",
            &aws::numbered("VolumeId", &volumes),
            |page: VolumePage| page.next_token,
        )
        .map_err(SourceError::from)
    }

    fn open(&self, _cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError> {
        Err(SourceError::Unavailable {
            retry: Retry::Permanent,
            message: format!("source '{}': snapshot has no payload to stream", self.id),
        })
    }

    fn prepare(&self, owner: &Owner, _cancel: Cancel) -> Result<Vec<String>, CleanupError> {
        *self.owner.lock().unwrap_or_else(|p| p.into_inner()) = Some(owner.clone());
        Ok(Vec::new())
    }

    fn payload(&self) -> bool {
        false
    }

    fn make(&self, cancel: Cancel) -> Result<Vec<String>, SourceError> {
        let owner = self
            .owner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| Owner {
                job: String::new(),
                source: self.id.clone(),
            });
        let api = self.api()?;
        let volumes = self.volumes(&api)?;
        let mut made = Vec::new();
        for volume in &volumes {
            let mut params = vec![
                p("VolumeId", volume.clone()),
                p(
                    "Description",
                    format!("custos backup: source {} ({})", self.id, self.name),
                ),
                p("TagSpecification.1.ResourceType", "snapshot"),
            ];
            for (i, (k, v)) in aws::owner_tags(&owner).into_iter().enumerate() {
                params.push(p(&format!("TagSpecification.1.Tag.{}.Key", i + 1), k));
                params.push(p(&format!("TagSpecification.1.Tag.{}.Value", i + 1), v));
            }
            let s: Snapshot = api.call("CreateSnapshot", &params)?;
            tracing::info!(source = %self.id, %volume, snapshot = %s.snapshot_id, "snapshot started");
            made.push(s.snapshot_id);
        }
        self.wait(&api, &made, cancel)?;
        if let Some(keep) = self.config.retain_snapshots {
            let deleted = self.retain(&api, &owner, &made, keep as usize)?;
            tracing::info!(source = %self.id, deleted = deleted.len(), "retain_snapshots applied");
        }
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: serde_json::Value) -> SnapshotConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn volumes_or_an_instance_and_a_region_are_required() {
        let ok = config(
            serde_json::json!({"volume_id": "vol-1 vol-2", "availability_zone": "eu-west-1b"}),
        );
        assert!(ok.validate().is_ok());
        assert_eq!(ok.volume_id, ["vol-1", "vol-2"]);
        assert_eq!(ok.region().as_deref(), Some("eu-west-1"));
        let e = config(serde_json::json!({"region": "eu-west-1"}))
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "volume_id");
        let e = config(
            serde_json::json!({"volume_id": "vol-1", "instance_id": "i-1", "region": "eu-west-1"}),
        )
        .validate()
        .unwrap_err();
        assert_eq!(e.key, "instance_id");
        let e = config(serde_json::json!({"volume_id": "vol-1"}))
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "region");
        let e = config(serde_json::json!({"volume_id": "disk1", "region": "eu-west-1"}))
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "volume_id");
        let e = config(
            serde_json::json!({"volume_id": "vol-1", "region": "eu-west-1", "retain_snapshots": 0}),
        )
        .validate()
        .unwrap_err();
        assert_eq!(e.key, "retain_snapshots");
    }

    #[test]
    fn snapshot_pages_are_read_with_tags_and_tokens() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><snapshotSet><item><tagSet><item><key>custos:source</key><value>x</value></item></tagSet><snapshotId>snap-1</snapshotId><volumeId>vol-1</volumeId><status>completed</status><startTime>2026-12-07T05:32:10.000Z</startTime></item><item><snapshotId>snap-2</snapshotId><volumeId>vol-1</volumeId><status>pending</status></item></snapshotSet><nextToken>t2</nextToken><requestId>r</requestId></DescribeSnapshotsResponse>"#;
        let page: SnapshotPage = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(page.next_token.as_deref(), Some("t2"));
        let s = &page.snapshot_set.items;
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tag_set.as_ref().unwrap().items[0].key, "custos:source");
        assert_eq!(
            (s[1].snapshot_id.as_str(), s[1].status.as_str()),
            ("snap-2", "pending")
        );
    }
}
