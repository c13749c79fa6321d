//! Serde types for the JSON documents burp's status port sends.
//!
//! burp 3.1.4 writes these with yajl (`src/server/monitor/json_output.c`). The model is lenient
//! on purpose: unknown fields are ignored (newer servers add some), optional fields default, and
//! one malformed client entry is skipped and counted instead of failing the whole `c:` reply,
//! so a single odd client cannot blind the exporter to the other 1,999.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// Why a document could not be turned into the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The bytes are not the JSON object we expect (names the reason and where).
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The server answered with `{"warning": ...}` instead of data.
    #[error("burp warning: {0}")]
    Warning(String),
    /// The reply parsed but lacks what was asked for.
    #[error("{0}")]
    Missing(String),
}

/// A `c:`/`c:<client>` reply: the clients that could be read plus what had to be skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientList {
    pub clients: Vec<Client>,
    /// One message per entry left out: a client entry that could not be read, or a repeated
    /// client name, log name or child (each counted as a parse error).
    pub skipped: Vec<String>,
}

/// One client as burp reports it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Client {
    pub name: String,
    /// Labels from the client's `label = ...` settings.
    #[serde(default)]
    pub labels: Vec<String>,
    /// `idle`, `running` (burp 3.1.4 knows no others; "unknown" otherwise).
    #[serde(default)]
    pub run_status: String,
    #[serde(default)]
    pub protocol: Option<i64>,
    /// Child processes working for this client; only when something runs.
    #[serde(default)]
    pub children: Vec<Child>,
    /// For `c:` the current and the working/finishing backup; for `c:<client>` all, newest first.
    #[serde(default)]
    pub backups: Vec<Backup>,
    /// Old servers (before children, burp <= 2.1.x, or any asked with `j:peer_version=2.1.8`):
    /// the running backup's phase, here instead of in `children`. Moved into a [`Child`] by
    /// [`parse_clients`].
    #[serde(default)]
    phase: Option<String>,
}

/// A server child process working for a client (a backup, restore, verify, list...).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Child {
    #[serde(default, deserialize_with = "lenient_u64")]
    pub pid: u64,
    /// Number of the backup this child works on.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub backup: u64,
    /// `backup`, `restore`, `verify`, `list`, `delete`, `diff` or `unknown`.
    #[serde(default)]
    pub action: String,
    /// `scanning`, `backup`, `merging`, `shuffling`, `listing`, `restoring`...
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub counters: Counters,
}

/// One backup of a client.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Backup {
    #[serde(deserialize_with = "lenient_u64")]
    pub number: u64,
    /// Unix time the backup started.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp: i64,
    /// `hardlinked`, `deletable`, `working`, `finishing`, `current`, `manifest`.
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub logs: Logs,
    /// Old servers: the counters of the running backup, on its `working` entry.
    #[serde(default)]
    counters: Counters,
}

/// The logs a backup has, and the content of the one that was asked for.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Logs {
    /// Names of the logs present: `backup`, `restore`, `verify`, `backup_stats`, ...
    #[serde(default)]
    pub list: Vec<String>,
    /// Lines of the `backup_stats` log when requested with `...:l:backup_stats`.
    #[serde(default)]
    pub backup_stats: Option<Vec<String>>,
}

impl Backup {
    /// Whether the backup carries `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Whether the backup is complete (neither `working` nor `finishing`).
    pub fn is_complete(&self) -> bool {
        !self.has_flag("working") && !self.has_flag("finishing")
    }

    /// Whether the backup has the log `name` (as listed in `logs.list`).
    pub fn has_log(&self, name: &str) -> bool {
        self.logs.list.iter().any(|l| l == name)
    }
}

impl Client {
    /// The most recent completed backup (flag `current`), as `burp -a S` shows it.
    pub fn current(&self) -> Option<&Backup> {
        self.backups.iter().find(|b| b.has_flag("current"))
    }

    /// Whether a backup is in progress: one with flag `working` or `finishing`, or a running
    /// child whose action is `backup`. burp 3.1.4 sometimes leaves the `working` entry out of
    /// `c:` while its child is listed (seen with requests < 2 s apart), so both count.
    pub fn has_in_progress(&self) -> bool {
        self.backups.iter().any(|b| !b.is_complete())
            || self.children.iter().any(|c| c.action == "backup")
    }
}

