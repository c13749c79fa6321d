//! Verifying copies: each read end to end into a sink (a tar payload walked entry by entry),
//! its sha256 compared with the sidecar; the newest copy of each source at each destination,
//! or a random share of all of them ([`Choice::Sample`], `sample.rs`).

use std::io;
use std::path::Path;

use super::decode::{copy_payload, open_decoded, walk_tar};
use super::sample::{self, Percent};
use super::{choose, find_copy, list, read_sidecar, Copy, RestoreError, SidecarCheck};
use crate::crypto::Decryption;
use crate::destination::Destination;
use crate::naming::{Payload, RunStamp};

/// Result of verifying one copy of a source (one database of it) at one destination.
#[derive(Debug)]
pub struct VerifyReport {
    pub source_id: String,
    /// The database of a per-database copy (one report each).
    pub database: Option<String>,
    pub destination: String,
    /// The run stamp of the copy read, when one was chosen.
    pub stamp: Option<RunStamp>,
    /// The copy checked, or the reason none could be.
    pub result: Result<Verified, RestoreError>,
}

/// A copy that read back cleanly.
#[derive(Debug)]
pub struct Verified {
    pub copy: Copy,
    pub sidecar: SidecarCheck,
    /// Payload bytes read back (tar stream or dump size).
    #[allow(
        dead_code,
        reason = "the tests check that the whole payload was read back"
    )]
    pub payload_bytes: u64,
}

/// Which copies [`verify`] reads of each source at each destination.
#[derive(Debug, Clone, Copy)]
pub enum Choice {
    /// The newest not dated in the future.
    Newest,
    /// `--sample`: this share of all its copies (at least one), drawn from `seed`
    /// ([`sample::choose`]).
    Sample { share: Percent, seed: u64 },
}

/// Verifies the copies `choice` names of each source on each destination; a report per copy
/// read (per database of a per-database copy), newest first.
///
/// `keys` gives the decryption for a source id (its passphrase from the config, or a secret
/// key); `None` for a source whose objects are not encrypted. A destination without any copy of
/// a source gets a [`RestoreError::NotFound`] report.
pub fn verify(
    destinations: &[&dyn Destination],
    source_ids: &[String],
    keys: &dyn Fn(&str) -> Option<Decryption>,
    choice: Choice,
) -> Vec<VerifyReport> {
    let mut reports = Vec::new();
    for source_id in source_ids {
        for d in destinations {
            let d = *d;
            let failed = |e| VerifyReport {
                source_id: source_id.clone(),
                database: None,
                destination: d.id().to_string(),
                stamp: None,
                result: Err(e),
            };
            match choice {
                Choice::Newest => verify_one(d, source_id, None, keys, &mut reports, &|db| {
                    choose(&[d], source_id, None, Some(d.id()), db)
                }),
                Choice::Sample { share, seed } => match sampled(d, source_id, share, seed) {
                    Err(e) => reports.push(failed(e)),
                    // One listing serves every copy read.
                    Ok((copies, stamps)) => {
                        for at in stamps {
                            verify_one(d, source_id, Some(at), keys, &mut reports, &|db| {
                                find_copy(&copies, source_id, Some(at), db)?.ok_or_else(|| {
                                    RestoreError::NotFound {
                                        source_id: source_id.clone(),
                                        at: format!(" at {at}"),
                                        on: format!(" on destination {:?}", d.id()),
                                    }
                                })
                            })
                        }
                    }
                },
            }
        }
    }
    reports
}

/// The copies of `source_id` at `d` and the run stamps of those a sample of `share` reads,
/// newest first.
fn sampled(
    d: &dyn Destination,
    source_id: &str,
    share: Percent,
    seed: u64,
) -> Result<(Vec<Copy>, Vec<RunStamp>), RestoreError> {
    let listing = list(&[d], Some(source_id));
    if let Some(e) = listing.errors.into_iter().next() {
        return Err(RestoreError::Destination(e));
    }
    let copies: Vec<Copy> = listing
        .copies
        .into_iter()
        .filter(|c| c.name.source_id == source_id)
        .collect();
    // Newest first; the objects of one per-database copy share a stamp.
    let mut stamps: Vec<RunStamp> = copies.iter().map(|c| c.name.stamp).collect();
    stamps.dedup();
    if stamps.is_empty() {
        return Err(RestoreError::NotFound {
            source_id: source_id.to_owned(),
            at: String::new(),
            on: format!(" on destination {:?}", d.id()),
        });
    }
    let chosen = sample::choose(stamps.len(), share, seed, source_id, d.id());
    Ok((copies, chosen.into_iter().map(|i| stamps[i]).collect()))
}

/// Where [`verify_one`] finds a copy: for a database of it, or for the whole copy (`None`).
type Find<'a> = dyn Fn(Option<&str>) -> Result<(Copy, Vec<String>), RestoreError> + 'a;

