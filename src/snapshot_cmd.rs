//! `wiretrail snapshot …`: pin a window for auditors, list/delete pins, export a bundle
//! (locally or from a running server), verify a bundle, import one into a data dir.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use wiretrail_ingest::{Ingest, IngestConfig};
use wiretrail_query::snapshot::{self, ExportFormat, SnapshotSpec};
use wiretrail_query::time::parse_time;
use wiretrail_query::{QueryError, QueryService};

#[derive(clap::Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Pin a window (retention keeps its hours) and record the query it selects with.
    Create(CreateArgs),
    /// List the snapshots of a data dir or server.
    List(TargetArgs),
    /// Unpin a snapshot (exported bundles are unaffected).
    Delete(NameArgs),
    /// Write a snapshot as a bundle: Parquet, manifest.json with SHA-256 of every file, HAR
    /// of the HTTP entries, a PCAP rebuilt from the HTTP/1 exchanges.
    Export(ExportArgs),
    /// Check every file of a bundle against its manifest; fails on any changed byte.
    Verify(VerifyArgs),
    /// Load a verified bundle into a data dir (queried like live data, pinned there too).
    Import(ImportArgs),
}

#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    #[command(flatten)]
    target: crate::Target,
    #[command(flatten)]
    token: crate::auth_cmd::TokenArg,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    t: TargetArgs,
    /// Start of the window (inclusive): RFC 3339, epoch ms, `now` or relative like -2h.
    /// Default: the oldest stored entry.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// End of the window (exclusive). Default: just after the newest stored entry.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// KFL filter the snapshot keeps (default: every entry in the window).
    #[arg(long, value_name = "QUERY", default_value = "")]
    kfl: String,
    /// Keep only entries captured on this node (repeat for several).
    #[arg(long = "node", value_name = "NAME")]
    nodes: Vec<String>,
    /// Snapshot name: letters, digits, '.', '_', '-'.
    name: String,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    t: TargetArgs,
    name: String,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    t: TargetArgs,
    name: String,
    /// New or empty directory to write the bundle into.
    out_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// `text` for people, `json` for scripts.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    format: String,
    /// The bundle directory.
    dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Data directory to import into (must not be owned by a running server).
    #[arg(long, value_name = "DIR", default_value = crate::DEFAULT_DATA)]
    data: PathBuf,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    format: String,
    /// The bundle directory.
    dir: PathBuf,
}

/// Absolute, because the query engine reads local Parquet files through an object store
/// rooted at `/` (a relative data dir would be looked up there).
fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

async fn open_local(t: &crate::Target) -> anyhow::Result<QueryService> {
    let dir = absolute(&t.data.clone().unwrap_or_else(|| crate::DEFAULT_DATA.into()))?;
    let ingest = Ingest::open(&dir, IngestConfig::default()).await?;
    Ok(QueryService::new(ingest))
}

fn api(url: &str, path: &str) -> String {
    format!("{}/api/v1/snapshots{path}", url.trim_end_matches('/'))
}

/// The JSON of a server's answer, or its error message.
async fn answer(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .context("the server's answer is not JSON")?;
    if !status.is_success() {
        bail!(
            "{status}: {}",
            body["error"]["message"].as_str().unwrap_or("error")
        );
    }
    Ok(body)
}

fn local(e: QueryError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn print_info(v: &Value) {
    let nodes = v["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    println!(
        "{:<24} {:<27} {:<27} {:<27} {:<12} {}",
        v["name"].as_str().unwrap_or(""),
        v["from"].as_str().unwrap_or(""),
        v["to"].as_str().unwrap_or(""),
        v["created"].as_str().unwrap_or(""),
        if nodes.is_empty() { "-".into() } else { nodes },
        v["kfl"].as_str().unwrap_or("")
    );
}

fn print_header() {
    println!(
        "{:<24} {:<27} {:<27} {:<27} {:<12} KFL",
        "NAME", "FROM", "TO", "CREATED", "NODES"
    );
}

pub async fn run(cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Create(a) => create(a).await,
        SnapshotCommand::List(a) => list(a).await,
        SnapshotCommand::Delete(a) => delete(a).await,
        SnapshotCommand::Export(a) => export(a).await,
        SnapshotCommand::Verify(a) => verify(a),
        SnapshotCommand::Import(a) => import(a).await,
    }
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let info = if let Some(url) = &a.t.target.server {
        let mut body = json!({"name": a.name, "kfl": a.kfl, "nodes": a.nodes});
        if let Some(f) = &a.from {
            body["from"] = json!(f);
        }
        if let Some(t) = &a.to {
            body["to"] = json!(t);
        }
        let resp =
            a.t.token
                .send(reqwest::Client::new().post(api(url, "")).json(&body), url)
                .await?;
        answer(resp).await?
    } else {
        let svc = open_local(&a.t.target).await?;
        let now = chrono::Utc::now().timestamp_micros();
        let spec = SnapshotSpec {
            name: a.name.clone(),
            from: a.from.as_deref().map(|t| parse_time(t, now)).transpose()?,
            to: a.to.as_deref().map(|t| parse_time(t, now)).transpose()?,
            kfl: a.kfl.clone(),
            nodes: a.nodes.clone(),
        };
        match snapshot::create(&svc, &spec).await {
            Ok(i) => serde_json::to_value(i)?,
            Err(QueryError::Kfl(e)) => {
                eprintln!("{}", e.render(&a.kfl));
                bail!("invalid KFL query");
            }
            Err(e) => return Err(local(e)),
        }
    };
    if a.t.format == "json" {
        println!("{info}");
    } else {
        print_header();
        print_info(&info);
    }
    Ok(())
}

