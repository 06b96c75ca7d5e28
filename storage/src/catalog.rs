//! The RocksDB catalog (DESIGN.md "Storage layout"), one column family per concern:
//!
//! - `files`: every Parquet file (time range, rows, bytes, tags, source batches), keyed by
//!   `(min_ts, file_id)` so a time window is a range scan;
//! - `agents`: per agent, the last batch sequence number whose rows are in those files;
//! - `tags`: per hour, `(kind, value) → files` posting keys (node, namespace, service,
//!   protocol) for pruning and instant "distinct values";
//! - `rollups`: per-minute service-map counts, summed by a merge operator ([`crate::rollup`]);
//! - `volume`: per-minute counts by protocol and status class (the volume histogram), derived
//!   from the same rollups in the same batch: a few keys a minute, so three days read fast;
//! - `meta`: catalog facts, e.g. from which minute `volume` is complete in a store made before it;
//! - `pins`: time ranges that snapshots keep (retention never drops a pinned hour).
//!
//! Every change is one synced `WriteBatch`: a flush registers its files, their tags, their
//! rollups and the agents' sequence numbers together, so after a crash the catalog has all of
//! it or none; a compaction swaps inputs for outputs in one batch; retention drops an hour's
//! files, tags and rollups in one batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::facts::{FileTags, TagKind};
use crate::paths::{hour_start, HOUR_US};
use crate::rollup::{self, ts_from_key, ts_key, Rollup, RollupKey};
use crate::{Micros, StorageError};

const CF_FILES: &str = "files";
const CF_AGENTS: &str = "agents";
const CF_TAGS: &str = "tags";
const CF_ROLLUPS: &str = "rollups";
const CF_PINS: &str = "pins";
const CF_VOLUME: &str = "volume";
const CF_META: &str = "meta";
/// `meta` key: the minute from which `volume` holds every entry (absent: all minutes). Set when
/// a store made before `volume` existed is opened; `wiretrail index rebuild` clears it.
const META_VOLUME_FROM: &[u8] = b"volume_complete_from";
const MINUTE_US: Micros = 60_000_000;

/// One Parquet file as the catalog knows it (also stored in the file's footer and in its
/// hour's `manifest.json`, which is what `wiretrail index rebuild` reads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Relative to `<data>/entries/` (and to the bucket prefix when `remote`).
    pub path: String,
    /// 0 = flush file, 1 = 10-minute compaction, 2 = hour compaction.
    pub level: u8,
    pub file_id: u64,
    pub min_ts: Micros,
    pub max_ts: Micros,
    pub rows: u64,
    pub bytes: u64,
    #[serde(default)]
    pub tags: FileTags,
    /// Agent → (first, last) batch sequence number whose rows are in this file.
    #[serde(default)]
    pub sources: BTreeMap<String, (u64, u64)>,
    /// True once the file lives in object storage instead of the local data dir.
    #[serde(default)]
    pub remote: bool,
}

impl FileMeta {
    /// True when the file may hold rows with `from <= ts < to`.
    pub fn overlaps(&self, from: Micros, to: Micros) -> bool {
        self.min_ts < to && self.max_ts >= from
    }

    /// Start of the UTC hour the file belongs to (files never span hours).
    pub fn hour(&self) -> Micros {
        hour_start(self.min_ts)
    }
}

/// A time range a snapshot keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub name: String,
    pub from: Micros,
    pub to: Micros,
    /// What the snapshot was taken with (KFL, nodes, …), recorded for auditors.
    #[serde(default)]
    pub query: serde_json::Value,
    pub created_us: Micros,
}

pub struct Catalog {
    db: DB,
    path: std::path::PathBuf,
    next_file_id: AtomicU64,
    /// Held while a manifest is read from the catalog and written, so the last write of an
    /// hour's manifest always reflects every commit before it.
    pub(crate) manifest_lock: std::sync::Mutex<()>,
}

fn file_key(min_ts: Micros, file_id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ts_key(min_ts));
    k[8..].copy_from_slice(&file_id.to_be_bytes());
    k
}

fn tag_prefix(hour: Micros, kind: TagKind, value: Option<&str>) -> Vec<u8> {
    let mut k = ts_key(hour).to_vec();
    k.push(kind as u8);
    if let Some(v) = value {
        k.extend(v.bytes().filter(|b| *b != 0));
        k.push(0);
    }
    k
}

