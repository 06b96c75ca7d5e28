//! `wiretrail query`: KFL over a data directory (opened directly) or a running server.

use std::sync::Arc;

use anyhow::{bail, Context};
use serde_json::Value;
use wiretrail_ingest::{Ingest, IngestConfig};
use wiretrail_query::time::parse_time;
use wiretrail_query::{EntriesRequest, QueryError, QueryService};

#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    target: crate::Target,
    #[command(flatten)]
    token: crate::auth_cmd::TokenArg,
    /// Start of the window (inclusive): RFC 3339, epoch ms, `now` or relative like -15m.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// End of the window (exclusive), same forms as --from.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Only entries captured on these nodes (comma-separated node names).
    #[arg(long, value_name = "NODES", value_delimiter = ',')]
    nodes: Vec<String>,
    /// Most entries to print (newest first).
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// KFL filter, e.g. 'http and response.status >= 500' (empty: everything).
    #[arg(default_value = "")]
    kfl: String,
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_table(entries: &[Value]) {
    println!(
        "{:<27} {:<6} {:<7} {:<40} {:>6} {:>9}  SRC → DST",
        "TS", "PROTO", "METHOD", "PATH", "STATUS", "ELAPSED"
    );
    for e in entries {
        let path: String = cell(&e["path"]).chars().take(40).collect();
        let elapsed = e["elapsed_us"]
            .as_i64()
            .map(|us| format!("{:.1}ms", us as f64 / 1000.0))
            .unwrap_or("-".into());
        println!(
            "{:<27} {:<6} {:<7} {:<40} {:>6} {:>9}  {} → {}",
            cell(&e["ts"]),
            cell(&e["protocol"]),
            cell(&e["method"]),
            path,
            cell(&e["status"]),
            elapsed,
            cell(&e["src"]["name"]),
            cell(&e["dst"]["name"])
        );
    }
    println!("({} entries)", entries.len());
}

pub async fn run(a: QueryArgs) -> anyhow::Result<()> {
    let entries: Vec<Value> = if let Some(url) = &a.target.server {
        let mut q = vec![("kfl", a.kfl.clone()), ("limit", a.limit.to_string())];
        if !a.nodes.is_empty() {
            q.push(("nodes", a.nodes.join(",")));
        }
        if let Some(f) = &a.from {
            q.push(("from", f.clone()));
        }
        if let Some(t) = &a.to {
            q.push(("to", t.clone()));
        }
        let resp = a
            .token
            .send(
                reqwest::Client::new()
                    .get(format!("{}/api/v1/entries", url.trim_end_matches('/')))
                    .query(&q),
                url,
            )
            .await?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .context("the server's answer is not JSON")?;
        if !status.is_success() {
            let err = &body["error"];
            if let Some(pos) = err["position"].as_u64() {
                eprintln!("{}\n{}^", a.kfl, " ".repeat(pos as usize));
            }
            bail!("{}: {}", status, cell(&err["message"]));
        }
        body["entries"].as_array().cloned().unwrap_or_default()
    } else {
        let dir = a
            .target
            .data
            .clone()
            .unwrap_or_else(|| crate::DEFAULT_DATA.into());
        let ingest = Ingest::open(&dir, IngestConfig::default()).await?;
        let svc = Arc::new(QueryService::new(ingest));
        let now = chrono::Utc::now().timestamp_micros();
        let req = EntriesRequest {
            kfl: a.kfl.clone(),
            from: a.from.as_deref().map(|t| parse_time(t, now)).transpose()?,
            to: a.to.as_deref().map(|t| parse_time(t, now)).transpose()?,
            limit: Some(a.limit),
            cursor: None,
            nodes: a.nodes.clone(),
        };
        match svc.entries(&req).await {
            Ok(page) => page.entries,
            Err(QueryError::Kfl(e)) => {
                eprintln!("{}", e.render(&a.kfl));
                bail!("invalid KFL query");
            }
            Err(e) => return Err(e.into()),
        }
    };
    if a.format == "json" {
        println!("{}", serde_json::json!({ "entries": entries }));
    } else {
        print_table(&entries);
    }
    Ok(())
}
