//! `GET /metrics` and the samples of the Prometheus text format.
//!
//! Two readings, named for what they do: [`sum`] adds every sample of a metric (all label
//! sets: the total of a labelled counter), [`value`] is the one sample with exactly the
//! given labels (none for an unlabelled metric).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Fetches `GET /metrics` from `127.0.0.1:port`.
pub fn scrape(port: u16) -> std::io::Result<String> {
    get(port, "/metrics").map(|(_, body)| body)
}

/// `GET path` from `127.0.0.1:port`: the status code and the body.
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// `(labels, value)` of every sample of `name` (`labels` is the text between the braces).
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(move |l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
                let (labels, v) = r.split_once("} ")?;
                (labels, v)
            } else {
                ("", rest.strip_prefix(' ')?)
            };
            Some((labels, value.split_whitespace().next()?.parse().ok()?))
        })
}

/// The sum of every sample of `name`, across label sets; `None` when it has none.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for (_, v) in samples(text, name) {
        *total.get_or_insert(0.0) += v;
    }
    total
}

/// The sample of `name` whose labels are exactly `labels` (in any order).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    samples(text, name)
        .find(|(l, _)| {
            let mut got: Vec<String> = if l.is_empty() {
                Vec::new()
            } else {
                l.split(',').map(str::to_owned).collect()
            };
            got.sort();
            got == want
        })
        .map(|(_, v)| v)
}

/// A quantile from a histogram's cumulative buckets (linear inside a bucket), over all
/// its label sets.
pub fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = samples(text, &bucket)
        .filter_map(|(labels, count)| {
            let le = labels.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Several label sets: add the counts of equal bounds.
    buckets.dedup_by(|later, first| {
        if later.0 == first.0 {
            first.1 += later.1;
            true
        } else {
            false
        }
    });
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, c) in buckets {
        if c >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let frac = if c > prev.1 {
                (rank - prev.1) / (c - prev.1)
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP veritrace_rejected_records_total x\n\
        veritrace_rejected_records_total{reason=\"a\"} 2\n\
        veritrace_rejected_records_total{reason=\"b\"} 3\n\
        veritrace_rejected_records_total_extra 100\n\
        veritrace_accepted_events_total 7\n\
        veritrace_lag{partition=\"0\",topic=\"raw\"} 5\n\
        h_bucket{le=\"1\"} 5\nh_bucket{le=\"2\"} 10\nh_bucket{le=\"+Inf\"} 10\n";

    #[test]
    fn sum_adds_label_sets_and_value_picks_one() {
        assert_eq!(sum(TEXT, "veritrace_rejected_records_total"), Some(5.0));
        assert_eq!(
            value(TEXT, "veritrace_rejected_records_total", &[("reason", "b")]),
            Some(3.0)
        );
        assert_eq!(value(TEXT, "veritrace_rejected_records_total", &[]), None);
        assert_eq!(
            value(TEXT, "veritrace_accepted_events_total", &[]),
            Some(7.0)
        );
        assert_eq!(
            value(
                TEXT,
                "veritrace_lag",
                &[("topic", "raw"), ("partition", "0")]
            ),
            Some(5.0)
        );
        assert_eq!(sum(TEXT, "veritrace_missing_total"), None);
        assert_eq!(histogram_quantile(TEXT, "h", 0.5), Some(1.0));
        assert_eq!(histogram_quantile(TEXT, "h", 0.75), Some(1.5));
    }

    #[test]
    fn quantiles_interpolate_inside_a_bucket() {
        let t = "x_bucket{le=\"0.1\"} 50\nx_bucket{le=\"0.2\"} 90\nx_bucket{le=\"+Inf\"} 100\nx_count 100\n";
        let q = |p| histogram_quantile(t, "x", p).expect("quantile");
        assert!((q(0.5) - 0.1).abs() < 1e-9);
        assert!((q(0.7) - 0.15).abs() < 1e-9);
        assert_eq!(q(0.99), 0.2);
        assert_eq!(sum(t, "x_count"), Some(100.0));
    }
}