/// burp's counters (`do_counters` in json_output.c): per entry type or a single value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Counters(pub Vec<Counter>);

/// One counter. Tabulated ones (files, directories, grand_total...) carry all of
/// count/changed/same/deleted/scanned; single ones (bytes, warnings, time_start...) only `count`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Counter {
    #[serde(default)]
    pub name: String,
    /// One-letter command code (`f` files, `Z` grand total, `O` bytes, ...).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// For tabulated counters: new entries.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub count: u64,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub changed: Option<u64>,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub same: Option<u64>,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub deleted: Option<u64>,
    /// Seen in phase 1 (the file system scan).
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub scanned: Option<u64>,
}

/// A tabulated counter as `burp -a S` prints it: New, Changed, Unchanged, Deleted, Scanned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub scanned: u64,
}

impl Tally {
    /// Entries in the backup: new + changed + unchanged (burp's "Total" column).
    pub fn total(&self) -> u64 {
        self.new
            .saturating_add(self.changed)
            .saturating_add(self.unchanged)
    }

    fn add(self, o: Tally) -> Tally {
        Tally {
            new: self.new.saturating_add(o.new),
            changed: self.changed.saturating_add(o.changed),
            unchanged: self.unchanged.saturating_add(o.unchanged),
            deleted: self.deleted.saturating_add(o.deleted),
            scanned: self.scanned.saturating_add(o.scanned),
        }
    }
}

impl Counters {
    /// The counter called `name`, if burp sent it (it omits single counters that are zero).
    pub fn get(&self, name: &str) -> Option<&Counter> {
        self.0.iter().find(|c| c.name == name)
    }

    /// The `count` of `name`; burp omits zero single counters, so absent means 0.
    pub fn value(&self, name: &str) -> u64 {
        self.get(name).map_or(0, |c| c.count)
    }

    /// A tabulated counter; absent means all zero.
    pub fn tally(&self, name: &str) -> Tally {
        self.get(name).map_or_else(Tally::default, |c| Tally {
            new: c.count,
            changed: c.changed.unwrap_or(0),
            unchanged: c.same.unwrap_or(0),
            deleted: c.deleted.unwrap_or(0),
            scanned: c.scanned.unwrap_or(0),
        })
    }

    /// Regular files, plain and encrypted.
    pub fn files(&self) -> Tally {
        self.tally("files").add(self.tally("files_encrypted"))
    }

    /// A timestamp counter (`time_start`, `time_end`), if present and not zero.
    pub fn time(&self, name: &str) -> Option<i64> {
        self.get(name)
            .and_then(|c| i64::try_from(c.count).ok())
            .filter(|t| *t > 0)
    }
}

/// What the `backup_stats` log of a finished backup says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupStats {
    /// Bytes in the backup (`bytes`).
    pub bytes: u64,
    /// Bytes the client estimated in phase 1 (`bytes_estimated`).
    pub bytes_estimated: u64,
    /// Bytes received from the client (`bytes_received`), i.e. what changed.
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Regular files (plain + encrypted).
    pub files: Tally,
    /// All entries (files, directories, links, meta data...).
    pub grand_total: Tally,
    pub warnings: u64,
    pub errors: u64,
    pub time_start: Option<i64>,
    pub time_end: Option<i64>,
}

impl BackupStats {
    /// Reads the stats out of burp's counters.
    pub fn from_counters(c: &Counters) -> BackupStats {
        BackupStats {
            bytes: c.value("bytes"),
            bytes_estimated: c.value("bytes_estimated"),
            bytes_received: c.value("bytes_received"),
            bytes_sent: c.value("bytes_sent"),
            files: c.files(),
            grand_total: c.tally("grand_total"),
            warnings: c.value("warnings"),
            errors: c.value("errors"),
            time_start: c.time("time_start"),
            time_end: c.time("time_end"),
        }
    }

    /// How long the backup took, when both ends are known and in order.
    pub fn duration_seconds(&self) -> Option<i64> {
        match (self.time_start, self.time_end) {
            (Some(s), Some(e)) if e >= s => Some(e - s),
            _ => None,
        }
    }
}

/// The top level of every reply: either clients or a warning.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default)]
    clients: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    warning: Option<String>,
}

