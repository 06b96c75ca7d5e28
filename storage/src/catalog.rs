//! The RocksDB catalog: which Parquet files exist (time range, rows, bytes) and, per agent, the
//! last batch sequence number whose rows are in those files.
//!
//! A flush registers its file and advances the agent sequence numbers in one synced
//! `WriteBatch`, so after a crash the catalog either has both or neither; ingest uses the agent
//! sequence numbers to skip WAL records that already reached Parquet.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::{Micros, StorageError};

const CF_FILES: &str = "files";
const CF_AGENTS: &str = "agents";

/// One Parquet file as the catalog knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Relative to `<data>/entries/`.
    pub path: String,
    pub level: u8,
    pub file_id: u64,
    pub min_ts: Micros,
    pub max_ts: Micros,
    pub rows: u64,
    pub bytes: u64,
}

impl FileMeta {
    /// True when the file may hold rows with `from <= ts < to`.
    pub fn overlaps(&self, from: Micros, to: Micros) -> bool {
        self.min_ts < to && self.max_ts >= from
    }
}

pub struct Catalog {
    db: DB,
    path: std::path::PathBuf,
    next_file_id: AtomicU64,
}

fn file_key(min_ts: Micros, file_id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    // Flip the sign bit so that negative timestamps still sort first.
    k[..8].copy_from_slice(&((min_ts as u64) ^ (1 << 63)).to_be_bytes());
    k[8..].copy_from_slice(&file_id.to_be_bytes());
    k
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let rocks = |source| StorageError::Rocks {
            path: path.to_path_buf(),
            source,
        };
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // The catalog is small; keep RocksDB's own memory use modest.
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(3);
        let cfs = [CF_FILES, CF_AGENTS]
            .into_iter()
            .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(rocks)?;
        let cat = Catalog {
            db,
            path: path.to_path_buf(),
            next_file_id: AtomicU64::new(1),
        };
        let max_id = cat.files()?.iter().map(|f| f.file_id).max().unwrap_or(0);
        cat.next_file_id.store(max_id + 1, Ordering::SeqCst);
        Ok(cat)
    }

    fn rocks(&self, source: rocksdb::Error) -> StorageError {
        StorageError::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created on open")
    }

    pub fn next_file_id(&self) -> u64 {
        self.next_file_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Registers files and advances agent sequence numbers atomically and durably.
    pub fn commit_files(
        &self,
        files: &[FileMeta],
        agent_seqs: &BTreeMap<String, u64>,
    ) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        for f in files {
            let v = serde_json::to_vec(f).expect("FileMeta serializes");
            wb.put_cf(self.cf(CF_FILES), file_key(f.min_ts, f.file_id), v);
        }
        let current = self.agent_seqs()?;
        for (agent, seq) in agent_seqs {
            if current.get(agent).is_none_or(|c| c < seq) {
                wb.put_cf(self.cf(CF_AGENTS), agent.as_bytes(), seq.to_be_bytes());
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo).map_err(|e| self.rocks(e))
    }

    /// Every file, oldest first.
    pub fn files(&self) -> Result<Vec<FileMeta>, StorageError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_FILES), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            let meta: FileMeta =
                serde_json::from_slice(&v).map_err(|e| StorageError::CorruptCatalog {
                    key: format!("files/{k:02x?}"),
                    reason: e.to_string(),
                })?;
            out.push(meta);
        }
        Ok(out)
    }

    /// Files that may hold rows with `from <= ts < to`.
    pub fn files_overlapping(
        &self,
        from: Micros,
        to: Micros,
    ) -> Result<Vec<FileMeta>, StorageError> {
        let end = file_key(to, 0);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_FILES), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            if k.as_ref() >= end.as_slice() {
                break;
            }
            let meta: FileMeta =
                serde_json::from_slice(&v).map_err(|e| StorageError::CorruptCatalog {
                    key: format!("files/{k:02x?}"),
                    reason: e.to_string(),
                })?;
            if meta.overlaps(from, to) {
                out.push(meta);
            }
        }
        Ok(out)
    }

    /// Last batch sequence number per agent whose rows are in Parquet.
    pub fn agent_seqs(&self) -> Result<HashMap<String, u64>, StorageError> {
        let mut out = HashMap::new();
        for item in self.db.iterator_cf(self.cf(CF_AGENTS), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            let agent = String::from_utf8_lossy(&k).into_owned();
            let seq: [u8; 8] = v
                .as_ref()
                .try_into()
                .map_err(|_| StorageError::CorruptCatalog {
                    key: format!("agents/{agent}"),
                    reason: format!("{} bytes, expected 8", v.len()),
                })?;
            out.insert(agent, u64::from_be_bytes(seq));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(min_ts: Micros, max_ts: Micros, id: u64) -> FileMeta {
        FileMeta {
            path: format!("f{id}"),
            level: 0,
            file_id: id,
            min_ts,
            max_ts,
            rows: 1,
            bytes: 1,
        }
    }

    #[test]
    fn commits_files_and_seqs_and_prunes_by_time() {
        let dir = std::env::temp_dir().join(format!("wt-cat-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let cat = Catalog::open(&dir).unwrap();
            let seqs = BTreeMap::from([("a".to_string(), 5u64)]);
            cat.commit_files(&[meta(100, 200, 1), meta(300, 400, 2)], &seqs)
                .unwrap();
            cat.commit_files(&[], &BTreeMap::from([("a".to_string(), 3u64)]))
                .unwrap();
        }
        let cat = Catalog::open(&dir).unwrap();
        assert_eq!(cat.files().unwrap().len(), 2);
        assert_eq!(
            cat.agent_seqs().unwrap()["a"],
            5,
            "sequence numbers never go back"
        );
        assert_eq!(cat.files_overlapping(150, 160).unwrap().len(), 1);
        assert_eq!(cat.files_overlapping(200, 300).unwrap().len(), 1);
        assert_eq!(cat.files_overlapping(201, 300).unwrap().len(), 0);
        assert_eq!(cat.files_overlapping(0, 1000).unwrap().len(), 2);
        assert_eq!(cat.next_file_id(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