async fn list(a: TargetArgs) -> anyhow::Result<()> {
    let list: Vec<Value> = if let Some(url) = &a.target.server {
        let resp = a
            .token
            .send(reqwest::Client::new().get(api(url, "")), url)
            .await?;
        answer(resp).await?["snapshots"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    } else {
        let svc = open_local(&a.target).await?;
        snapshot::list(&svc)
            .map_err(local)?
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?
    };
    if a.format == "json" {
        println!("{}", json!({ "snapshots": list }));
    } else {
        print_header();
        list.iter().for_each(print_info);
        println!("({} snapshots)", list.len());
    }
    Ok(())
}

async fn delete(a: NameArgs) -> anyhow::Result<()> {
    if let Some(url) = &a.t.target.server {
        let resp =
            a.t.token
                .send(
                    reqwest::Client::new().delete(api(url, &format!("/{}", a.name))),
                    url,
                )
                .await?;
        answer(resp).await?;
    } else {
        let svc = open_local(&a.t.target).await?;
        snapshot::delete(&svc, &a.name).map_err(local)?;
    }
    println!("deleted snapshot {}", a.name);
    Ok(())
}

async fn export(a: ExportArgs) -> anyhow::Result<()> {
    if let Some(url) = &a.t.target.server {
        snapshot::check_name(&a.name).map_err(local)?;
        let mut resp = a
            .t
            .token
            .send(
                reqwest::Client::new().get(api(url, &format!("/{}/export?format=bundle", a.name))),
                url,
            )
            .await?;
        if !resp.status().is_success() {
            answer(resp).await?;
            bail!("the server refused the export");
        }
        // Download to a temporary file beside OUT_DIR, then unpack: the layout is the one a
        // local export writes.
        let tmp = temp_beside(&a.out_dir);
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let res: anyhow::Result<()> = async {
            while let Some(chunk) = resp.chunk().await.context("download interrupted")? {
                std::io::Write::write_all(&mut f, &chunk)?;
            }
            drop(f);
            let r = std::fs::File::open(&tmp)?;
            snapshot::unpack_bundle(std::io::BufReader::new(r), &a.out_dir).map_err(local)
        }
        .await;
        let _ = std::fs::remove_file(&tmp);
        res?;
    } else {
        let svc = open_local(&a.t.target).await?;
        snapshot::export(&svc, &a.name, &a.out_dir, ExportFormat::Bundle)
            .await
            .map_err(local)?;
    }
    // Same check in both modes: what is on disk is what the manifest says.
    let report = snapshot::verify(&a.out_dir).map_err(local)?;
    if !report.ok {
        bail!(
            "the exported bundle does not verify: {}",
            report.problems.join("; ")
        );
    }
    if a.t.format == "json" {
        println!("{}", serde_json::to_value(&report)?);
    } else {
        println!(
            "exported snapshot {} to {}: {} entries {:?}; manifest.json lists the SHA-256 of its {} files",
            a.name,
            a.out_dir.display(),
            report.entries,
            report.counts,
            report.files_checked
        );
    }
    Ok(())
}

fn temp_beside(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    out.with_file_name(format!(".{name}.{}.download.tar", std::process::id()))
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let report = snapshot::verify(&a.dir).map_err(local)?;
    if a.format == "json" {
        println!("{}", serde_json::to_value(&report)?);
    } else if report.ok {
        println!(
            "OK: snapshot {} in {}: manifest.json and its {} files (SHA-256, sizes), {} entries {:?} as listed",
            report.name.as_deref().unwrap_or("?"),
            a.dir.display(),
            report.files_checked,
            report.entries,
            report.counts
        );
    } else {
        for p in &report.problems {
            eprintln!("FAILED: {p}");
        }
    }
    if !report.ok {
        bail!(
            "{} does not verify ({} problems)",
            a.dir.display(),
            report.problems.len()
        );
    }
    Ok(())
}

async fn import(a: ImportArgs) -> anyhow::Result<()> {
    let ingest: Arc<Ingest> = Ingest::open(absolute(&a.data)?, IngestConfig::default()).await?;
    let r = snapshot::import_bundle(&ingest, &a.dir)
        .await
        .map_err(local)?;
    ingest.shutdown().await?;
    if a.format == "json" {
        println!("{}", serde_json::to_value(&r)?);
    } else {
        println!(
            "imported snapshot {} into {}: {} entries ({} batches were already there){}",
            r.name,
            a.data.display(),
            r.entries,
            r.duplicate_batches,
            if r.pinned { ", pinned" } else { "" }
        );
    }
    Ok(())
}
