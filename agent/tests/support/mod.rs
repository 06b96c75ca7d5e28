//! Shared by the conformance tests: run a corpus capture through the pipeline, read tshark's
//! ground truth (`truth/<name>.fields.tsv`), and print one row of the per-protocol
//! conformance table (messages in truth, found, matching, mismatches listed).

#![allow(dead_code)]

pub mod mutate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use wiretrail_agent::{CaptureReader, Pipeline, PipelineConfig, PipelineStats};
use wiretrail_proto::Entry;

pub fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

/// `true` (after printing why) when the corpus is not beside the project.
pub fn skip() -> bool {
    if corpus().join("pcaps").exists() {
        return false;
    }
    eprintln!("SKIP: corpus not found at {}", corpus().display());
    true
}

/// Every entry the pipeline makes from `pcaps/<name>.pcap`, with its counters.
pub fn run(name: &str, body_cap: usize) -> (Vec<Entry>, PipelineStats) {
    run_with_keylog(name, body_cap, false)
}

/// [`run`], with `pcaps/<name>.keylog` applied when `keylog` is set.
pub fn run_with_keylog(name: &str, body_cap: usize, keylog: bool) -> (Vec<Entry>, PipelineStats) {
    let keylog = keylog.then(|| {
        let path = corpus().join("pcaps").join(format!("{name}.keylog"));
        std::sync::Arc::new(wiretrail_agent::KeyLog::load(path).unwrap())
    });
    let mut p = Pipeline::new(PipelineConfig {
        node: "t".into(),
        body_cap,
        keylog,
        ..Default::default()
    });
    let mut r = CaptureReader::open(corpus().join("pcaps").join(format!("{name}.pcap"))).unwrap();
    let mut out = Vec::new();
    while let Some(pkt) = r.next_packet().unwrap() {
        p.packet(pkt.ts_us, pkt.link, &pkt.data);
        out.extend(p.take_entries());
    }
    assert_eq!(r.bytes_read(), r.total_bytes(), "{name}: whole file read");
    p.finish();
    out.extend(p.take_entries());
    (out, p.stats().clone())
}

/// Rows of a truth TSV as column → value maps.
pub fn truth(name: &str) -> Vec<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(corpus().join("truth").join(format!("{name}.fields.tsv"))).unwrap();
    let mut lines = text.lines();
    let cols: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .map(|l| {
            cols.iter()
                .zip(l.split('\t'))
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// An entry's JSON detail (`request`/`response`), `Null` if absent.
pub fn detail(s: &Option<String>) -> serde_json::Value {
    s.as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The strings of a JSON array (others skipped).
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A multi-valued tshark field (`a|b|c`; empty = none).
pub fn split(v: &str) -> Vec<String> {
    if v.is_empty() {
        vec![]
    } else {
        v.split('|').map(str::to_string).collect()
    }
}

/// One row of the conformance table: how many messages tshark decoded, how many of them we
/// found, how many of those agree on the key fields, and the disagreements.
#[derive(Debug, Default)]
pub struct Conformance {
    pub protocol: &'static str,
    pub capture: String,
    pub truth: usize,
    pub found: usize,
    pub matching: usize,
    pub mismatches: Vec<String>,
}

impl Conformance {
    pub fn new(protocol: &'static str, capture: &str) -> Self {
        Self {
            protocol,
            capture: capture.to_string(),
            ..Default::default()
        }
    }

    /// Compare one message: `want` from tshark, `got` from us (`None` = not found).
    pub fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, want: &T, got: Option<&T>) {
        self.truth += 1;
        match got {
            Some(g) => {
                self.found += 1;
                if g == want {
                    self.matching += 1;
                } else {
                    self.mismatches
                        .push(format!("{what}: tshark {want:?}, ours {g:?}"));
                }
            }
            None => self
                .mismatches
                .push(format!("{what}: tshark {want:?}, ours missing")),
        }
    }

    /// Print the row (and the mismatches), then fail the test unless everything matched.
    pub fn print_and_assert(&self) {
        eprintln!(
            "CONFORMANCE {:<10} {:<32} truth {:>5}  found {:>5}  matching {:>5}  mismatches {}",
            self.protocol,
            self.capture,
            self.truth,
            self.found,
            self.matching,
            self.mismatches.len()
        );
        for m in &self.mismatches {
            eprintln!("  mismatch: {m}");
        }
        assert!(self.truth > 0, "{}: no messages in truth", self.capture);
        assert!(
            self.mismatches.is_empty(),
            "{} {}: {} mismatches",
            self.protocol,
            self.capture,
            self.mismatches.len()
        );
    }
}
