//! `type: rds` (MySQL/MariaDB) and `type: rds-pgsql`: a dump of a temporary copy of an RDS
//! instance, made from its newest automated snapshot, so the live database never carries
//! the dump's load.
//!
//! The original's sequence, with its defects fixed: newest automated snapshot of
//! `instancename` → restore to `tmp-{instancename[:20]}-{random}` (`instance_class`, not
//! multi-AZ, not public), tagged with its owner ([`super::Owner`]) → wait until available
//! (`wait_timeout`, default 4 h, polled every `poll_interval`; the original gave up after
//! 600 s) → modify (`security_group`, BackupRetentionPeriod=0, ApplyImmediately) → wait →
//! dump with the `mysql`/`pgsql` source's own code against the restored endpoint's address
//! *and port* (the original assumed 3306/5432). The temporary instance is deleted in the
//! engine's cleanup step whatever happened (SkipFinalSnapshot); a delete that fails fails the
//! run naming the instance (the original only logged it), and a `kill -9`'d run's instance is
//! found by its tags and deleted by the next run.

use crate::cancel::Cancel;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use custos_kit::config::values::{names, no_newline, opt_seconds, truthy, words};
use custos_kit::config::{Invalid, Secret, Validate};
use serde::Deserialize;

use super::aws::{
    self, param as p, Api, AwsCredentials, AwsError, Endpoint, Ignored, Tag, Waiting,
};
use super::mysql::{MysqlConfig, MysqlSource};
use super::pgsql::{PgsqlConfig, PgsqlSource};
use super::{CleanupError, Owner, Retry, Source, SourceError, SourceStream};

/// The original's default instance class (`rds-pgsql`; `rds` had the retired db.m1.small).
const DEFAULT_CLASS: &str = "db.t3.small";
/// How long a restore may take to become available (big instances take hours).
const DEFAULT_WAIT: f64 = 4.0 * 3600.0;
/// The original's poll interval.
const DEFAULT_POLL: f64 = 20.0;
/// Bounds of `wait_timeout` and `poll_interval`.
const MAX_WAIT: f64 = 7.0 * 86400.0;
/// The RDS Query API version.
const RDS_VERSION: &str = "2014-10-31";
/// States from which a restored instance never becomes available.
const DEAD_STATES: &[&str] = &[
    "failed",
    "incompatible-restore",
    "incompatible-parameters",
    "incompatible-network",
    "inaccessible-encryption-credentials",
    "storage-full",
    "deleting",
];

/// `type: rds` and `type: rds-pgsql` (the original's keys, plus custos `endpoint_url`,
/// `wait_timeout`, `poll_interval`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdsConfig {
    /// `instancename`: the RDS instance whose automated snapshots are restored.
    pub instancename: String,
    /// `region`.
    pub region: String,
    /// `security_group`: a VPC security group id (`sg-...`) or a DB security group name
    /// that lets this host reach the restored instance.
    #[serde(default)]
    pub security_group: Option<String>,
    /// `instance_class` of the temporary instance.
    #[serde(default)]
    pub instance_class: Option<String>,
    /// `credentials`; without them the standard AWS chain.
    #[serde(default)]
    pub credentials: Option<AwsCredentials>,
    /// custos `endpoint_url` (else `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// custos `wait_timeout`: seconds until the restored instance must be available.
    #[serde(default, deserialize_with = "opt_seconds")]
    pub wait_timeout: Option<f64>,
    /// custos `poll_interval`: seconds between status checks while waiting.
    #[serde(default, deserialize_with = "opt_seconds")]
    pub poll_interval: Option<f64>,
    /// `dbhost`: the original required it but dumped from the restored endpoint; accepted
    /// and ignored.
    #[serde(default)]
    pub dbhost: Option<String>,
    /// `dbuser`.
    #[serde(default)]
    pub dbuser: Option<String>,
    /// `dbpass`.
    #[serde(default)]
    pub dbpass: Option<Secret>,
    /// `dbname` (`rds`: one or several, none = all; `rds-pgsql`: exactly one).
    #[serde(default, deserialize_with = "names")]
    pub dbname: Vec<String>,
    /// `defaults`: an option file (`rds`) or pgpass file (`rds-pgsql`) instead of
    /// `dbuser`/`dbpass`.
    #[serde(default)]
    pub defaults: Option<PathBuf>,
    /// `options`: extra dump options.
    #[serde(default, deserialize_with = "words")]
    pub options: Vec<String>,
    /// `noevents` (`rds` only).
    #[serde(default, deserialize_with = "truthy")]
    pub noevents: bool,
}

