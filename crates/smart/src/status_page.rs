//! The status page at `/`: every drive with model and serial, health, temperature, wear,
//! reallocated sectors, the age of its data and its last read error, plus the helper's state.
//!
//! Rendered from the published state: a page view never asks the helper (and so never runs
//! smartctl). Model names, serials and smartctl messages come from drives and are escaped by
//! the kit's [`html`](custos_kit::html) module.

use crate::collector::{SmartStore, KEY};
use crate::model::Doc;
use crate::state::{Drive, State};
use custos_kit::html::{self, Cell, Page, Table, Tone};
use std::time::{Duration, SystemTime};

/// Drives listed at most.
pub const MAX_DRIVES: usize = 256;

/// ATA attributes that say how worn an SSD is (normalized value: 100 is new), by vendor.
const WEAR_ATTRIBUTES: [&str; 5] = [
    "Wear_Leveling_Count",
    "Media_Wearout_Indicator",
    "SSD_Life_Left",
    "Percent_Lifetime_Remain",
    "Remaining_Lifetime_Perc",
];

/// The page as of `now`; the browser reloads it every `refresh`.
pub fn render(store: &SmartStore, now: SystemTime, refresh: Duration) -> String {
    let mut page = Page::new(&format!(
        "prometheus_smart_exporter {}",
        env!("CARGO_PKG_VERSION")
    ))
    .refresh(refresh);
    page.line(&[Cell::from(format!(
        "S.M.A.R.T. data of every drive, read by smart_exporter_helper; page made {}.",
        html::utc_time(Some(now))
    ))]);
    page.links(&[("/metrics".into(), "/metrics".into())]);
    let Some(p) = store.get(KEY) else {
        return page.finish();
    };
    helper(&mut page, &p.state, now);
    let mut t = Table::new(
        "drives",
        &[
            "Port",
            "Model",
            "Serial",
            "Health",
            "Temp.",
            "Wear",
            "Reallocated",
            "Data age",
            "Last read",
        ],
        MAX_DRIVES,
    )
    .caption("Drives");
    for d in &p.state.drives {
        t.row(|| drive_row(d, now));
    }
    if t.is_empty() {
        page.line(&[Cell::from("No drives listed by the helper.")]);
    } else {
        page.table(&t);
    }
    page.finish()
}

fn helper(page: &mut Page, s: &State, now: SystemTime) {
    page.heading("Helper");
    let details = format!(
        "last answer {} ({}) · version {}",
        html::utc_time(s.last_answer),
        html::ago(s.last_answer, now),
        s.helper_version.as_deref().unwrap_or("unknown")
    );
    page.target(
        s.refreshes > 0,
        !s.system_error,
        &details,
        s.last_error.as_deref(),
    );
}

fn drive_row(d: &Drive, now: SystemTime) -> Vec<Cell> {
    let doc = d.good.as_ref().map(|(doc, _)| doc.as_ref());
    let text = |f: fn(&Doc) -> Option<String>| Cell::from(doc.and_then(f).unwrap_or_default());
    let health = match doc.and_then(|d| d.smart_status.as_ref()?.passed) {
        Some(true) => Cell::new("passed", Tone::Ok),
        Some(false) => Cell::new("FAILED", Tone::Bad),
        None => Cell::from(""),
    };
    let temp = doc
        .and_then(|d| d.temperature.as_ref()?.current)
        .map_or(String::new(), |t| format!("{t:.0} °C"));
    let age = match &d.good {
        Some((_, at)) => Cell::new(
            html::ago(Some(*at), now),
            if d.fresh() { Tone::Plain } else { Tone::Warn },
        ),
        None => Cell::new("no data", Tone::Bad),
    };
    let last = match (&d.last_read.error, &d.last_read.skipped_mode) {
        (Some(e), _) => Cell::new(e.as_str(), Tone::Bad),
        (None, Some(mode)) => Cell::from(format!("skipped ({mode})")),
        (None, None) => Cell::new("ok", Tone::Ok),
    };
    vec![
        Cell::from(d.port.as_str()),
        text(|d| d.model().map(str::to_owned)),
        text(|d| d.serial_number.clone()),
        health,
        Cell::new(temp, Tone::Num),
        Cell::new(doc.and_then(wear).unwrap_or_default(), Tone::Num),
        Cell::new(
            doc.and_then(reallocated)
                .map_or(String::new(), |n| n.to_string()),
            Tone::Num,
        ),
        age,
        last,
    ]
}