/// Verifies the copy of `source_id` at `d` that `find` finds (made `at`, when known), each
/// database of a per-database copy on its own, adding a report per object read.
fn verify_one(
    d: &dyn Destination,
    source_id: &str,
    at: Option<RunStamp>,
    keys: &dyn Fn(&str) -> Option<Decryption>,
    reports: &mut Vec<VerifyReport>,
    find: &Find<'_>,
) {
    let mut report = |database: Option<String>,
                      chosen: Result<(Copy, Vec<String>), RestoreError>| {
        let stamp = chosen.as_ref().ok().map(|(c, _)| c.name.stamp).or(at);
        reports.push(VerifyReport {
            source_id: source_id.to_owned(),
            database,
            destination: d.id().to_string(),
            stamp,
            result: chosen.and_then(|(copy, _)| verify_copy(d, copy, keys)),
        });
    };
    match find(None) {
        // A per-database copy: every database of it, a report each.
        Err(RestoreError::PerDatabase { databases, .. }) => {
            for db in databases {
                let chosen = find(Some(&db));
                report(Some(db), chosen);
            }
        }
        chosen => report(None, chosen),
    }
}

fn verify_copy(
    d: &dyn Destination,
    copy: Copy,
    keys: &dyn Fn(&str) -> Option<Decryption>,
) -> Result<Verified, RestoreError> {
    let source_id = copy.name.source_id.as_str();
    let object = copy.name.path();
    let expected = read_sidecar(d, &copy)?;
    let decryption = keys(source_id);
    let mut decoded = open_decoded(d, &copy, decryption.as_ref(), expected.as_deref())?;
    let payload_bytes = match copy.name.payload {
        Payload::Tar => walk_tar(&mut decoded, &mut |_| {})?,
        Payload::Sql | Payload::Disk | Payload::Btrfs | Payload::Vol | Payload::Dump => {
            copy_payload(
                &mut decoded,
                &mut io::sink(),
                &object,
                Path::new("/dev/null"),
            )?
        }
    };
    let (_, sidecar) = decoded.finish(expected.as_deref())?;
    Ok(Verified {
        copy,
        sidecar,
        payload_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::local::LocalDestination;
    use crate::engine::pipeline::{self, Plan};
    use crate::naming::{Encoding, ObjectName};

    #[test]
    fn a_sample_reads_every_database_of_each_copy_it_picks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = LocalDestination::new("disk", dir.path().join("disk"));
        std::fs::create_dir_all(local.root()).expect("mkdir");
        // Five per-database copies of `db`, two databases each.
        for day in 1..=5 {
            for database in ["shop", "blog"] {
                let name = ObjectName {
                    source_id: "db".into(),
                    stamp: RunStamp::parse(&format!("202401{day:02}000000")).expect("stamp"),
                    database: Some(database.into()),
                    payload: Payload::Sql,
                    encoding: Encoding::COMPRESS_ONLY,
                };
                let dump = format!("-- {database} {day}\n").into_bytes();
                pipeline::run(
                    super::super::tests::stream(dump),
                    &Plan::compress_only(),
                    &name.path(),
                    &[&local],
                    None,
                )
                .expect("store");
            }
        }
        let d = local;
        let share: Percent = "40".parse().expect("share");
        let reports = verify(
            &[&d],
            &["db".into()],
            &|_| None,
            Choice::Sample { share, seed: 3 },
        );
        // ceil(40 % of 5) = 2 copies, each database of each: 4 objects, newest first.
        assert_eq!(reports.len(), 4, "{reports:#?}");
        let stamps: Vec<RunStamp> = reports.iter().filter_map(|r| r.stamp).collect();
        assert_eq!(stamps.len(), 4);
        assert!(stamps[0] == stamps[1] && stamps[2] == stamps[3] && stamps[1] > stamps[2]);
        for r in &reports {
            let v = r.result.as_ref().expect("verified");
            assert_eq!(Some(v.copy.name.stamp), r.stamp);
            assert_eq!(v.copy.name.database, r.database);
            assert_eq!(v.sidecar, SidecarCheck::Match);
        }
        let mut dbs: Vec<_> = reports.iter().filter_map(|r| r.database.clone()).collect();
        dbs.sort();
        assert_eq!(dbs, ["blog", "blog", "shop", "shop"]);

        // The newest copy only: both of its databases.
        let reports = verify(&[&d], &["db".into()], &|_| None, Choice::Newest);
        assert_eq!(reports.len(), 2);
        assert!(reports
            .iter()
            .all(|r| r.stamp == RunStamp::parse("20240105000000") && r.result.is_ok()));
        // A source without copies: one failed report, no stamp.
        let reports = verify(
            &[&d],
            &["none".into()],
            &|_| None,
            Choice::Sample { share, seed: 3 },
        );
        assert!(matches!(
            reports.as_slice(),
            [VerifyReport {
                stamp: None,
                result: Err(RestoreError::NotFound { .. }),
                ..
            }]
        ));
    }
}
