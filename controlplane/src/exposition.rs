//! Prometheus's text exposition format (version 0.0.4), written by hand.
//!
//! Guarantees: each family is written as `# HELP`, `# TYPE` and its samples together; label
//! values escape `\`, `"` and newlines, help texts `\` and newlines, as the format requires;
//! histogram buckets are written cumulatively in ascending order, ending with `+Inf` equal to
//! `_count`.

use std::fmt::Write as _;

use raftstore::metrics::HistogramSnapshot;

/// The `Content-Type` of a text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A family with one unlabelled sample.
    pub fn single(&mut self, kind: Kind, name: &str, help: &str, value: f64) {
        self.family(kind, name, help, [(&[][..], value)]);
    }

    /// A family with one sample per `(labels, value)`.
    pub fn family<'a>(
        &mut self,
        kind: Kind,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (&'a [(&'a str, &'a str)], f64)>,
    ) {
        self.header(name, help, kind.name());
        for (labels, value) in samples {
            self.sample(name, labels, value);
        }
    }

    /// A histogram family: `_bucket{le=...}` cumulative, then `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &HistogramSnapshot) {
        self.header(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        for (bound, count) in &histogram.buckets {
            let le = format_value(*bound);
            self.sample(&bucket, &[("le", &le)], *count as f64);
        }
        self.sample(&bucket, &[("le", "+Inf")], histogram.count as f64);
        self.sample(&format!("{name}_sum"), &[], histogram.sum_seconds);
        self.sample(&format!("{name}_count"), &[], histogram.count as f64);
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.text
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }
}

/// A sample value as the format spells it (`+Inf`, `-Inf`, `NaN`, else the shortest decimal).
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    }
}

fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftstore::metrics::Histogram;
    use std::time::Duration;

    #[test]
    fn counter_is_written_with_help_and_type() {
        let mut out = Exposition::default();
        out.single(Kind::Counter, "etcd_mvcc_put_total", "Puts.", 3.0);

        assert_eq!(
            out.finish(),
            "# HELP etcd_mvcc_put_total Puts.\n# TYPE etcd_mvcc_put_total counter\netcd_mvcc_put_total 3\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        let labels: &[(&str, &str)] = &[("a", "x\"y"), ("b", "back\\slash\nline")];
        out.family(Kind::Gauge, "m", "help \\ with\nnewline", [(labels, 1.0)]);

        let text = out.finish();

        assert!(
            text.contains("# HELP m help \\\\ with\\nnewline\n"),
            "{text}"
        );
        assert!(
            text.contains("m{a=\"x\\\"y\",b=\"back\\\\slash\\nline\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let histogram = Histogram::default();
        for millis in [1, 3, 3, 100] {
            histogram.observe(Duration::from_millis(millis));
        }
        histogram.observe(Duration::from_secs(60));
        let mut out = Exposition::default();
        out.histogram("h_seconds", "Latency.", &histogram.snapshot());

        let text = out.finish();

        assert!(text.contains("# TYPE h_seconds histogram\n"), "{text}");
        assert!(
            text.contains("h_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{le=\"0.002\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{le=\"0.004\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{le=\"0.128\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{le=\"8.192\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("h_seconds_bucket{le=\"+Inf\"} 5\n"), "{text}");
        assert!(text.contains("h_seconds_count 5\n"), "{text}");
        assert!(text.contains("h_seconds_sum 60.107\n"), "{text}");
        let bounds: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("h_seconds_bucket"))
            .collect();
        assert_eq!(bounds.len(), 15, "14 bounds and +Inf");
    }
}
