//! `backup list`: the stored copies, side by side per destination or one row per object.

use super::{destinations, Job, Outcome};
use crate::coverage::{Cell, Column, Coverage};
use crate::destination::Destination;
use crate::outcome::size_description;
use crate::restore;
use crate::status;
use crate::table;

/// What `backup list` is asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListRequest<'a> {
    /// Only this source id.
    pub source: Option<&'a str>,
    /// One row per copy per destination (object name, sidecar) instead of the side-by-side
    /// table.
    pub long: bool,
}

/// `backup list`: the stored copies (of `source` only, if given). By default one row per
/// copy (source and run) with a column per destination, so a copy one destination lacks
/// stands out, then a `missing:` line per such copy ([`Outcome::missing_copies`]); with
/// `long`, a row per copy per destination. Future-dated copies are warned about and
/// destinations that cannot be listed go to stderr and fail the command.
pub fn list(job: &Job, request: ListRequest<'_>) -> Outcome {
    let job = &job.0;
    let (dests, skipped) = destinations(job);
    let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
    let listing = restore::list(&refs, request.source);
    let mut out = Outcome::default();
    if request.long {
        out.stdout = long_table(&listing);
    } else {
        let columns = dests
            .iter()
            .map(|d| Column {
                id: d.id().to_owned(),
                retention: job
                    .destinations
                    .iter()
                    .find(|c| c.id == d.id())
                    .map(|c| c.retention)
                    .unwrap_or_default(),
                unlisted: false,
            })
            .collect();
        let coverage = Coverage::new(&listing, columns, std::time::SystemTime::now());
        out.stdout = side_by_side(&coverage);
        out.missing_copies = coverage.gaps().next().is_some();
    }
    if listing.copies.is_empty() {
        out.stdout.push_str("(no copies)\n");
    }
    for c in listing.copies.iter().filter(|c| c.is_future()) {
        out.stderr.push_str(&format!(
            "backup: warning: {}: copy {} is dated in the future (clock ran ahead, or planted?); \
             retention leaves it alone and restore skips it without --at\n",
            c.destination,
            c.name.path()
        ));
    }
    let errors = listing.errors.iter().map(ToString::to_string);
    for m in skipped.into_iter().chain(errors) {
        out.stderr.push_str(&format!("backup: {m}\n"));
        out.failed = true;
    }
    out
}

/// `list --long`: a row per copy per destination.
fn long_table(listing: &restore::Listing) -> String {
    let mut rows = vec![[
        "SOURCE".to_owned(),
        "TIMESTAMP".to_owned(),
        "DESTINATION".to_owned(),
        "SIZE".to_owned(),
        "AGE".to_owned(),
        "SHA256".to_owned(),
        "OBJECT".to_owned(),
    ]];
    for c in &listing.copies {
        rows.push([
            c.name.source_id.clone(),
            c.name.stamp.to_string(),
            c.destination.clone(),
            size_description(c.size as f64),
            status::age(c.age().num_seconds()),
            if c.has_sidecar { "yes" } else { "none" }.to_owned(),
            c.name.path(),
        ]);
    }
    table::render(&rows, &[3])
}

/// The default `list`: a row per copy, a column per destination, then a line per copy that
/// a destination lacks.
fn side_by_side(coverage: &Coverage) -> String {
    let mut header = vec![
        "SOURCE".to_owned(),
        "TIMESTAMP".to_owned(),
        "AGE".to_owned(),
    ];
    header.extend(coverage.columns.iter().map(|c| c.id.clone()));
    let mut rows = vec![header];
    let now = chrono::Local::now().naive_local();
    for r in &coverage.rows {
        let mut row = vec![
            r.source_id.clone(),
            r.stamp.to_string(),
            status::age(r.stamp.age(now).num_seconds()),
        ];
        row.extend(r.cells.iter().map(|c| match c {
            Cell::Present {
                size,
                has_sidecar: true,
            } => size_description(*size as f64),
            Cell::Present {
                size,
                has_sidecar: false,
            } => format!("{}, no sha256", size_description(*size as f64)),
            Cell::Expired => "expired".to_owned(),
            Cell::Missing => MISSING.to_owned(),
            Cell::Unknown => "unknown".to_owned(),
        }));
        rows.push(row);
    }
    let mut out = table::render(&rows, &[]);
    for r in coverage.gaps() {
        let on: Vec<&str> = r
            .missing()
            .map(|i| coverage.columns[i].id.as_str())
            .collect();
        out.push_str(&format!(
            "missing: {} {} on {}\n",
            r.source_id,
            r.stamp,
            on.join(", ")
        ));
    }
    out
}

/// The cell of a destination that lacks a copy its retention would keep.
const MISSING: &str = "MISSING";
