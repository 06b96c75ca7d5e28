//! The Parquet files wiretrail writes are ordinary Parquet: pyarrow and DuckDB read them and
//! see the documented columns and the same row count as the API.

mod common;

use std::process::Command;

use common::*;

const COLUMNS: &str = "id ts elapsed_us node protocol capture src_ip dst_ip src_port dst_port src_name src_namespace src_pod src_service src_workload src_node dst_name dst_namespace dst_pod dst_service dst_workload dst_node method path status status_text request_size response_size request_headers response_headers request_body response_body request_body_truncated response_body_truncated request response";

#[test]
fn parquet_files_open_in_pyarrow_and_duckdb() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("interop");
    let data = dir.join("data");
    let s = import(&[
        "--data",
        data.to_str().unwrap(),
        "--identities",
        pcap("cluster_mix.identities.json").to_str().unwrap(),
        pcap("cluster_mix.pcap").to_str().unwrap(),
        pcap("http1_gzip.pcap").to_str().unwrap(),
    ]);
    let rows = s["acked_entries"].as_u64().unwrap();
    let glob = format!("{}/entries/*/*/*.parquet", data.display());

    if python_module("pyarrow", "pyarrow").is_some() {
        let script = format!(
            r#"
import glob, pyarrow.parquet as pq, pyarrow as pa
files = sorted(glob.glob({glob:?}))
assert files, "no parquet files"
t = pa.concat_tables([pq.read_table(f) for f in files])
print(t.num_rows)
missing = [c for c in {COLUMNS:?}.split() if c not in t.column_names]
assert not missing, missing
assert str(t.schema.field("ts").type) == "timestamp[us, tz=UTC]", t.schema.field("ts").type
assert t.schema.field("id").type == pa.binary(16)
md = pq.ParquetFile(files[0]).metadata
assert md.row_group(0).column(0).statistics is not None
print("ok")
"#
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pyarrow: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.lines().next().unwrap().trim(),
            rows.to_string(),
            "pyarrow row count"
        );
    }
    if python_module("duckdb", "duckdb").is_some() {
        let script = format!(
            "import duckdb; c = duckdb.connect(); print(c.execute(\"select count(*), count(distinct id), sum(case when protocol = 'http' then 1 else 0 end) from read_parquet('{glob}', hive_partitioning=true)\").fetchone())"
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "duckdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let http = 602 + 4;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("({rows}, {rows}, {http})")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