/// NVMe: percentage used; ATA: the vendor's wear attribute (normalized value, 100 is new).
fn wear(d: &Doc) -> Option<String> {
    let nvme = d
        .nvme_smart_health_information_log
        .as_ref()
        .and_then(|n| n.percentage_used);
    if let Some(p) = nvme {
        return Some(format!("{p:.0} % used"));
    }
    let a = d
        .ata_smart_attributes
        .as_ref()?
        .table
        .iter()
        .find(|a| WEAR_ATTRIBUTES.contains(&a.name.as_str()))?;
    Some(format!("{} {}", a.name, a.value?))
}

/// ATA attribute 5 (raw), or SCSI's grown defect list.
fn reallocated(d: &Doc) -> Option<i64> {
    let ata = d
        .ata_smart_attributes
        .as_ref()
        .and_then(|a| a.table.iter().find(|a| a.id == 5))
        .and_then(|a| a.raw.as_ref()?.number());
    ata.or_else(|| d.scsi_grown_defect_list.and_then(|n| i64::try_from(n).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::{store, Published};
    use custos_smart_wire::{DeviceReport, Outcome, Report, Scan, Source};
    use serde_json::value::RawValue;

    fn dev(name: &str, outcome: Outcome, doc: Option<&str>) -> DeviceReport {
        DeviceReport {
            name: name.into(),
            dev_type: None,
            source: Source::Scan,
            outcome,
            exit_status: Some(0),
            error: None,
            elapsed_ms: 5,
            smartctl: doc.map(|d| RawValue::from_string(d.into()).unwrap()),
        }
    }

    fn page(devices: Vec<DeviceReport>, now: SystemTime) -> String {
        let mut state = State::default();
        state.apply(
            Report {
                helper_version: "7.3-t".into(),
                started: 0,
                duration_ms: 1,
                scan: Scan::default(),
                devices,
            },
            now,
            Duration::from_millis(3),
        );
        let s = store();
        s.publish(Published {
            state,
            families: Vec::new(),
        });
        render(&s, now, Duration::from_secs(60))
    }

    #[test]
    fn drives_with_health_wear_and_errors() {
        let ssd = r#"{"smartctl":{"exit_status":0},"model_name":"SSD 1","serial_number":"S1",
            "smart_status":{"passed":true},"temperature":{"current":36},
            "ata_smart_attributes":{"table":[
              {"id":5,"name":"Reallocated_Sector_Ct","value":100,"raw":{"value":3,"string":"3"}},
              {"id":177,"name":"Wear_Leveling_Count","value":81,"raw":{"value":278,"string":"278"}}]}}"#;
        let nvme = r#"{"smartctl":{"exit_status":0},"model_name":"NVMe 2","serial_number":"N2",
            "smart_status":{"passed":false},"temperature":{"current":40},
            "nvme_smart_health_information_log":{"percentage_used":7}}"#;
        let mut hung = dev("/dev/sdz", Outcome::Timeout, None);
        hung.error = Some("smartctl timed out after 2s".into());
        let html = page(
            vec![
                dev("/dev/sda", Outcome::Ok, Some(ssd)),
                dev("/dev/nvme0", Outcome::Ok, Some(nvme)),
                hung,
            ],
            SystemTime::now(),
        );
        assert!(
            html.contains("<span class=\"ok\">reachable</span>"),
            "{html}"
        );
        assert!(html.contains("version 7.3-t"));
        assert!(
            html.contains(
                "<td>/dev/sda</td><td>SSD 1</td><td>S1</td><td class=\"ok\">passed</td>\
             <td class=\"num\">36 °C</td><td class=\"num\">Wear_Leveling_Count 81</td>\
             <td class=\"num\">3</td>"
            ),
            "{html}"
        );
        assert!(html.contains("<td class=\"bad\">FAILED</td>"));
        assert!(html.contains("7 % used"));
        assert!(
            html.contains(
                "<td class=\"bad\">no data</td><td class=\"bad\">smartctl timed out after 2s</td>"
            ),
            "{html}"
        );
    }

    #[test]
    fn hostile_model_names_are_text() {
        let doc = r#"{"smartctl":{"exit_status":0},"model_name":"<script>alert(1)</script>",
            "serial_number":"\"><img src=x onerror=alert(1)>"}"#;
        let html = page(
            vec![dev("/dev/<b>x", Outcome::Ok, Some(doc))],
            SystemTime::now(),
        );
        for bad in ["<script", "<img", "<b>"] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn before_the_first_refresh() {
        let html = render(&store(), SystemTime::now(), Duration::from_secs(5));
        assert!(html.contains("not polled yet"), "{html}");
        assert!(html.contains("No drives listed"));
    }
}
