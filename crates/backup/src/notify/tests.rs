//! Notification config: the original README's examples parse, defaults follow the original.

use super::*;
use crate::job::parse;
use std::path::Path;

fn notifications(list: &str) -> Result<Vec<NotificationConfig>, String> {
    let text = format!(
        r#"{{"sources": [{{"id": "a", "type": "folder", "path": "/x", "compress_only": 1}}],
            "destinations": [{{"id": "d", "type": "local", "path": "/y"}}],
            "notifications": {list}}}"#
    );
    parse(Path::new("job.json"), &text)
        .map(|j| j.notifications)
        .map_err(|e| e.to_string())
}

#[test]
fn the_original_readme_examples_parse_with_the_originals_defaults() {
    let n = notifications(
        r#"[
        {"type": "hipchat", "url": "https://www.hipchat.com/...", "notify_on_success": 0, "notify_on_failure": 1},
        {"type": "discord", "url": "https://discordapp.com/api/webhooks/...", "notify_on_success": 0, "notify_on_failure": 1},
        {"type": "matrix", "url": "https://matrix.org", "access_token": "ALongStringOfCharacters",
         "room_id": "!roomidstringofchars@matrix.org", "notify_on_success": 0, "notify_on_failure": 1},
        {"type": "slack", "url": "https://hooks.slack.com/services/Z03JDZYT4/B03JEZGFG/jqWw4Zr5xPuArlZbbUexIaxP",
         "notify_on_success": 0, "notify_on_failure": 1},
        {"type": "telegram", "api_token": "295432120:use_your_own_token_here", "chat_id": "38123456",
         "notify_on_success": 0, "notify_on_failure": 1},
        {"type": "flagfile", "flagfile": "/backups/gitdata.ok"},
        {"type": "prometheus", "url": "http://pushgw:9091/",
         "credentials": {"username": "prometheus", "password": "yourpasswordhere"}},
        {"id": "logging", "type": "elasticsearch", "url": "https://logging-es-http.elasticsearch:9200",
         "credentials": {"username": "backups", "password": "yourpasswordhere"}, "indexpattern": "backups-%Y"},
        {"type": "smtp", "host": "smtp.mycompany.com", "port": 587,
         "credentials": {"username": "backups", "password": "relaypassword"},
         "use_tls": 1, "use_ssl": 0, "success_to": "archive@mycompany.com", "failure_to": "sysadmin@mycompany.com"}
    ]"#,
    )
    .unwrap();
    let kinds: Vec<&str> = n.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "hipchat",
            "discord",
            "matrix",
            "slack",
            "telegram",
            "flagfile",
            "prometheus",
            "elasticsearch",
            "smtp"
        ]
    );
    let failure_only = Events {
        start: false,
        success: false,
        failure: true,
    };
    for n in &n[..5] {
        assert_eq!(n.events, failure_only, "{}", n.kind);
    }
    assert_eq!(
        n[5].events,
        Events {
            start: false,
            success: true,
            failure: false
        }
    );
    assert!(n[6].events.success && n[6].events.failure);
    assert_eq!(n[7].label(), "logging");
    assert!(n[8].events.success && n[8].events.failure);
    assert_eq!(n[0].timeout, DEFAULT_TIMEOUT);
    // Secrets stay out of Debug.
    let dbg = format!("{n:?}");
    for secret in [
        "ALongStringOfCharacters",
        "jqWw4Zr5xPuArlZbbUexIaxP",
        "use_your_own_token_here",
        "yourpasswordhere",
        "relaypassword",
    ] {
        assert!(!dbg.contains(secret), "{secret} in {dbg}");
    }
}

#[test]
fn chat_notifiers_without_notify_keys_stay_silent_as_in_the_original() {
    let n = notifications(r#"[{"type": "slack", "url": "https://hooks.slack.com/x"}]"#).unwrap();
    assert_eq!(
        n[0].events,
        Events {
            start: false,
            success: false,
            failure: false
        }
    );
}

#[test]
fn flagfile_takes_the_documented_filename_key_too() {
    let n = notifications(r#"[{"type": "flagfile", "filename": "/tmp/x.ok"}]"#).unwrap();
    assert_eq!(n[0].kind, "flagfile");
    let e = notifications(r#"[{"type": "flagfile"}]"#).unwrap_err();
    assert!(e.contains("notifications[0].flagfile"), "{e}");
}

#[test]
fn errors_name_the_key_and_never_the_secret() {
    let e = notifications(r#"[{"type": "slack", "url": "hooks.slack.com/services/SECRET"}]"#)
        .unwrap_err();
    assert!(e.contains("notifications[0].url"), "{e}");
    assert!(!e.contains("SECRET"), "{e}");
    let e = notifications(
        r#"[{"type": "smtp", "host": "h", "use_tls": 1, "use_ssl": 1, "failure_to": "a@b.c"}]"#,
    )
    .unwrap_err();
    assert!(e.contains("notifications[0].use_ssl"), "{e}");
    let e = notifications(
        r#"[{"type": "elasticsearch", "url": "http://es:9200", "indexpattern": "b-%Q"}]"#,
    )
    .unwrap_err();
    assert!(e.contains("notifications[0].indexpattern"), "{e}");
    let e = notifications(r#"[{"type": "textfile", "path": "/tmp/backup.txt"}]"#).unwrap_err();
    assert!(e.contains(".prom"), "{e}");
    let e = notifications(r#"[{"type": "pager"}]"#).unwrap_err();
    assert!(
        e.contains("unknown type") && e.contains("healthchecks"),
        "{e}"
    );
    let e =
        notifications(r#"[{"type": "slack", "url": "https://x/y", "timeout": 0}]"#).unwrap_err();
    assert!(e.contains("notifications[0].timeout"), "{e}");
}

#[test]
fn notify_flags_accept_the_originals_truthy_values() {
    let n = notifications(
        r#"[{"type": "discord", "url": "https://d/x", "notify_on_success": "1", "notify_on_failure": false, "notify_on_start": true, "timeout": 2.5}]"#,
    )
    .unwrap();
    assert_eq!(
        n[0].events,
        Events {
            start: true,
            success: true,
            failure: false
        }
    );
    assert_eq!(n[0].timeout, Duration::from_millis(2500));
}

#[test]
fn a_webhook_url_makes_the_file_one_that_holds_secrets() {
    let text = r#"{"sources": [{"id": "a", "type": "folder", "path": "/x", "compress_only": 1}],
        "destinations": [{"id": "d", "type": "local", "path": "/y"}],
        "notifications": [{"type": "discord", "url": "https://d/api/webhooks/1/tok"}]}"#;
    assert!(parse(Path::new("job.json"), text).unwrap().holds_secrets);
}
