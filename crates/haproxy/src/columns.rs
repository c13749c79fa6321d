//! The numeric stats columns the `prometheus` backend exports beyond the session gauges, and
//! the metric each becomes: one table, so the CSV reader knows which columns to keep and the
//! exposition how to name them.
//!
//! Names follow haproxy_exporter (`haproxy_<type>_<name>`) where it has one, HAProxy's built-in
//! exporter otherwise; `_total` only for columns HAProxy counts up since start. Times HAProxy
//! gives in milliseconds become seconds. These columns are read only for servers a `prometheus`
//! backend serves, so the other sinks' polls cost what they did.

/// How a column's value becomes a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic since HAProxy started: a counter (`name` without `_total`).
    Counter,
    /// A current or maximum value, as is.
    Gauge,
    /// A gauge HAProxy gives in milliseconds; exported in seconds.
    Millis,
    /// A gauge HAProxy gives in MiB; exported in bytes.
    Mebibytes,
    /// One code class of `http_responses_total{code}` (a counter).
    Response(&'static str),
}

/// One exported column: CSV header name, metric name after `haproxy_<type>_`, help, kind.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub csv: &'static str,
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

const fn c(csv: &'static str, name: &'static str, help: &'static str, kind: Kind) -> Column {
    Column {
        csv,
        name,
        help,
        kind,
    }
}

use Kind::{Counter, Gauge, Millis, Response};

/// Every extra column, in the order of [`crate::sample::Counts::extra`]. HAProxy leaves a field
/// empty where it does not apply (a frontend has no queue), so which types get a family follows
/// from the page, not from this table.
pub const COLUMNS: [Column; COUNT] = [
    c(
        "qmax",
        "max_queue",
        "Maximum queued requests seen (qmax).",
        Gauge,
    ),
    c(
        "qlimit",
        "queue_limit",
        "Configured queue limit (qlimit).",
        Gauge,
    ),
    c("stot", "sessions", "Sessions since start (stot).", Counter),
    c(
        "bin",
        "bytes_in",
        "Bytes received since start (bin).",
        Counter,
    ),
    c(
        "bout",
        "bytes_out",
        "Bytes sent since start (bout).",
        Counter,
    ),
    c(
        "dreq",
        "requests_denied",
        "Requests denied by security rules (dreq).",
        Counter,
    ),
    c(
        "dresp",
        "responses_denied",
        "Responses denied by security rules (dresp).",
        Counter,
    ),
    c("ereq", "request_errors", "Request errors (ereq).", Counter),
    c(
        "econ",
        "connection_errors",
        "Errors connecting to a server (econ).",
        Counter,
    ),
    c(
        "eresp",
        "response_errors",
        "Response errors (eresp).",
        Counter,
    ),
    c(
        "wretr",
        "retry_warnings",
        "Connection retries (wretr).",
        Counter,
    ),
    c(
        "wredis",
        "redispatch_warnings",
        "Redispatches to another server (wredis).",
        Counter,
    ),
    c("weight", "weight", "Effective weight (weight).", Gauge),
    c("uweight", "uweight", "User-set weight (uweight).", Gauge),
    c(
        "chkfail",
        "check_failures",
        "Failed health checks (chkfail).",
        Counter,
    ),
    c(
        "chkdown",
        "check_up_down",
        "UP to DOWN transitions (chkdown).",
        Counter,
    ),
    c(
        "lastchg",
        "check_last_change_seconds",
        "Seconds since the last UP/DOWN transition (lastchg).",
        Gauge,
    ),
    c(
        "downtime",
        "downtime_seconds",
        "Seconds spent DOWN since start (downtime).",
        Counter,
    ),
    c(
        "throttle",
        "current_throttle",
        "Current throttle percentage in slow start (throttle).",
        Gauge,
    ),
    c(
        "lbtot",
        "server_selected",
        "Times a server was selected by load balancing (lbtot).",
        Counter,
    ),
    c(
        "rate_lim",
        "limit_session_rate",
        "Configured limit of new sessions per second (rate_lim).",
        Gauge,
    ),
    c(
        "rate_max",
        "max_session_rate",
        "Maximum new sessions per second seen (rate_max).",
        Gauge,
    ),
    c(
        "check_code",
        "check_code",
        "Layer 5-7 code of the last health check (check_code).",
        Gauge,
    ),
    c(
        "check_duration",
        "check_duration_seconds",
        "Duration of the last health check (check_duration).",
        Millis,
    ),
    c(
        "req_rate",
        "http_requests_rate_current",
        "HTTP requests per second over the last second (req_rate).",
        Gauge,
    ),
    c(
        "req_rate_max",
        "http_requests_rate_max",
        "Maximum HTTP requests per second seen (req_rate_max).",
        Gauge,
    ),
    c(
        "req_tot",
        "http_requests",
        "HTTP requests since start (req_tot).",
        Counter,
    ),
    c(
        "cli_abrt",
        "client_aborts",
        "Transfers aborted by the client (cli_abrt).",
        Counter,
    ),
    c(
        "srv_abrt",
        "server_aborts",
        "Transfers aborted by the server (srv_abrt).",
        Counter,
    ),
    c(
        "comp_in",
        "compressor_bytes_in",
        "HTTP bytes fed to the compressor (comp_in).",
        Counter,
    ),
    c(
        "comp_out",
        "compressor_bytes_out",
        "HTTP bytes emitted by the compressor (comp_out).",
        Counter,
    ),
    c(
        "comp_byp",
        "compressor_bytes_bypassed",
        "Bytes that bypassed the compressor (comp_byp).",
        Counter,
    ),
    c(
        "comp_rsp",
        "http_responses_compressed",
        "HTTP responses that were compressed (comp_rsp).",
        Counter,
    ),
    c(
        "lastsess",
        "last_session_seconds",
        "Seconds since the last session was assigned (lastsess).",
        Gauge,
    ),
    c(
        "qtime",
        "http_queue_time_average_seconds",
        "Average queue time over the last 1024 requests (qtime).",
        Millis,
    ),
    c(
        "ctime",
        "http_connect_time_average_seconds",
        "Average connect time over the last 1024 requests (ctime).",
        Millis,
    ),
    c(
        "rtime",
        "http_response_time_average_seconds",
        "Average response time over the last 1024 requests (rtime).",
        Millis,
    ),
    c(
        "ttime",
        "http_total_time_average_seconds",
        "Average total session time over the last 1024 requests (ttime).",
        Millis,
    ),
    c(
        "conn_rate",
        "connections_rate_current",
        "Connections per second over the last second (conn_rate).",
        Gauge,
    ),
    c(
        "conn_rate_max",
        "connections_rate_max",
        "Maximum connections per second seen (conn_rate_max).",
        Gauge,
    ),
    c(
        "conn_tot",
        "connections",
        "Connections since start (conn_tot).",
        Counter,
    ),
    c(
        "dcon",
        "denied_connections",
        "Connections denied by tcp-request connection rules (dcon).",
        Counter,
    ),
    c(
        "dses",
        "denied_sessions",
        "Sessions denied by tcp-request session rules (dses).",
        Counter,
    ),
    c(
        "eint",
        "internal_errors",
        "Internal errors (eint).",
        Counter,
    ),
    c(
        "wrew",
        "failed_header_rewriting",
        "Failed HTTP header rewrites (wrew).",
        Counter,
    ),
    c(
        "connect",
        "connection_attempts",
        "Connection attempts to servers (connect).",
        Counter,
    ),
    c(
        "reuse",
        "connection_reuses",
        "Reused server connections (reuse).",
        Counter,
    ),
    c(
        "cache_lookups",
        "http_cache_lookups",
        "HTTP cache lookups (cache_lookups).",
        Counter,
    ),
    c(
        "cache_hits",
        "http_cache_hits",
        "HTTP cache hits (cache_hits).",
        Counter,
    ),
    c(
        "qtime_max",
        "max_queue_time_seconds",
        "Maximum queue time seen (qtime_max).",
        Millis,
    ),
    c(
        "ctime_max",
        "max_connect_time_seconds",
        "Maximum connect time seen (ctime_max).",
        Millis,
    ),
    c(
        "rtime_max",
        "max_response_time_seconds",
        "Maximum response time seen (rtime_max).",
        Millis,
    ),
    c(
        "ttime_max",
        "max_total_time_seconds",
        "Maximum total session time seen (ttime_max).",
        Millis,
    ),
    c(
        "srv_icur",
        "idle_connections_current",
        "Current idle server connections (srv_icur).",
        Gauge,
    ),
    c(
        "src_ilim",
        "idle_connections_limit",
        "Limit on idle server connections (src_ilim).",
        Gauge,
    ),
    c(
        "used_conn_cur",
        "used_connections_current",
        "Server connections in use (used_conn_cur).",
        Gauge,
    ),
    c(
        "need_conn_est",
        "need_connections_current",
        "Estimated server connections needed (need_conn_est).",
        Gauge,
    ),
    c("hrsp_1xx", "http_responses", RESPONSES, Response("1xx")),
    c("hrsp_2xx", "http_responses", RESPONSES, Response("2xx")),
    c("hrsp_3xx", "http_responses", RESPONSES, Response("3xx")),
    c("hrsp_other", "http_responses", RESPONSES, Response("other")),
];

