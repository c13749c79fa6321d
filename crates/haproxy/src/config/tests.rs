use super::*;

/// The example of the original's README, unchanged.
pub const ORIGINAL_EXAMPLE: &str = include_str!("../../tests/data/original-readme-example.yml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut cfg: Config = custos_kit::config::parse_yaml(Path::new("c.yml"), text)?;
    let unused = cfg.validate(Path::new("c.yml"))?;
    assert!(unused.is_empty(), "{unused:?}");
    Ok(cfg)
}

#[test]
fn original_readme_example_loads() {
    let c = parse(ORIGINAL_EXAMPLE).unwrap();
    assert_eq!(c.logging.level, "DEBUG");
    assert_eq!(c.servers.len(), 2);
    let p = &c.servers["lb-primary"];
    assert_eq!(p.interval(), Duration::from_secs(10));
    assert_eq!(p.timeout(), Duration::from_secs(10));
    assert_eq!(p.backends, ["graylog1", "prtg1"]);
    assert_eq!(p.row_types(), [RowType::Backend]);
    let s = &c.servers["lb-secondary"];
    assert_eq!(s.interval(), Duration::from_secs(60));
    assert!(s.username.is_none());
    match &c.backends["logfile1"] {
        Backend::Logfile(l) => assert_eq!(l.file(), Path::new("/var/log/session-count.log")),
        b => panic!("{b:?}"),
    }
    match &c.backends["graylog2"] {
        Backend::Gelf(g) => {
            assert_eq!((g.host.as_str(), g.port), ("logbroker2.local", 12201));
            assert_eq!(g.facility, "haproxysm-secondary");
            assert_eq!(g.protocol, GelfProtocol::Udp);
        }
        b => panic!("{b:?}"),
    }
    match &c.backends["prtg1"] {
        Backend::Prtg(p) => {
            assert_eq!(
                p.url_for("lb-primary"),
                "https://prtg.local/probe/lb-primary"
            );
            assert_eq!(p.method, PrtgMethod::Post);
        }
        b => panic!("{b:?}"),
    }
}

const MINIMAL: &str = "backends:\n  f:\n    type: logfile\n    filename: /tmp/x.log\n\
                       servers:\n  a:\n    endpoint: http://127.0.0.1:1/s;csv\n    backends: [f]\n";