/// Parses a `c:` or `c:<client>[:b:<n>]` reply.
///
/// Client entries that do not match the model are skipped and reported in
/// [`ClientList::skipped`]; a document that is not JSON, or a warning, is an error.
pub fn parse_clients(doc: &[u8]) -> Result<ClientList, ModelError> {
    let reply: Reply = serde_json::from_slice(doc)?;
    let raw = match (reply.clients, reply.warning) {
        (Some(c), _) => c,
        (None, Some(w)) => return Err(ModelError::Warning(w)),
        (None, None) => {
            return Err(ModelError::Missing(
                "reply has neither \"clients\" nor \"warning\"".into(),
            ))
        }
    };
    let mut list = ClientList::default();
    let mut names = std::collections::HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        match serde_json::from_str::<Client>(r.get()) {
            Ok(c) if names.contains(&c.name) => list.skipped.push(format!(
                "clients[{i}]: client {:?} listed again; the first entry is used",
                c.name
            )),
            Ok(mut c) => {
                c.children_from_old_format();
                c.drop_repeats(&mut list.skipped);
                names.insert(c.name.clone());
                list.clients.push(c);
            }
            Err(e) => list.skipped.push(format!("clients[{i}]: {e}")),
        }
    }
    Ok(list)
}

impl Client {
    /// Old servers put the phase on the client and the running backup's counters on its
    /// `working` (or `finishing`) backup entry, without `children`: make the child the new
    /// format would list. Old servers do not say its pid: 0.
    fn children_from_old_format(&mut self) {
        let phase = self.phase.take();
        let running = self
            .backups
            .iter_mut()
            .find(|b| !b.is_complete() && !b.counters.0.is_empty());
        let (Some(phase), Some(b), true) = (phase, running, self.children.is_empty()) else {
            return;
        };
        self.children.push(Child {
            pid: 0,
            backup: b.number,
            action: "backup".to_owned(),
            phase,
            counters: std::mem::take(&mut b.counters),
        });
    }

    /// Removes repeated log names and children (same pid and action), keeping the first:
    /// each would be a duplicate series, and Prometheus rejects a scrape that has one.
    fn drop_repeats(&mut self, skipped: &mut Vec<String>) {
        let name = &self.name;
        for b in &mut self.backups {
            let mut seen = std::collections::HashSet::new();
            b.logs.list.retain(|log| {
                let first = seen.insert(log.clone());
                if !first {
                    skipped.push(format!(
                        "client {name:?} backup {}: log {log:?} listed again",
                        b.number
                    ));
                }
                first
            });
        }
        let mut seen = std::collections::HashSet::new();
        self.children.retain(|ch| {
            let first = seen.insert((ch.pid, ch.action.clone()));
            if !first {
                skipped.push(format!(
                    "client {name:?}: child {} ({}) listed again",
                    ch.pid, ch.action
                ));
            }
            first
        });
    }
}

/// The `backup_stats` log document: `{"counters":[...]}`.
#[derive(Deserialize)]
struct StatsDoc {
    #[serde(default)]
    counters: Counters,
}

/// Parses the reply to `c:<client>:b:<number>:l:backup_stats`.
///
/// burp sends the log file line by line as a JSON array of strings; joined, the lines are a
/// JSON document of counters.
pub fn parse_backup_stats(
    doc: &[u8],
    client: &str,
    number: u64,
) -> Result<BackupStats, ModelError> {
    let list = parse_clients(doc)?;
    let c = list
        .clients
        .iter()
        .find(|c| c.name == client)
        .ok_or_else(|| ModelError::Missing(format!("reply lacks client {client:?}")))?;
    let b = c
        .backups
        .iter()
        .find(|b| b.number == number)
        .ok_or_else(|| ModelError::Missing(format!("reply lacks backup {number} of {client:?}")))?;
    let lines = b.logs.backup_stats.as_ref().ok_or_else(|| {
        ModelError::Missing(format!(
            "backup {number} of {client:?} has no backup_stats log"
        ))
    })?;
    let text = lines.join("\n");
    let stats: StatsDoc = serde_json::from_str(&text)?;
    Ok(BackupStats::from_counters(&stats.counters))
}

