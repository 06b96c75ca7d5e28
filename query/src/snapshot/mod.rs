//! Snapshots for auditors: a named window (plus an optional KFL filter and node list) is pinned
//! in the catalog, so retention keeps its hours, and can be exported as a verifiable bundle:
//! Parquet of the matching entries, `manifest.json` with SHA-256 of every file, HAR 1.2 for
//! HTTP-family entries and a PCAP rebuilt from the stored HTTP/1 exchanges. A bundle can be
//! verified offline and imported into another data dir, where it is queried like live data.

mod bundle;
mod har;
mod pcap;
pub mod rest;

use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use datafusion::prelude::{col, Expr};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use wiretrail_proto::schema::{ID, TS};
use wiretrail_storage::Pin;

pub use bundle::{
    import_bundle, unpack_bundle, verify, write_tar, ExportReport, ImportReport, Manifest,
    VerifyReport, HAR_FILE, MANIFEST_FILE, PCAP_FILE,
};

use crate::kfl::{self, KflOptions};
use crate::time::format_ts;
use crate::{QueryError, QueryService};

/// `[{name, value}]` headers of an entry's JSON as pairs (HAR and PCAP both rebuild messages).
fn headers(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h["name"].as_str().unwrap_or_default().to_string(),
                        h["value"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a snapshot selects; times are µs since the epoch, `[from, to)`; `None` = the oldest
/// (newest) entry stored when the snapshot is created.
#[derive(Debug, Clone, Default)]
pub struct SnapshotSpec {
    pub name: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub kfl: String,
    pub nodes: Vec<String>,
}

/// A snapshot as the API and the CLI show it.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub name: String,
    pub from: String,
    pub to: String,
    pub from_us: i64,
    pub to_us: i64,
    pub kfl: String,
    pub nodes: Vec<String>,
    pub created: String,
    /// Set on snapshots brought in by `wiretrail snapshot import`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imported: Option<Value>,
}

impl SnapshotInfo {
    pub fn from_pin(p: &Pin) -> Self {
        SnapshotInfo {
            name: p.name.clone(),
            from: format_ts(p.from),
            to: format_ts(p.to),
            from_us: p.from,
            to_us: p.to,
            kfl: kfl_of(p),
            nodes: nodes_of(p),
            created: format_ts(p.created_us),
            imported: p.query.get("imported").cloned(),
        }
    }
}

fn kfl_of(p: &Pin) -> String {
    p.query["kfl"].as_str().unwrap_or_default().to_string()
}

fn nodes_of(p: &Pin) -> Vec<String> {
    p.query["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Names end up in URLs, agent ids and messages: keep them plain.
pub fn check_name(name: &str) -> Result<(), QueryError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(QueryError::BadRequest(format!(
            "invalid snapshot name {:?}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            name.chars().take(140).collect::<String>()
        )))
    }
}

/// Oldest and newest `ts` stored (files and buffer), if any.
async fn data_bounds(svc: &QueryService) -> Result<Option<(i64, i64)>, QueryError> {
    let snap = svc.ingest().snapshot(i64::MIN, i64::MAX).await?;
    let mut lo = snap.files.iter().map(|f| f.min_ts).min();
    let mut hi = snap.files.iter().map(|f| f.max_ts).max();
    for b in &snap.buffered {
        if let Some(ts) = b.column_by_name(TS) {
            let ts = ts.as_primitive::<TimestampMicrosecondType>();
            for t in ts.iter().flatten() {
                lo = Some(lo.map_or(t, |l| l.min(t)));
                hi = Some(hi.map_or(t, |h| h.max(t)));
            }
        }
    }
    Ok(lo.zip(hi))
}

/// Pins the window under `spec.name` and records the query. The window defaults to all data
/// stored now (so a snapshot never pins the future).
pub async fn create(svc: &QueryService, spec: &SnapshotSpec) -> Result<SnapshotInfo, QueryError> {
    check_name(&spec.name)?;
    kfl::validate(&spec.kfl)?;
    if let Some(n) = spec.nodes.iter().find(|n| n.is_empty() || n.len() > 256) {
        return Err(QueryError::BadRequest(format!(
            "invalid node name {n:?} in nodes"
        )));
    }
    let catalog = svc.ingest().catalog();
    let existing = catalog
        .pins()
        .map_err(wiretrail_ingest::IngestError::from)?;
    if existing.iter().any(|p| p.name == spec.name) {
        return Err(QueryError::Conflict(format!(
            "a snapshot named {:?} exists; delete it first or pick another name",
            spec.name
        )));
    }
    let bounds = if spec.from.is_none() || spec.to.is_none() {
        data_bounds(svc).await?
    } else {
        None
    };
    let no_data = || {
        QueryError::BadRequest(
            "the store holds no entries yet: give both `from` and `to` for the window".into(),
        )
    };
    let from = match spec.from {
        Some(f) => f,
        None => bounds.ok_or_else(no_data)?.0,
    };
    let to = match spec.to {
        Some(t) => t,
        None => bounds.ok_or_else(no_data)?.1.saturating_add(1),
    };
    if from >= to {
        return Err(QueryError::BadRequest(format!(
            "`from` ({}) must be before `to` ({})",
            format_ts(from),
            format_ts(to)
        )));
    }
    let pin = Pin {
        name: spec.name.clone(),
        from,
        to,
        query: json!({"kfl": spec.kfl, "nodes": spec.nodes}),
        created_us: chrono::Utc::now().timestamp_micros(),
    };
    svc.ingest().pin(&pin)?;
    tracing::info!(name = %pin.name, from, to, "snapshot pinned");
    Ok(SnapshotInfo::from_pin(&pin))
}

pub fn list(svc: &QueryService) -> Result<Vec<SnapshotInfo>, QueryError> {
    let pins = svc
        .ingest()
        .catalog()
        .pins()
        .map_err(wiretrail_ingest::IngestError::from)?;
    Ok(pins.iter().map(SnapshotInfo::from_pin).collect())
}

pub(crate) fn find(svc: &QueryService, name: &str) -> Result<Pin, QueryError> {
    check_name(name)?;
    svc.ingest()
        .catalog()
        .pins()
        .map_err(wiretrail_ingest::IngestError::from)?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| QueryError::NotFound(format!("no snapshot named {name:?}")))
}

