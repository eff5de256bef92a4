//! Stats snapshots: the Prometheus text of `/metrics`, read back into
//! samples, so that the API and the scrape endpoint can never disagree.

use std::collections::HashMap;

use crate::{node::Node, proto};

/// Every counter now.
pub(super) fn snapshot(node: &Node) -> proto::Stats {
    let mut text = crate::api::prometheus(&node.dataplane_stats());
    text.push_str(&node.more_metrics());
    proto::Stats {
        at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        generation: node.desired().generation,
        samples: parse(&text),
    }
}

/// The samples of Prometheus text format 0.0.4 (comments skipped).
pub(super) fn parse(text: &str) -> Vec<proto::Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(sample)
        .collect()
}

fn sample(line: &str) -> Option<proto::Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, labels(rest.strip_suffix('}')?)?),
        None => (head, HashMap::new()),
    };
    Some(proto::Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y \" z"` → a map.
fn labels(mut s: &str) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    loop {
        s = s.trim_start_matches(',').trim_start();
        if s.is_empty() {
            return Some(out);
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        out.insert(key.trim().to_owned(), value);
        s = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_read_back_with_their_labels() {
        let s = parse(
            "# HELP x y\n# TYPE x counter\nx_total{port=\"a\",reason=\"say \\\"hi\\\"\"} 42\nup 1\nh_bucket{le=\"+Inf\"} 3\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].labels["port"], "a");
        assert_eq!(s[0].labels["reason"], "say \"hi\"");
        assert_eq!(s[0].value, 42.0);
        assert!(s[1].labels.is_empty());
        assert_eq!(s[2].labels["le"], "+Inf");
    }
}