/// `type: rds-pgsql`: the same keys, dumped with pg_dump.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct RdsPgsqlConfig(pub RdsConfig);

/// Which dump runs against the restored instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Mysql,
    Pgsql,
}

impl RdsConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(RdsSource::new(id, name, self, Engine::Mysql))
    }

    fn mysql(&self, host: &str, port: u16) -> MysqlConfig {
        MysqlConfig {
            dbhost: Some(host.to_owned()),
            dbport: Some(port),
            dbuser: self.dbuser.clone(),
            dbpass: self.dbpass.clone(),
            dbname: crate::source::databases::DbName::one_object(&self.dbname),
            defaults: self.defaults.clone(),
            options: self.options.clone(),
            noevents: self.noevents,
        }
    }

    fn pgsql(&self, host: &str, port: u16) -> PgsqlConfig {
        PgsqlConfig {
            dbhost: Some(host.to_owned()),
            dbport: Some(port),
            dbuser: self.dbuser.clone(),
            dbpass: self.dbpass.clone(),
            dbname: crate::source::databases::DbName::One(
                self.dbname.first().cloned().unwrap_or_default(),
            ),
            format: crate::source::pgsql::DumpFormat::Plain,
            defaults: self.defaults.clone(),
            options: self.options.clone(),
        }
    }

    fn wait(&self) -> Duration {
        Duration::from_secs_f64(self.wait_timeout.unwrap_or(DEFAULT_WAIT))
    }

    fn poll(&self) -> Duration {
        Duration::from_secs_f64(self.poll_interval.unwrap_or(DEFAULT_POLL))
    }
}

impl RdsPgsqlConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(RdsSource::new(id, name, &self.0, Engine::Pgsql))
    }
}

impl Validate for RdsConfig {
    fn validate(&self) -> Result<(), Invalid> {
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !id_ok(&self.instancename) {
            return Err(Invalid::new(
                "instancename",
                &self.instancename,
                "must be an RDS instance identifier (letters, digits, hyphens; at most 63)",
            ));
        }
        aws::check_region(&self.region)?;
        if let Some(url) = &self.endpoint_url {
            aws::check_endpoint(url)?;
        }
        aws::check_seconds("wait_timeout", self.wait_timeout, MAX_WAIT)?;
        aws::check_seconds("poll_interval", self.poll_interval, 3600.0)?;
        if self.poll() > self.wait() {
            return Err(Invalid::new(
                "poll_interval",
                self.poll().as_secs_f64(),
                "must not be longer than wait_timeout",
            ));
        }
        if let Some(p) = &self.dbpass {
            no_newline("dbpass", p)?;
        }
        // The dump's own checks, on the keys it will get.
        self.mysql("h", 1).validate()
    }
}

impl Validate for RdsPgsqlConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.0.validate()?;
        if self.0.dbname.len() != 1 {
            return Err(Invalid::new(
                "dbname",
                self.0.dbname.join(" "),
                "rds-pgsql dumps exactly one database",
            ));
        }
        if self.0.noevents {
            return Err(Invalid::new(
                "noevents",
                "1",
                "is a MySQL option (type rds)",
            ));
        }
        self.0.pgsql("h", 1).validate()
    }
}

/// What this run created and who it belongs to.
#[derive(Debug, Default)]
struct State {
    owner: Option<Owner>,
    /// The temporary instance, from the moment its restore may have started.
    instance: Option<String>,
}

/// A dump of a temporary restore of an RDS instance's newest automated snapshot.
pub struct RdsSource {
    id: String,
    name: String,
    config: RdsConfig,
    engine: Engine,
    state: Mutex<State>,
}