/// Unpins the snapshot (retention may drop its hours again); exported bundles are unaffected.
pub fn delete(svc: &QueryService, name: &str) -> Result<(), QueryError> {
    check_name(name)?;
    if svc.ingest().unpin(name)? {
        Ok(())
    } else {
        Err(QueryError::NotFound(format!("no snapshot named {name:?}")))
    }
}

/// Which files an export writes (a bundle has them all plus the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Bundle,
    Har,
    Pcap,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        match s {
            "" | "bundle" => Ok(ExportFormat::Bundle),
            "har" => Ok(ExportFormat::Har),
            "pcap" => Ok(ExportFormat::Pcap),
            other => Err(QueryError::BadRequest(format!(
                "unknown export format {:?}: use bundle, har or pcap",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// Writes the snapshot `name` into the empty (or new) directory `out`. The entries are read
/// with the KFL and nodes recorded at creation, oldest first; `now()` in the KFL means the
/// creation time, so exporting twice gives the same entries.
pub async fn export(
    svc: &QueryService,
    name: &str,
    out: &Path,
    format: ExportFormat,
) -> Result<ExportReport, QueryError> {
    let pin = find(svc, name)?;
    let kfl_text = kfl_of(&pin);
    let nodes = nodes_of(&pin);
    // `now()` in a snapshot's KFL is its creation time, so two exports give the same entries.
    let compiled = kfl::compile(
        &kfl_text,
        &KflOptions {
            now_ms: pin.created_us / 1000,
            ..svc.kfl_options()
        },
    )?;
    let preds: Vec<Expr> = compiled.filter.into_iter().collect();
    let (mut df, _) = svc
        .scan(Some(pin.from), Some(pin.to), preds, &nodes)
        .await?;
    df = df.sort(vec![col(TS).sort(true, false), col(ID).sort(true, false)])?;
    if let Some(n) = compiled.limit {
        df = df.limit(0, Some(n))?;
    }
    let existed = out.exists();
    let mut writer = bundle::BundleWriter::create(out, format, &pin, &kfl_text, &nodes)?;
    let written = async {
        let mut stream = df.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if batch.num_rows() > 0 {
                writer.write(&batch)?;
            }
        }
        writer.finish()
    }
    .await;
    let report = match written {
        Ok(r) => r,
        Err(e) => {
            // Leave no half bundle behind (`out` was empty or absent before).
            let _ = std::fs::remove_dir_all(out);
            if existed {
                let _ = std::fs::create_dir_all(out);
            }
            return Err(e);
        }
    };
    tracing::info!(name, entries = report.entries, out = %out.display(), "snapshot exported");
    Ok(report)
}