fn tag_keys(f: &FileMeta) -> impl Iterator<Item = Vec<u8>> + '_ {
    f.tags.kinds().into_iter().flat_map(move |(kind, values)| {
        values.iter().map(move |v| {
            let mut k = tag_prefix(f.hour(), kind, Some(v));
            k.extend_from_slice(&f.file_id.to_be_bytes());
            k
        })
    })
}

/// One minute of one protocol in the `volume` family: minute, protocol, counts.
pub type VolumeRow = (Micros, String, Rollup);

/// `volume` key: the minute (order-preserving), then the protocol.
fn volume_key(minute: Micros, protocol: &str) -> Vec<u8> {
    let mut k = ts_key(minute).to_vec();
    k.extend_from_slice(protocol.as_bytes());
    k
}

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
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
        let mut rollup_opts = Options::default();
        rollup_opts.set_merge_operator_associative("wiretrail_rollup", rollup::merge_operator);
        // A store from before the volume family: its older minutes are not in it.
        let upgraded = DB::list_cf(&Options::default(), path)
            .is_ok_and(|cfs| !cfs.iter().any(|c| c == CF_VOLUME));
        let cfs = [
            ColumnFamilyDescriptor::new(CF_FILES, Options::default()),
            ColumnFamilyDescriptor::new(CF_AGENTS, Options::default()),
            ColumnFamilyDescriptor::new(CF_TAGS, Options::default()),
            ColumnFamilyDescriptor::new(CF_ROLLUPS, rollup_opts.clone()),
            ColumnFamilyDescriptor::new(CF_PINS, Options::default()),
            ColumnFamilyDescriptor::new(CF_VOLUME, rollup_opts.clone()),
            ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(rocks)?;
        let cat = Catalog {
            db,
            path: path.to_path_buf(),
            next_file_id: AtomicU64::new(1),
            manifest_lock: std::sync::Mutex::new(()),
        };
        let files = cat.files()?;
        let max_id = files.iter().map(|f| f.file_id).max().unwrap_or(0);
        cat.next_file_id.store(max_id + 1, Ordering::SeqCst);
        if upgraded {
            if let Some(newest) = files.iter().map(|f| f.max_ts).max() {
                let from = (newest.div_euclid(MINUTE_US) + 1) * MINUTE_US;
                cat.db
                    .put_cf_opt(
                        cat.cf(CF_META),
                        META_VOLUME_FROM,
                        from.to_be_bytes(),
                        &synced(),
                    )
                    .map_err(|e| cat.rocks(e))?;
            }
        }
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

    /// Makes sure ids handed out later are above `id` (after a rebuild).
    pub(crate) fn bump_file_id(&self, id: u64) {
        self.next_file_id.fetch_max(id + 1, Ordering::SeqCst);
    }

    fn put_file(&self, wb: &mut WriteBatch, f: &FileMeta) {
        let v = serde_json::to_vec(f).expect("FileMeta serializes");
        wb.put_cf(self.cf(CF_FILES), file_key(f.min_ts, f.file_id), v);
        for k in tag_keys(f) {
            wb.put_cf(self.cf(CF_TAGS), k, []);
        }
    }

    fn delete_file(&self, wb: &mut WriteBatch, f: &FileMeta) {
        wb.delete_cf(self.cf(CF_FILES), file_key(f.min_ts, f.file_id));
        for k in tag_keys(f) {
            wb.delete_cf(self.cf(CF_TAGS), k);
        }
    }

    /// Registers a flush: its files (with tags), its rollups and the agents' sequence numbers,
    /// atomically and durably.
    pub fn commit_flush(
        &self,
        files: &[FileMeta],
        agent_seqs: &BTreeMap<String, u64>,
        rollups: &HashMap<RollupKey, Rollup>,
    ) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        for f in files {
            self.put_file(&mut wb, f);
        }
        let mut volume: HashMap<(Micros, &str), Rollup> = HashMap::new();
        for (k, r) in rollups {
            wb.merge_cf(self.cf(CF_ROLLUPS), k.encode(), r.encode());
            volume
                .entry((k.minute, k.protocol.as_str()))
                .or_default()
                .merge_counts(r);
        }
        for ((minute, protocol), v) in &volume {
            wb.merge_cf(
                self.cf(CF_VOLUME),
                volume_key(*minute, protocol),
                v.encode(),
            );
        }
        let current = self.agent_seqs()?;
        for (agent, seq) in agent_seqs {
            if current.get(agent).is_none_or(|c| c < seq) {
                wb.put_cf(self.cf(CF_AGENTS), agent.as_bytes(), seq.to_be_bytes());
            }
        }
        self.db.write_opt(wb, &synced()).map_err(|e| self.rocks(e))
    }

    /// Replaces `remove` by `add` in one durable step (compaction, upload to object storage).
    pub fn swap_files(&self, remove: &[FileMeta], add: &[FileMeta]) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        for f in remove {
            self.delete_file(&mut wb, f);
        }
        for f in add {
            self.put_file(&mut wb, f);
        }
        self.db.write_opt(wb, &synced()).map_err(|e| self.rocks(e))
    }

    /// Drops whole hours: their files, tags and rollups, in one durable step (retention).
    pub fn drop_hours(&self, hours: &[Micros], files: &[FileMeta]) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        for f in files {
            self.delete_file(&mut wb, f);
        }
        for h in hours {
            wb.delete_range_cf(self.cf(CF_ROLLUPS), ts_key(*h), ts_key(h + HOUR_US));
            wb.delete_range_cf(self.cf(CF_VOLUME), ts_key(*h), ts_key(h + HOUR_US));
        }
        self.db.write_opt(wb, &synced()).map_err(|e| self.rocks(e))
    }

    fn decode_file(k: &[u8], v: &[u8]) -> Result<FileMeta, StorageError> {
        serde_json::from_slice(v).map_err(|e| StorageError::CorruptCatalog {
            key: format!("files/{k:02x?}"),
            reason: e.to_string(),
        })
    }

    /// Every file, oldest first.
    pub fn files(&self) -> Result<Vec<FileMeta>, StorageError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_FILES), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            out.push(Self::decode_file(&k, &v)?);
        }
        Ok(out)
    }

    /// Number of files (RocksDB's estimate is not exact, so count keys; the catalog is small).
    pub fn file_count(&self) -> usize {
        self.db
            .iterator_cf(self.cf(CF_FILES), IteratorMode::Start)
            .count()
    }

    pub fn is_empty(&self) -> Result<bool, StorageError> {
        match self
            .db
            .iterator_cf(self.cf(CF_FILES), IteratorMode::Start)
            .next()
        {
            None => Ok(true),
            Some(r) => r.map(|_| false).map_err(|e| self.rocks(e)),
        }
    }

    /// Files that may hold rows with `from <= ts < to`. Files never span an hour, so the scan
    /// starts one hour before `from`.
    pub fn files_overlapping(
        &self,
        from: Micros,
        to: Micros,
    ) -> Result<Vec<FileMeta>, StorageError> {
        let start = file_key(hour_start(from.max(i64::MIN + HOUR_US)), 0);
        let end = file_key(to, 0);
        let mut out = Vec::new();
        let mode = IteratorMode::From(&start, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_FILES), mode) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            if k.as_ref() >= end.as_slice() {
                break;
            }
            let meta = Self::decode_file(&k, &v)?;
            if meta.overlaps(from, to) {
                out.push(meta);
            }
        }
        Ok(out)
    }

    /// Distinct values of a tag over the hours that overlap `[from, to)`.
    pub fn tag_values(
        &self,
        kind: TagKind,
        from: Micros,
        to: Micros,
    ) -> Result<BTreeSet<String>, StorageError> {
        let mut out = BTreeSet::new();
        let mut hour = hour_start(from);
        while hour < to {
            let prefix = tag_prefix(hour, kind, None);
            let mode = IteratorMode::From(&prefix, Direction::Forward);
            for item in self.db.iterator_cf(self.cf(CF_TAGS), mode) {
                let (k, _) = item.map_err(|e| self.rocks(e))?;
                if !k.starts_with(&prefix) {
                    break;
                }
                let rest = &k[prefix.len()..];
                if let Some(end) = rest.iter().position(|b| *b == 0) {
                    out.insert(String::from_utf8_lossy(&rest[..end]).into_owned());
                }
            }
            hour = hour.saturating_add(HOUR_US);
        }
        Ok(out)
    }

    /// Ids of the files in the hours overlapping `[from, to)` that hold any of `values`.
    pub fn files_with_tag(
        &self,
        kind: TagKind,
        values: &[&str],
        from: Micros,
        to: Micros,
    ) -> Result<BTreeSet<u64>, StorageError> {
        let mut out = BTreeSet::new();
        let mut hour = hour_start(from);
        while hour < to {
            for v in values {
                let prefix = tag_prefix(hour, kind, Some(v));
                let mode = IteratorMode::From(&prefix, Direction::Forward);
                for item in self.db.iterator_cf(self.cf(CF_TAGS), mode) {
                    let (k, _) = item.map_err(|e| self.rocks(e))?;
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    if let Ok(id) = <[u8; 8]>::try_from(&k[prefix.len()..]) {
                        out.insert(u64::from_be_bytes(id));
                    }
                }
            }
            hour = hour.saturating_add(HOUR_US);
        }
        Ok(out)
    }

    /// Rollups of the minutes in `[from, to)`.
    pub fn rollups(
        &self,
        from: Micros,
        to: Micros,
    ) -> Result<Vec<(RollupKey, Rollup)>, StorageError> {
        let start = ts_key(from);
        let mut out = Vec::new();
        let mode = IteratorMode::From(&start, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_ROLLUPS), mode) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            if ts_from_key(&k).is_none_or(|m| m >= to) {
                break;
            }
            let bad = || StorageError::CorruptCatalog {
                key: format!("rollups/{k:02x?}"),
                reason: "undecodable rollup".into(),
            };
            out.push((
                RollupKey::decode(&k).ok_or_else(bad)?,
                Rollup::decode(&v).ok_or_else(bad)?,
            ));
        }
        Ok(out)
    }

    /// Per minute and protocol in `[from, to)`: count, errors, bytes and status classes (no
    /// latency sketch). `None` when the window reaches minutes the volume family may lack (a
    /// store made before it; `wiretrail index rebuild` fills them): read [`Catalog::rollups`].
    pub fn volume(&self, from: Micros, to: Micros) -> Result<Option<Vec<VolumeRow>>, StorageError> {
        if let Some(v) = self
            .db
            .get_cf(self.cf(CF_META), META_VOLUME_FROM)
            .map_err(|e| self.rocks(e))?
        {
            let complete_from = v
                .as_slice()
                .try_into()
                .map(i64::from_be_bytes)
                .unwrap_or(Micros::MAX);
            if from < complete_from {
                return Ok(None);
            }
        }
        let start = ts_key(from);
        let mut out = Vec::new();
        let mode = IteratorMode::From(&start, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_VOLUME), mode) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            let Some(minute) = ts_from_key(&k).filter(|m| *m < to) else {
                break;
            };
            let bad = || StorageError::CorruptCatalog {
                key: format!("volume/{k:02x?}"),
                reason: "undecodable volume".into(),
            };
            let protocol = std::str::from_utf8(&k[8..]).map_err(|_| bad())?;
            out.push((
                minute,
                protocol.to_string(),
                Rollup::decode(&v).ok_or_else(bad)?,
            ));
        }
        Ok(Some(out))
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

    /// Records (or replaces) a pin.
    pub fn put_pin(&self, pin: &Pin) -> Result<(), StorageError> {
        let v = serde_json::to_vec(pin).expect("Pin serializes");
        self.db
            .put_cf_opt(self.cf(CF_PINS), pin.name.as_bytes(), v, &synced())
            .map_err(|e| self.rocks(e))
    }

    pub fn delete_pin(&self, name: &str) -> Result<bool, StorageError> {
        let existed = self
            .db
            .get_cf(self.cf(CF_PINS), name.as_bytes())
            .map_err(|e| self.rocks(e))?
            .is_some();
        self.db
            .delete_cf_opt(self.cf(CF_PINS), name.as_bytes(), &synced())
            .map_err(|e| self.rocks(e))?;
        Ok(existed)
    }

    pub fn pins(&self) -> Result<Vec<Pin>, StorageError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_PINS), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            out.push(
                serde_json::from_slice(&v).map_err(|e| StorageError::CorruptCatalog {
                    key: format!("pins/{}", String::from_utf8_lossy(&k)),
                    reason: e.to_string(),
                })?,
            );
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
            tags: FileTags {
                protocol: [format!("p{}", id % 2)].into(),
                ..Default::default()
            },
            sources: BTreeMap::new(),
            remote: false,
        }
    }

    #[test]
    fn commits_files_and_seqs_and_prunes_by_time() {
        let dir = std::env::temp_dir().join(format!("wt-cat-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let cat = Catalog::open(&dir).unwrap();
            let seqs = BTreeMap::from([("a".to_string(), 5u64)]);
            cat.commit_flush(
                &[meta(100, 200, 1), meta(300, 400, 2)],
                &seqs,
                &HashMap::new(),
            )
            .unwrap();
            cat.commit_flush(
                &[],
                &BTreeMap::from([("a".to_string(), 3u64)]),
                &HashMap::new(),
            )
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
        let protos = cat.tag_values(TagKind::Protocol, 0, 1000).unwrap();
        assert_eq!(protos, ["p0".to_string(), "p1".to_string()].into());
        assert_eq!(
            cat.files_with_tag(TagKind::Protocol, &["p0"], 0, 1000)
                .unwrap(),
            [2].into()
        );
        cat.swap_files(&[meta(300, 400, 2)], &[]).unwrap();
        assert!(cat
            .files_with_tag(TagKind::Protocol, &["p0"], 0, 1000)
            .unwrap()
            .is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The volume family sums the flushes' rollups per minute and protocol, is dropped with its
    /// hours, and a store opened without it says from which minute it can be trusted.
    #[test]
    fn volume_sums_rollups_per_minute_and_protocol() {
        use crate::rollup::Side;
        let dir = std::env::temp_dir().join(format!("wt-cat-vol-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = |minute, protocol: &str, pod: &str| RollupKey {
            minute,
            protocol: protocol.into(),
            src: Side {
                pod: pod.into(),
                ..Default::default()
            },
            dst: Side::default(),
        };
        let one = |class| {
            let mut r = Rollup::default();
            r.add(class, class == 3, 10, Some(5));
            r
        };
        let cat = Catalog::open(&dir).unwrap();
        let flush = HashMap::from([
            (key(0, "http", "a"), one(0)),
            (key(0, "http", "b"), one(3)),
            (key(MINUTE_US, "dns", "a"), one(4)),
        ]);
        cat.commit_flush(&[meta(0, 2 * MINUTE_US, 1)], &BTreeMap::new(), &flush)
            .unwrap();
        cat.commit_flush(
            &[],
            &BTreeMap::new(),
            &HashMap::from([(key(0, "http", "a"), one(0))]),
        )
        .unwrap();
        let v = cat
            .volume(0, HOUR_US)
            .unwrap()
            .expect("complete in a new store");
        assert_eq!(v.len(), 2, "{v:?}");
        let (m, p, r) = &v[0];
        assert_eq!((*m, p.as_str(), r.count, r.errors), (0, "http", 3, 1));
        assert_eq!(r.classes, [2, 0, 0, 1, 0, 0, 0]);
        assert!(r.latency.is_empty(), "no latency sketch in the volume");
        assert_eq!(
            (v[1].0, v[1].1.as_str(), v[1].2.count),
            (MINUTE_US, "dns", 1)
        );
        assert_eq!(cat.volume(MINUTE_US, HOUR_US).unwrap().unwrap().len(), 1);
        cat.drop_hours(&[0], &[]).unwrap();
        assert!(cat.volume(0, HOUR_US).unwrap().unwrap().is_empty());
        drop(cat);
        // A store made before the family: opened, it trusts only minutes after its files.
        let old = dir.join("old");
        {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let db = DB::open_cf(&opts, &old, [CF_FILES, CF_AGENTS, CF_TAGS, CF_PINS]).unwrap();
            let f = meta(0, 90_000_000, 7);
            db.put_cf(
                db.cf_handle(CF_FILES).unwrap(),
                file_key(f.min_ts, f.file_id),
                serde_json::to_vec(&f).unwrap(),
            )
            .unwrap();
        }
        let cat = Catalog::open(&old).unwrap();
        assert!(
            cat.volume(0, HOUR_US).unwrap().is_none(),
            "old minutes: not in volume"
        );
        assert!(cat.volume(2 * MINUTE_US, HOUR_US).unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
