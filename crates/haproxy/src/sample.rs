//! What one stats row says about one proxy: the unit every sink receives.

use std::sync::Arc;
use std::time::SystemTime;

/// The kind of a stats row (HAProxy's `type` column: 0 frontend, 1 backend, 2 server,
/// 3 listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowType {
    Frontend,
    Backend,
    Server,
    Listener,
}

impl RowType {
    /// All types, in HAProxy's numbering order.
    pub const ALL: [RowType; 4] = [
        RowType::Frontend,
        RowType::Backend,
        RowType::Server,
        RowType::Listener,
    ];

    /// From the `type` column.
    pub fn from_code(code: u64) -> Option<RowType> {
        RowType::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// From the `svname` column, for old HAProxy versions whose CSV has no `type` column.
    pub fn from_svname(svname: &str) -> RowType {
        match svname {
            "FRONTEND" => RowType::Frontend,
            "BACKEND" => RowType::Backend,
            _ => RowType::Server,
        }
    }

    /// The lower-case name used in config (`rows:`), log files, GELF and metric names.
    pub fn as_str(self) -> &'static str {
        match self {
            RowType::Frontend => "frontend",
            RowType::Backend => "backend",
            RowType::Server => "server",
            RowType::Listener => "listener",
        }
    }

    /// From its config name.
    pub fn parse(s: &str) -> Option<RowType> {
        RowType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The numbers of one stats row. `None` is "unknown": the column is missing in this HAProxy
/// version or empty in this row (HAProxy leaves fields empty that do not apply), never zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// `scur`: current sessions (what the original's README calls sessions).
    pub scur: Option<u64>,
    /// `rate`: sessions per second over the last second (what the original sent as sessions).
    pub rate: Option<u64>,
    /// `qcur`: current queued requests.
    pub qcur: Option<u64>,
    /// `smax`: maximum sessions seen.
    pub smax: Option<u64>,
    /// `slim`: configured session limit.
    pub slim: Option<u64>,
    /// `act`: active servers (backend) or 1 if the server is active (server).
    pub act: Option<u64>,
    /// `bck`: backup servers (backend) or 1 if the server is a backup (server).
    pub bck: Option<u64>,
    /// `hrsp_4xx`: HTTP responses with a 4xx code since start.
    pub hrsp_4xx: Option<u64>,
    /// `hrsp_5xx`: HTTP responses with a 5xx code since start.
    pub hrsp_5xx: Option<u64>,
    /// The columns of [`crate::columns::COLUMNS`], in that order; `None` unless a `prometheus`
    /// backend serves this server (only it uses them).
    pub extra: Option<Box<Extra>>,
}

/// Values of the extra columns; an element is `None` when unknown.
pub type Extra = [Option<u64>; crate::columns::COUNT];

/// One row of one poll: which proxy (and server) it is about, and its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// `pxname`: the frontend or backend name.
    pub proxy: String,
    /// `svname`: `FRONTEND`, `BACKEND` or the server's name.
    pub svname: String,
    pub row_type: RowType,
    /// `status`: `UP`, `DOWN`, `OPEN`, `MAINT`, `no check`, `UP 1/3`... (`None` when empty).
    pub status: Option<String>,
    pub counts: Counts,
}

/// Everything one poll of one HAProxy produced, shared by all sinks of that server.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The configured server id (the original's `server_id`, GELF `host`).
    pub server: Arc<str>,
    /// The stats endpoint, without credentials (the log file's `endpoint` column).
    pub endpoint: Arc<str>,
    /// When the poll that produced these samples started.
    pub time: SystemTime,
    /// The rows selected for forwarding, in HAProxy's order.
    pub samples: Vec<Sample>,
}