/// Summary of a client's full backup list (`c:<client>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// Completed backups.
    pub count: u64,
    pub oldest_timestamp: Option<i64>,
    pub newest_timestamp: Option<i64>,
}

impl History {
    /// Summarises the completed backups of `client`.
    pub fn of(client: &Client) -> History {
        let done = client.backups.iter().filter(|b| b.is_complete());
        let mut h = History::default();
        for b in done {
            h.count += 1;
            h.oldest_timestamp = Some(
                h.oldest_timestamp
                    .map_or(b.timestamp, |t| t.min(b.timestamp)),
            );
            h.newest_timestamp = Some(
                h.newest_timestamp
                    .map_or(b.timestamp, |t| t.max(b.timestamp)),
            );
        }
        h
    }
}

// --- lenient numbers ---------------------------------------------------------------------
// burp prints counters with yajl_gen_integer (long long): a u64 above i64::MAX arrives negative,
// and other tools may write floats. None of that should cost us the whole client.

struct NumVisitor;

impl Visitor<'_> for NumVisitor {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        v.trim()
            .parse::<f64>()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

/// Exact u64 where possible: the float path above would round large values.
struct U64Visitor;

impl Visitor<'_> for U64Visitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        // A u64 counter above i64::MAX printed as long long: reinterpret it.
        Ok(v as u64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        if v.is_finite() && v >= 0.0 {
            Ok(v as u64)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        v.trim()
            .parse::<u64>()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(U64Visitor)
}

fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    lenient_u64(d).map(Some)
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = d.deserialize_any(NumVisitor)?;
    if v.is_finite() {
        Ok(v as i64)
    } else {
        Err(de::Error::custom("timestamp is not a finite number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn old_format_gives_the_same_child_as_the_new_one() {
        // A 3.1.4 server's replies for one running backup, to a new and to an old peer
        // (`j:peer_version=2.1.8`), as captured by `real_server::old_format_...`.
        let counters = r#"[{"name":"files","type":"f","count":203,"changed":0,"same":0,"deleted":3,"scanned":204},{"name":"bytes_estimated","type":"G","count":2097844},{"name":"bytes","type":"O","count":2622132},{"name":"time_start","type":"b","count":1796174133}]"#;
        let new = format!(
            r#"{{"clients":[{{"name":"t","run_status":"running","protocol":1,"children":[{{"pid":12295,"backup":2,"action":"backup","phase":"backup","counters":{counters}}}],"backups":[{{"number":1,"timestamp":1,"flags":["current"],"logs":{{"list":["backup"]}}}},{{"number":2,"timestamp":2,"flags":["working"],"logs":{{"list":["backup"]}}}}]}}]}}"#
        );
        let old = format!(
            r#"{{"clients":[{{"name":"t","run_status":"running","protocol":1,"phase":"backup","backups":[{{"number":1,"timestamp":1,"flags":["current"],"logs":{{"list":["backup"]}}}},{{"number":2,"timestamp":2,"flags":["working"],"counters":{counters},"logs":{{"list":["backup"]}}}}]}}]}}"#
        );
        let mut new = parse_clients(new.as_bytes()).unwrap();
        let old = parse_clients(old.as_bytes()).unwrap();
        assert_eq!(old.clients[0].children[0].pid, 0, "old servers give no pid");
        new.clients[0].children[0].pid = 0;
        assert_eq!(old, new);
        // An idle client of an old server: no phase, no child.
        let idle = parse_clients(br#"{"clients":[{"name":"t","run_status":"idle","backups":[{"number":1,"flags":["current"]}]}]}"#).unwrap();
        assert!(idle.clients[0].children.is_empty());
    }

    #[test]
    fn repeated_clients_logs_and_children_keep_the_first() {
        let doc = br#"{"clients":[
            {"name":"a","run_status":"idle","backups":[{"number":1,"flags":["current"],"logs":{"list":["backup","x","backup","x"]}}]},
            {"name":"a","run_status":"running","backups":[]},
            {"name":"b","run_status":"running","children":[
                {"pid":7,"backup":2,"action":"backup","phase":"scanning"},
                {"pid":7,"backup":2,"action":"backup","phase":"backup"}]}]}"#;
        let l = parse_clients(doc).unwrap();
        assert_eq!(l.clients.len(), 2);
        assert_eq!(l.clients[0].run_status, "idle", "the first entry wins");
        assert_eq!(l.clients[0].backups[0].logs.list, ["backup", "x"]);
        assert_eq!(l.clients[1].children.len(), 1);
        assert_eq!(l.clients[1].children[0].phase, "scanning");
        assert_eq!(l.skipped.len(), 4, "{:?}", l.skipped);
        assert!(l
            .skipped
            .iter()
            .any(|s| s.contains("client \"a\" listed again")));
        assert!(l
            .skipped
            .iter()
            .any(|s| s.contains("log \"x\" listed again")));
    }

    #[test]
    fn idle_server_client_list() {
        let l = parse_clients(&data("c.json")).unwrap();
        assert!(l.skipped.is_empty());
        assert_eq!(l.clients.len(), 2);
        let mon = &l.clients[0];
        assert_eq!(mon.name, "monitor");
        assert_eq!(mon.run_status, "idle");
        assert!(mon.current().is_none());
        assert!(!mon.has_in_progress());
        let tc = &l.clients[1];
        assert_eq!(tc.name, "testclient");
        let cur = tc.current().unwrap();
        assert_eq!((cur.number, cur.timestamp), (1, 1795300217));
        assert!(cur.has_log("backup_stats"));
        assert!(cur.has_flag("manifest"));
        assert!(tc.children.is_empty());
    }

    #[test]
    fn backup_child_without_working_entry_is_in_progress() {
        let doc = br#"{"clients":[{"name":"a","run_status":"running","children":[{"pid":1,"backup":2,"action":"backup","phase":"scanning","counters":[]}],"backups":[{"number":1,"timestamp":1,"flags":["current"]}]},{"name":"b","run_status":"running","children":[{"pid":2,"backup":1,"action":"restore","phase":"restoring","counters":[]}],"backups":[{"number":1,"timestamp":1,"flags":["current"]}]}]}"#;
        let l = parse_clients(doc).unwrap();
        assert!(l.clients[0].has_in_progress(), "backup child");
        assert!(!l.clients[1].has_in_progress(), "a restore is not a backup");
    }

    #[test]
    fn running_client_has_children_and_counters() {
        let l = parse_clients(&data("running_c.json")).unwrap();
        let tc = l.clients.iter().find(|c| c.name == "testclient").unwrap();
        assert_eq!(tc.run_status, "running");
        assert!(tc.has_in_progress());
        assert_eq!(tc.current().unwrap().number, 1);
        let ch = &tc.children[0];
        assert_eq!((ch.pid, ch.backup), (13962, 2));
        assert_eq!(
            (ch.action.as_str(), ch.phase.as_str()),
            ("backup", "backup")
        );
        let files = ch.counters.files();
        assert_eq!(
            files,
            Tally {
                new: 1500,
                changed: 0,
                unchanged: 3,
                deleted: 0,
                scanned: 1504
            }
        );
        assert_eq!(ch.counters.value("bytes_estimated"), 4322798);
        assert_eq!(ch.counters.value("bytes"), 322798);
        assert_eq!(ch.counters.value("warnings"), 0);
        assert_eq!(ch.counters.time("time_start"), Some(1795300270));
    }

    #[test]
    fn full_backup_list_history() {
        let l = parse_clients(&data("running_c_testclient.json")).unwrap();
        let h = History::of(&l.clients[0]);
        assert_eq!(
            h,
            History {
                count: 1,
                oldest_timestamp: Some(1795300217),
                newest_timestamp: Some(1795300217)
            }
        );
    }

    #[test]
    fn backup_stats_log() {
        let s = parse_backup_stats(
            &data("c_testclient_b_1_l_backup_stats.json"),
            "testclient",
            1,
        )
        .unwrap();
        assert_eq!(s.bytes, 308905);
        assert_eq!(s.bytes_estimated, 308905);
        assert_eq!(s.bytes_received, 245677);
        assert_eq!(s.files.total(), 3);
        assert_eq!(s.grand_total.total(), 5);
        assert_eq!(s.warnings, 0);
        assert_eq!(s.duration_seconds(), Some(1));
    }

    #[test]
    fn backup_stats_of_other_backup_is_missing() {
        let e = parse_backup_stats(
            &data("c_testclient_b_1_l_backup_stats.json"),
            "testclient",
            2,
        )
        .unwrap_err();
        assert!(e.to_string().contains("backup 2"), "{e}");
        // The plain backup log is not a stats log.
        let e = parse_backup_stats(&data("c_testclient_b_1_l_backup.json"), "testclient", 1)
            .unwrap_err();
        assert!(e.to_string().contains("no backup_stats"), "{e}");
    }

    #[test]
    fn warning_document() {
        match parse_clients(&data("c_nosuch.json")) {
            Err(ModelError::Warning(w)) => assert_eq!(w, "Could not find client: nosuch"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lenient_about_unknown_fields_and_odd_entries() {
        let doc = br#"{"clients":[
            {"name":"a","run_status":"idle","future":{"x":1},"backups":[
               {"number":3,"timestamp":10,"flags":["current"],"new_field":true}]},
            {"name":"b"},
            {"run_status":"idle"},
            {"name":"c","backups":[{"number":"7","timestamp":1.5e9,"flags":["current"]}]},
            {"name":"d","backups":[{"number":-1}]},
            42
        ],"version":"9.9"}"#;
        let l = parse_clients(doc).unwrap();
        let names: Vec<_> = l.clients.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(l.skipped.len(), 2, "{:?}", l.skipped);
        assert!(l.skipped[0].starts_with("clients[2]"), "{:?}", l.skipped);
        assert_eq!(l.clients[2].current().unwrap().number, 7);
        assert_eq!(l.clients[2].current().unwrap().timestamp, 1_500_000_000);
        // A negative long long is a u64 counter that overflowed i64.
        assert_eq!(l.clients[3].backups[0].number, u64::MAX);
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(matches!(
            parse_clients(b"c0001\n"),
            Err(ModelError::Json(_))
        ));
        assert!(matches!(parse_clients(b"{}"), Err(ModelError::Missing(_))));
        assert!(parse_clients(b"[]").is_err());
        assert!(parse_clients(b"").is_err());
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|v| Value::Number(v.into())),
            any::<u64>().prop_map(|v| Value::Number(v.into())),
            any::<f64>()
                .prop_map(|v| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)),
            prop_oneof![
                Just("clients"),
                Just("name"),
                Just("backups"),
                Just("number"),
                Just("flags"),
                Just("current"),
                Just("logs"),
                Just("list"),
                Just("backup_stats"),
                Just("children"),
                Just("counters"),
                Just("count"),
                Just("warning"),
                Just("{"),
            ]
            .prop_map(|s| Value::String(s.to_string())),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            let key = prop_oneof![
                Just("clients".to_string()),
                Just("name".to_string()),
                Just("backups".to_string()),
                Just("number".to_string()),
                Just("timestamp".to_string()),
                Just("flags".to_string()),
                Just("logs".to_string()),
                Just("list".to_string()),
                Just("backup_stats".to_string()),
                Just("children".to_string()),
                Just("counters".to_string()),
                Just("count".to_string()),
                Just("run_status".to_string()),
                Just("warning".to_string()),
                "[a-z_]{0,8}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_json_never_panics(v in arb_json()) {
            let doc = serde_json::to_vec(&v).unwrap();
            let _ = parse_clients(&doc);
            let _ = parse_backup_stats(&doc, "testclient", 1);
            if let Ok(l) = parse_clients(&doc) {
                for c in &l.clients {
                    let _ = History::of(c);
                    let _ = c.current();
                    for ch in &c.children {
                        let _ = BackupStats::from_counters(&ch.counters).duration_seconds();
                    }
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_clients(&b);
            let _ = parse_backup_stats(&b, "x", 0);
        }

        #[test]
        fn truncated_fixture_never_panics(cut in 0usize..1747) {
            let d = data("c_testclient_b_1_l_backup_stats.json");
            let cut = cut.min(d.len());
            let _ = parse_backup_stats(&d[..cut], "testclient", 1);
        }

        #[test]
        fn stats_inside_log_lines_never_panic(lines in prop::collection::vec(".{0,40}", 0..20)) {
            let doc = serde_json::json!({"clients":[{"name":"t","backups":[
                {"number":1,"timestamp":1,"logs":{"list":["backup_stats"],"backup_stats":lines}}]}]});
            let _ = parse_backup_stats(&serde_json::to_vec(&doc).unwrap(), "t", 1);
        }
    }
}