/// Number of extra columns.
pub const COUNT: usize = 61;

/// Help of `haproxy_<type>_http_responses_total`, whose 4xx and 5xx samples predate this table.
pub const RESPONSES: &str =
    "HTTP responses by code class since HAProxy started (hrsp_1xx .. hrsp_5xx, hrsp_other).";

#[cfg(test)]
mod tests {
    use super::*;

    /// Each column is read once and each family named once (two columns with one name would be
    /// one family written twice, which the OpenMetrics parser rejects); only counters end in
    /// `_total` and the README's metrics table lists each.
    #[test]
    fn names_are_unique_and_documented() {
        let readme = include_str!("../../../README.md");
        let mut csv: Vec<_> = COLUMNS.iter().map(|c| c.csv).collect();
        csv.sort_unstable();
        csv.dedup();
        assert_eq!(csv.len(), COUNT);
        let mut names: Vec<_> = COLUMNS
            .iter()
            .filter(|c| !matches!(c.kind, Kind::Response(_)))
            .map(|c| c.name)
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COUNT - 4);
        for c in &COLUMNS {
            assert!(!c.name.ends_with("_total"), "{}", c.name);
            let metric = match c.kind {
                Kind::Counter => format!("`haproxy_<type>_{}_total`", c.name),
                Kind::Gauge | Kind::Millis | Kind::Mebibytes => {
                    format!("`haproxy_<type>_{}`", c.name)
                }
                Kind::Response(_) => format!("`{}`", c.csv),
            };
            assert!(readme.contains(&metric), "README lacks {metric}");
        }
    }
}
