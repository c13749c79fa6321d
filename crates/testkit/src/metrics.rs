//! A reader for the text exposition (0.0.4 or OpenMetrics) that tests assert on.

use std::collections::BTreeMap;

/// One sample line of the exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples and `# TYPE` lines of one scrape (text 0.0.4 or OpenMetrics).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
    pub text: String,
}

impl Metrics {
    /// Parses a scrape; panics on a sample line it cannot read (a format bug to report).
    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics {
            text: text.to_string(),
            ..Metrics::default()
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                if let (Some(n), Some(t)) = (it.next(), it.next()) {
                    m.types.insert(n.to_string(), t.to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            m.samples
                .push(parse_sample(line).unwrap_or_else(|| panic!("unparsable line {line:?}")));
        }
        m
    }

    /// Samples of metric `name` whose labels include all of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the single sample of `name` with `labels`; `None` if absent or ambiguous.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels).as_slice() {
            [one] => Some(one.value),
            _ => None,
        }
    }

    /// Names of all metrics (sample names) present.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.samples.iter().map(|s| s.name.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The sample lines starting with `prefix` (e.g. `burp_`), for failure messages.
    pub fn lines_starting(&self, prefix: &str) -> String {
        self.text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        // label values may contain '}' or ',' inside quotes: scan by hand
        let mut chars = body.char_indices().peekable();
        let end = loop {
            // key
            let mut key = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' || c == '}' {
                    break;
                }
                if c != ',' && !c.is_whitespace() {
                    key.push(c);
                }
                chars.next();
            }
            match chars.next() {
                Some((i, '}')) => break i,
                Some((_, '=')) => {}
                _ => return None,
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut val = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => val.push('\n'),
                        other => val.push(other),
                    },
                    '"' => break,
                    c => val.push(c),
                }
            }
            labels.insert(key, val);
        };
        &body[end + 1..]
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels_with_escapes_and_types() {
        let m =
            Metrics::parse("# TYPE a gauge\na{x=\"1,}\",y=\"q\\\"\\n\"} 2.5\nb 3\nc +Inf\n# EOF\n");
        assert_eq!(m.types["a"], "gauge");
        assert_eq!(m.value("a", &[("x", "1,}"), ("y", "q\"\n")]), Some(2.5));
        assert_eq!(m.value("b", &[]), Some(3.0));
        assert_eq!(m.value("c", &[]), Some(f64::INFINITY));
        assert_eq!(m.names(), ["a", "b", "c"]);
        assert_eq!(m.lines_starting("b"), "b 3");
    }
}