#[test]
fn logfile_filename_and_defaults() {
    let c = parse(MINIMAL).unwrap();
    let s = &c.servers["a"];
    assert_eq!(s.interval(), Duration::from_secs(10));
    assert!(c.logging.console);
    match &c.backends["f"] {
        Backend::Logfile(l) => assert_eq!(l.file(), Path::new("/tmp/x.log")),
        b => panic!("{b:?}"),
    }
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn errors_name_key_and_value() {
    let e = err(&MINIMAL.replace("backends: [f]", "backends: [f, nope]"));
    assert!(
        e.contains("servers.a.backends[1]") && e.contains("\"nope\"") && e.contains("f"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("http://127.0.0.1:1/s;csv", "htp:/x"));
    assert!(
        e.contains("servers.a.endpoint") && e.contains("htp:/x"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("http://127.0.0.1:1/s;csv", "http://u:topsecret@:1/s;csv"));
    assert!(!e.contains("topsecret"), "{e}");
    let e = err(&MINIMAL.replace(
        "    backends: [f]",
        "    backends: [f]\n    update-interval: x",
    ));
    assert!(e.contains("servers.a.update-interval"), "{e}");
    let e = err(&MINIMAL.replace("    backends: [f]", "    backends: [f]\n    username: u"));
    assert!(e.contains("servers.a.password"), "{e}");
    let e = err(&MINIMAL.replace("    backends: [f]", "    backends: [f]\n    include: \"(\""));
    assert!(e.contains("servers.a.include"), "{e}");
    let e = err(&MINIMAL.replace("    backends: [f]", "    backends: [f]\n    rows: [pool]"));
    assert!(e.contains("servers.a.rows[0]") && e.contains("pool"), "{e}");
    let e = err(&MINIMAL.replace("    filename: /tmp/x.log\n", ""));
    assert!(e.contains("backends.f.path"), "{e}");
    let e = err(&MINIMAL.replace("type: logfile", "type: kafka"));
    assert!(e.contains("backends") && e.contains("kafka"), "{e}");
}

#[test]
fn numbers_as_strings_and_new_keys() {
    let c = parse(
        "backends:\n  g:\n    type: gelf\n    host: h\n    port: \"12201\"\n    protocol: tcp\n\
         \x20 p:\n    type: prometheus\n    listen: \":9999\"\n\
         \x20 r:\n    type: prtg\n    base-url: http://probe:5050\n    token: \"tok-{server}\"\n    method: GET\n    gid: 7\n    key: k\n\
         servers:\n  a:\n    endpoint: unix:///run/haproxy/admin.sock\n    update-interval: \"2.5\"\n    timeout: 1\n\
         \x20   rows: [frontend, backend, server]\n    exclude: \"^stats$\"\n    backends: [g, p, r]\n",
    )
    .unwrap();
    let s = &c.servers["a"];
    assert_eq!(s.interval(), Duration::from_millis(2500));
    assert_eq!(s.timeout(), Duration::from_secs(1));
    assert_eq!(s.row_types().len(), 3);
    match &c.backends["g"] {
        Backend::Gelf(g) => assert_eq!((g.port, g.protocol), (12201, GelfProtocol::Tcp)),
        b => panic!("{b:?}"),
    }
    match &c.backends["p"] {
        Backend::Prometheus(p) => assert_eq!(p.addr().unwrap().port(), 9999),
        b => panic!("{b:?}"),
    }
    match &c.backends["r"] {
        Backend::Prtg(p) => {
            assert_eq!(p.url_for("a"), "http://probe:5050/tok-a");
            assert_eq!(p.method, PrtgMethod::Get);
        }
        b => panic!("{b:?}"),
    }
}

#[test]
fn unknown_keys_are_reported_with_the_nearest_known_one() {
    let text = ORIGINAL_EXAMPLE
        .replace(
            "        update-interval: 60\n",
            "        update-interval: 60\n        updte-interval: 5\n",
        )
        .replace(
            "        facility: haproxysm\n",
            "        facility: haproxysm\n        level: 3\n",
        )
        .replace(
            "        facility: haproxysm-secondary\n",
            "        facility: haproxysm-secondary\n        listen: \":9\"\n",
        );
    assert_ne!(text, ORIGINAL_EXAMPLE);
    let (mut cfg, mut unknown): (Config, _) =
        custos_kit::config::parse_yaml_lenient(Path::new("c.yml"), &text).unwrap();
    unknown.extend(cfg.validate(Path::new("c.yml")).unwrap());
    let keys: Vec<(&str, Option<&str>)> = unknown
        .iter()
        .map(|k| (k.key.as_str(), k.nearest.as_deref()))
        .collect();
    assert!(
        keys.contains(&(
            "servers.lb-secondary.updte-interval",
            Some("update-interval")
        )),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|(k, _)| *k == "backends.graylog1.level"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&("backends.graylog2.listen", None)),
        "a key of another backend type is unused here: {keys:?}"
    );
    assert_eq!(
        cfg.servers["lb-secondary"].interval(),
        Duration::from_secs(60)
    );
}

#[test]
fn redacts_credentials() {
    assert_eq!(
        redact_userinfo("http://admin:pw@lb:8080/haproxy?stats;csv"),
        "http://lb:8080/haproxy?stats;csv"
    );
    assert_eq!(redact_userinfo("http://lb/a@b"), "http://lb/a@b");
}

/// Durations that passed validation used to abort the start (`Duration::from_secs_f64(1e20)`
/// panics, a zero period panics tokio's interval): each is now a config error naming the key.
#[test]
fn durations_are_bounded_at_validation() {
    let server =
        |extra: &str| MINIMAL.replace("    backends: [f]", &format!("    backends: [f]\n{extra}"));
    for (extra, key, value) in [
        (
            "    update-interval: 1e20",
            "servers.a.update-interval",
            "100000000000000000000",
        ),
        (
            "    update-interval: 18446744073709551615",
            "servers.a.update-interval",
            "18446744073709552000",
        ),
        (
            "    update-interval: 0.000000001",
            "servers.a.update-interval",
            "0.000000001",
        ),
        (
            "    update-interval: .inf",
            "servers.a.update-interval",
            "inf",
        ),
        (
            "    update-interval: \"NaN\"",
            "servers.a.update-interval",
            "NaN",
        ),
        (
            "    timeout: 1e20",
            "servers.a.timeout",
            "100000000000000000000",
        ),
        (
            "    timeout: 18446744073709551615",
            "servers.a.timeout",
            "18446744073709552000",
        ),
        ("    timeout: -1", "servers.a.timeout", "-1"),
    ] {
        let e = parse(&server(extra)).unwrap_err().to_string();
        assert!(
            e.starts_with("c.yml: ") && e.contains(key) && e.contains(&format!("\"{value}\"")),
            "{extra}: {e}"
        );
        assert!(e.contains("seconds from"), "{e}");
    }
    let prtg = MINIMAL.replace(
        "    type: logfile\n    filename: /tmp/x.log\n",
        "    type: prtg\n    base-url: http://p/\n    timeout: 1e20\n",
    );
    let e = parse(&prtg).unwrap_err().to_string();
    assert!(e.contains("backends.f.timeout"), "{e}");
    // The bounds themselves are accepted and give durations.
    let c = parse(&server("    update-interval: 86400\n    timeout: 0.01")).unwrap();
    assert_eq!(c.servers["a"].interval(), Duration::from_secs(86_400));
    assert_eq!(c.servers["a"].timeout(), Duration::from_millis(10));
}

#[test]
fn max_rows_default_and_bounds() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.servers["a"].max_rows(), 10_000);
    let with = |v: &str| {
        MINIMAL.replace(
            "    backends: [f]",
            &format!("    backends: [f]\n    max-rows: {v}"),
        )
    };
    assert_eq!(parse(&with("50")).unwrap().servers["a"].max_rows(), 50);
    for v in ["0", "18446744073709551615", "1000001"] {
        let e = parse(&with(v)).unwrap_err().to_string();
        assert!(
            e.contains("servers.a.max-rows") && e.contains(&format!("\"{v}\"")),
            "{e}"
        );
    }
    let e = parse(&with("1e20")).unwrap_err().to_string();
    assert!(e.contains("servers.a.max-rows"), "{e}");
}