/// One DB instance of a DescribeDBInstances reply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DbInstance {
    #[serde(rename = "DBInstanceIdentifier", default)]
    identifier: String,
    #[serde(rename = "DBInstanceStatus", default)]
    status: String,
    #[serde(default)]
    endpoint: Option<DbEndpoint>,
    #[serde(default)]
    tag_list: Option<TagList>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DbEndpoint {
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TagList {
    #[serde(rename = "Tag", default)]
    tags: Vec<Tag>,
}

#[derive(Debug, Default, Deserialize)]
struct Instances {
    #[serde(rename = "DescribeDBInstancesResult")]
    result: InstancesResult,
}

#[derive(Debug, Default, Deserialize)]
struct InstancesResult {
    #[serde(rename = "DBInstances", default)]
    instances: InstanceList,
    #[serde(rename = "Marker", default)]
    marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct InstanceList {
    #[serde(rename = "DBInstance", default)]
    items: Vec<DbInstance>,
}

#[derive(Debug, Default, Deserialize)]
struct Snapshots {
    #[serde(rename = "DescribeDBSnapshotsResult")]
    result: SnapshotsResult,
}

#[derive(Debug, Default, Deserialize)]
struct SnapshotsResult {
    #[serde(rename = "DBSnapshots", default)]
    snapshots: SnapshotList,
    #[serde(rename = "Marker", default)]
    marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SnapshotList {
    #[serde(rename = "DBSnapshot", default)]
    items: Vec<DbSnapshot>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DbSnapshot {
    #[serde(rename = "DBSnapshotIdentifier", default)]
    identifier: String,
    /// ISO 8601, UTC: sorts as text.
    #[serde(default)]
    snapshot_create_time: String,
    #[serde(default)]
    status: String,
}

impl RdsSource {
    fn new(id: &str, name: &str, config: &RdsConfig, engine: Engine) -> Self {
        RdsSource {
            id: id.to_owned(),
            name: name.to_owned(),
            config: config.clone(),
            engine,
            state: Mutex::new(State::default()),
        }
    }

    fn api(&self) -> Result<Api, AwsError> {
        Api::new(
            Endpoint {
                service: "rds",
                version: RDS_VERSION,
                region: self.config.region.clone(),
                url: self.config.endpoint_url.clone(),
            },
            self.config.credentials.as_ref(),
        )
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn resource(&self, api: &Api, instance: &str) -> String {
        format!("RDS instance {instance} in {}", api.region())
    }

    /// Every instance of the account in the region (DescribeDBInstances, paged by Marker).
    fn instances(&self, api: &Api, only: Option<&str>) -> Result<Vec<DbInstance>, AwsError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..aws::MAX_PAGES {
            let mut params = vec![p("MaxRecords", "100")];
            if let Some(id) = only {
                params = vec![p("DBInstanceIdentifier", id)];
            }
            if let Some(m) = &marker {
                params.push(p("Marker", m.clone()));
            }
            let page: Instances = api.call("DescribeDBInstances", &params)?;
            out.extend(page.result.instances.items);
            match page.result.marker.filter(|m| !m.is_empty()) {
                Some(m) if marker.as_ref() != Some(&m) => marker = Some(m),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    /// The newest available automated snapshot of `instancename`.
    fn newest_snapshot(&self, api: &Api) -> Result<DbSnapshot, SourceError> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..aws::MAX_PAGES {
            let mut params = vec![
                p("DBInstanceIdentifier", self.config.instancename.clone()),
                p("SnapshotType", "automated"),
            ];
            if let Some(m) = &marker {
                params.push(p("Marker", m.clone()));
            }
            let page: Snapshots = api.call("DescribeDBSnapshots", &params)?;
            all.extend(page.result.snapshots.items);
            match page.result.marker.filter(|m| !m.is_empty()) {
                Some(m) if marker.as_ref() != Some(&m) => marker = Some(m),
                _ => break,
            }
        }
        all.into_iter()
            .filter(|s| s.status == "available")
            .max_by(|a, b| a.snapshot_create_time.cmp(&b.snapshot_create_time))
            .ok_or_else(|| SourceError::Unavailable {
                retry: Retry::Permanent,
                message: format!(
                    "no available automated snapshot of RDS instance '{}' in {}",
                    self.config.instancename,
                    api.region()
                ),
            })
    }

    /// `tmp-{instancename[:20]}-{10000..99999}` (the original's name), never ending a part
    /// in a hyphen (RDS refuses `--`).
    fn temporary_name(&self) -> String {
        let base = custos_kit::text::prefix(&self.config.instancename, 20).trim_end_matches('-');
        format!(
            "tmp-{base}-{}",
            rand::Rng::gen_range(&mut rand::thread_rng(), 10000..100000)
        )
    }

    /// Polls until `instance` is available; its endpoint.
    fn wait_available(
        &self,
        api: &Api,
        instance: &str,
        cancel: Cancel,
    ) -> Result<DbEndpoint, SourceError> {
        let what = self.resource(api, instance);
        let waiting = Waiting {
            timeout: self.config.wait(),
            poll: self.config.poll(),
            cancel,
        };
        let mut last = String::new();
        waiting.until(&what, || {
            let found = self
                .instances(api, Some(instance))?
                .into_iter()
                .find(|i| i.identifier == instance);
            let Some(i) = found else {
                return Ok(Err("missing".to_owned()));
            };
            // Each change once (a restore may take hours of polls).
            if i.status != last {
                tracing::info!(source = %self.id, instance, status = %i.status, "temporary instance");
                last.clone_from(&i.status);
            }
            if DEAD_STATES.contains(&i.status.as_str()) {
                return Err(SourceError::Unavailable {
                    retry: Retry::Permanent,
                    message: format!("{what}: status {}", i.status),
                });
            }
            if i.status != "available" {
                return Ok(Err(i.status));
            }
            match i.endpoint.filter(|e| !e.address.is_empty()) {
                Some(e) => Ok(Ok(e)),
                None => Ok(Err("available, without an endpoint yet".to_owned())),
            }
        })
    }

    /// Restores, waits, modifies, waits: the endpoint to dump from.
    fn restore(&self, api: &Api, cancel: Cancel) -> Result<DbEndpoint, SourceError> {
        let snapshot = self.newest_snapshot(api)?;
        let instance = self.temporary_name();
        tracing::info!(source = %self.id, snapshot = %snapshot.identifier, %instance, "restoring a temporary RDS instance");
        let mut params = vec![
            p("DBInstanceIdentifier", instance.clone()),
            p("DBSnapshotIdentifier", snapshot.identifier.clone()),
            p(
                "DBInstanceClass",
                self.config
                    .instance_class
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CLASS.to_owned()),
            ),
            p("MultiAZ", "false"),
            p("PubliclyAccessible", "false"),
        ];
        if let Some(owner) = &self.state().owner {
            for (i, (k, v)) in aws::owner_tags(owner).into_iter().enumerate() {
                params.push(p(&format!("Tags.Tag.{}.Key", i + 1), k));
                params.push(p(&format!("Tags.Tag.{}.Value", i + 1), v));
            }
        }
        match api.call::<Ignored>("RestoreDBInstanceFromDBSnapshot", &params) {
            Ok(_) => self.state().instance = Some(instance.clone()),
            Err(e) => {
                // No answer: the restore may have started; cleanup deletes it if so.
                if matches!(e, AwsError::Transport { .. }) {
                    self.state().instance = Some(instance.clone());
                }
                return Err(e.into());
            }
        }
        self.wait_available(api, &instance, cancel)?;
        let mut params = vec![
            p("DBInstanceIdentifier", instance.clone()),
            p("BackupRetentionPeriod", "0"),
            p("ApplyImmediately", "true"),
        ];
        match self.config.security_group.as_deref() {
            Some(sg) if sg.starts_with("sg-") => {
                params.push(p("VpcSecurityGroupIds.VpcSecurityGroupId.1", sg))
            }
            Some(sg) => params.push(p("DBSecurityGroups.DBSecurityGroupName.1", sg)),
            None => {}
        }
        api.call::<Ignored>("ModifyDBInstance", &params)?;
        self.wait_available(api, &instance, cancel)
    }

    /// Deletes `instance` (no final snapshot); gone already is fine. Transient failures are
    /// tried three times, unless the run was interrupted.
    fn delete(&self, api: &Api, instance: &str, cancel: Cancel) -> Result<(), CleanupError> {
        let params = [
            p("DBInstanceIdentifier", instance),
            p("SkipFinalSnapshot", "true"),
            p("DeleteAutomatedBackups", "true"),
        ];
        let mut attempt = 0;
        loop {
            attempt += 1;
            match api.call::<Ignored>("DeleteDBInstance", &params) {
                Ok(_) => {
                    tracing::info!(source = %self.id, %instance, "deleted the temporary RDS instance");
                    return Ok(());
                }
                Err(e) if e.code() == Some("DBInstanceNotFound") => return Ok(()),
                // Interrupted: one try, within the signal's grace period (the next run
                // deletes what is left).
                Err(e)
                    if e.retry() == Retry::Transient && attempt < 3 && !cancel.is_cancelled() =>
                {
                    tracing::warn!(source = %self.id, %instance, "delete failed, retrying: {e}");
                    std::thread::sleep(Duration::from_secs(attempt));
                }
                Err(e) => {
                    return Err(CleanupError {
                        resource: self.resource(api, instance),
                        message: format!("not deleted: {e}"),
                        retry: e.retry(),
                    })
                }
            }
        }
    }
}

impl Source for RdsSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        match self.engine {
            Engine::Mysql => "rds",
            Engine::Pgsql => "rds-pgsql",
        }
    }

    fn suffix(&self) -> &'static str {
        "sql"
    }

    /// Credentials, permission and an automated snapshot to restore (nothing is created).
    fn check(&self, _cancel: Cancel) -> Result<(), SourceError> {
        let api = self.api()?;
        self.newest_snapshot(&api).map(|_| ())
    }

    fn open(&self, cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError> {
        let api = self.api()?;
        let endpoint = self.restore(&api, cancel)?;
        let port = endpoint.port.unwrap_or(match self.engine {
            Engine::Mysql => 3306,
            Engine::Pgsql => 5432,
        });
        tracing::info!(source = %self.id, address = %endpoint.address, port, "dumping the restored instance");
        match self.engine {
            Engine::Mysql => MysqlSource::new(
                &self.id,
                &self.name,
                &self.config.mysql(&endpoint.address, port),
            )
            .open(cancel),
            Engine::Pgsql => PgsqlSource::new(
                &self.id,
                &self.name,
                &self.config.pgsql(&endpoint.address, port),
            )
            .open(cancel),
        }
    }

    /// Deletes this source's temporary instances that a killed run left (tagged with
    /// `owner`, named `tmp-`).
    fn prepare(&self, owner: &Owner, cancel: Cancel) -> Result<Vec<String>, CleanupError> {
        self.state().owner = Some(owner.clone());
        let api = self.api().map_err(|e| CleanupError {
            resource: format!("temporary RDS instances of source '{}'", self.id),
            message: e.to_string(),
            retry: e.retry(),
        })?;
        let all = self.instances(&api, None).map_err(|e| CleanupError {
            resource: format!(
                "temporary RDS instances of source '{}' in {}",
                self.id,
                api.region()
            ),
            message: format!("cannot look for leftovers: {e}"),
            retry: e.retry(),
        })?;
        let mut removed = Vec::new();
        for i in all {
            let tags = i.tag_list.map(|t| t.tags).unwrap_or_default();
            if !i.identifier.starts_with("tmp-") || !aws::owned_by(&tags, owner) {
                continue;
            }
            if i.status != "deleting" {
                tracing::warn!(source = %self.id, instance = %i.identifier, "deleting the temporary RDS instance a killed run left");
                self.delete(&api, &i.identifier, cancel)?;
            }
            removed.push(self.resource(&api, &i.identifier));
        }
        Ok(removed)
    }

    fn cleanup(&self, cancel: Cancel) -> Vec<CleanupError> {
        let Some(instance) = self.state().instance.take() else {
            return Vec::new();
        };
        let result = self
            .api()
            .map_err(|e| CleanupError {
                resource: format!("RDS instance {instance} in {}", self.config.region),
                message: format!("not deleted: {e}"),
                retry: e.retry(),
            })
            .and_then(|api| self.delete(&api, &instance, cancel));
        result.err().into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RdsConfig {
        serde_json::from_value(serde_json::json!({
            "instancename": "orders-primary-database-eu",
            "region": "eu-west-1",
            "dbuser": "backup",
            "dbpass": "pw",
            "dbname": "orders",
        }))
        .unwrap()
    }

    #[test]
    fn the_temporary_name_is_the_originals_and_a_valid_identifier() {
        let s = RdsSource::new("db", "DB", &config(), Engine::Mysql);
        let n = s.temporary_name();
        assert!(n.starts_with("tmp-orders-primary-datab-"), "{n}");
        let mut c = config();
        c.instancename = "abcdefghijklmnopqrs-tail".into();
        let n = RdsSource::new("db", "DB", &c, Engine::Mysql).temporary_name();
        assert!(
            n.starts_with("tmp-abcdefghijklmnopqrs-") && !n.contains("--"),
            "{n}"
        );
        let rand: u32 = n.rsplit('-').next().unwrap().parse().unwrap();
        assert!((10000..100000).contains(&rand));
    }

    #[test]
    fn waits_and_names_are_checked() {
        assert!(config().validate().is_ok());
        assert_eq!(config().wait(), Duration::from_secs(4 * 3600));
        let mut c = config();
        c.wait_timeout = Some(0.0);
        assert_eq!(c.validate().unwrap_err().key, "wait_timeout");
        let mut c = config();
        c.poll_interval = Some(f64::NAN);
        assert_eq!(c.validate().unwrap_err().key, "poll_interval");
        let mut c = config();
        c.wait_timeout = Some(10.0);
        c.poll_interval = Some(20.0);
        assert_eq!(c.validate().unwrap_err().key, "poll_interval");
        let mut c = config();
        c.instancename = "a b".into();
        assert_eq!(c.validate().unwrap_err().key, "instancename");
        let mut c = config();
        c.endpoint_url = Some("localhost:5000".into());
        assert_eq!(c.validate().unwrap_err().key, "endpoint_url");
        let mut c = config();
        c.dbname = vec!["a".into(), "b".into()];
        assert!(c.validate().is_ok());
        assert_eq!(RdsPgsqlConfig(c).validate().unwrap_err().key, "dbname");
    }

    #[test]
    fn the_dump_gets_the_restored_address_and_port() {
        let c = config();
        let m = c.mysql("10.0.0.5", 3310);
        assert_eq!(
            (m.dbhost.as_deref(), m.dbport, m.dbname.clone()),
            (
                Some("10.0.0.5"),
                Some(3310),
                crate::source::databases::DbName::One("orders".into())
            )
        );
        let pg = c.pgsql("10.0.0.6", 5440);
        assert_eq!(
            (pg.dbhost.as_deref(), pg.dbport, pg.dbname.clone()),
            (
                Some("10.0.0.6"),
                Some(5440),
                crate::source::databases::DbName::One("orders".into())
            )
        );
    }

    #[test]
    fn replies_are_read_with_tags_endpoints_and_markers() {
        let xml = r#"<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstancesResult><DBInstances><DBInstance><DBInstanceIdentifier>tmp-a-12345</DBInstanceIdentifier><DBInstanceStatus>creating</DBInstanceStatus><Endpoint><Address>127.0.0.1</Address><Port>3307</Port></Endpoint><TagList><Tag><Key>custos:source</Key><Value>db</Value></Tag></TagList></DBInstance><DBInstance><DBInstanceIdentifier>b</DBInstanceIdentifier><DBInstanceStatus>available</DBInstanceStatus><TagList/></DBInstance></DBInstances><Marker>m2</Marker></DescribeDBInstancesResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></DescribeDBInstancesResponse>"#;
        let r: Instances = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(r.result.marker.as_deref(), Some("m2"));
        let i = &r.result.instances.items;
        assert_eq!(i.len(), 2);
        assert_eq!(i[0].endpoint.as_ref().unwrap().port, Some(3307));
        assert_eq!(i[0].tag_list.as_ref().unwrap().tags[0].value, "db");
        assert_eq!(i[1].status, "available");
        let empty: Instances = quick_xml::de::from_str("<DescribeDBInstancesResponse><DescribeDBInstancesResult><DBInstances/></DescribeDBInstancesResult></DescribeDBInstancesResponse>").unwrap();
        assert!(empty.result.instances.items.is_empty());
    }
}
