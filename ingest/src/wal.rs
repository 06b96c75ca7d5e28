//! The write-ahead log: every batch is appended here and fsynced before it is acknowledged.
//!
//! One OS thread owns the open segment. Appends queue up while an fsync runs and are then
//! written and synced together (group commit), so the cost of an fsync is shared by every
//! batch that arrived during the previous one. Record layout:
//! `[u32 len][u32 crc32(payload)][payload]`, payload = `[u16 agent len][agent][u64 seq][Arrow IPC
//! stream, LZ4-compressed buffers]`.
//! Replay stops at the first record that is short or fails its checksum (a torn tail from a
//! crash mid-write), truncates it away and counts it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;
use arrow::record_batch::RecordBatch;
use tokio::sync::oneshot;

use crate::store::IngestCounters;
use crate::IngestError;

/// Largest batch of appends written before one fsync.
const MAX_GROUP: usize = 1024;
/// A record larger than this is treated as corruption on replay.
const MAX_RECORD: usize = 1 << 30;

/// A WAL record read back on start.
pub struct WalRecord {
    pub segment: u64,
    pub agent: String,
    pub seq: u64,
    pub batch: RecordBatch,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayStats {
    pub segments: usize,
    pub records: usize,
    pub torn_bytes: u64,
}

enum Cmd {
    Append {
        payload: Vec<u8>,
        done: oneshot::Sender<Result<u64, IngestError>>,
    },
    Rotate {
        done: oneshot::Sender<Result<u64, IngestError>>,
    },
    DeleteUpTo {
        segment: u64,
        done: oneshot::Sender<Result<(), IngestError>>,
    },
}

/// Handle to the WAL writer thread.
pub struct Wal {
    tx: mpsc::Sender<Cmd>,
}

fn wal_err(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Wal {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, IngestError> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir).map_err(wal_err(dir))? {
        let e = e.map_err(wal_err(dir))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Encodes one batch as a WAL payload.
pub fn encode(agent: &str, seq: u64, batch: &RecordBatch) -> Result<Vec<u8>, IngestError> {
    let mut payload = Vec::with_capacity(64 + batch.get_array_memory_size());
    let agent_bytes = agent.as_bytes();
    let agent_len = u16::try_from(agent_bytes.len()).map_err(|_| IngestError::BadBatch {
        agent: agent.chars().take(64).collect(),
        reason: "agent id longer than 65535 bytes".into(),
    })?;
    payload.extend_from_slice(&agent_len.to_le_bytes());
    payload.extend_from_slice(agent_bytes);
    payload.extend_from_slice(&seq.to_le_bytes());
    // LZ4: uncompressed records made the WAL write ~2.9× the bytes received (1,898 vs 648
    // B/entry with bodies); compressed, it writes 669 (bench/RESULTS.md, ingest runs 3 and 4).
    let options =
        IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
    let mut w = StreamWriter::try_new_with_options(&mut payload, &batch.schema(), options)?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(payload)
}

fn decode(segment: u64, payload: &[u8]) -> Option<WalRecord> {
    let agent_len = u16::from_le_bytes(payload.get(..2)?.try_into().ok()?) as usize;
    let agent = std::str::from_utf8(payload.get(2..2 + agent_len)?)
        .ok()?
        .to_string();
    let seq_at = 2 + agent_len;
    let seq = u64::from_le_bytes(payload.get(seq_at..seq_at + 8)?.try_into().ok()?);
    let mut reader = StreamReader::try_new(payload.get(seq_at + 8..)?, None).ok()?;
    let batch = reader.next()?.ok()?;
    Some(WalRecord {
        segment,
        agent,
        seq,
        batch,
    })
}

/// Reads every record of every segment in `dir`, truncating a torn tail.
pub fn replay(dir: &Path) -> Result<(Vec<WalRecord>, ReplayStats), IngestError> {
    std::fs::create_dir_all(dir).map_err(wal_err(dir))?;
    let mut stats = ReplayStats::default();
    let mut out = Vec::new();
    for id in list_segments(dir)? {
        stats.segments += 1;
        let path = segment_path(dir, id);
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(wal_err(&path))?;
        let mut pos = 0usize;
        while pos < data.len() {
            let rec = (|| {
                let len = u32::from_le_bytes(data.get(pos..pos + 4)?.try_into().ok()?) as usize;
                let crc = u32::from_le_bytes(data.get(pos + 4..pos + 8)?.try_into().ok()?);
                if len > MAX_RECORD {
                    return None;
                }
                let payload = data.get(pos + 8..pos + 8 + len)?;
                if crc32fast::hash(payload) != crc {
                    return None;
                }
                Some((decode(id, payload)?, 8 + len))
            })();
            match rec {
                Some((r, n)) => {
                    out.push(r);
                    stats.records += 1;
                    pos += n;
                }
                None => break,
            }
        }
        if pos < data.len() {
            stats.torn_bytes += (data.len() - pos) as u64;
            tracing::warn!(segment = %path.display(), offset = pos, bytes = data.len() - pos,
                "WAL: truncating a torn or corrupt tail (a crash during a write that was never acknowledged)");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(wal_err(&path))?;
            f.set_len(pos as u64).map_err(wal_err(&path))?;
            f.sync_all().map_err(wal_err(&path))?;
        }
    }
    Ok((out, stats))
}

struct Writer {
    dir: PathBuf,
    id: u64,
    file: BufWriter<File>,
}

impl Writer {
    fn open(dir: &Path, id: u64) -> Result<Self, IngestError> {
        let path = segment_path(dir, id);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(wal_err(&path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(wal_err(dir))?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            id,
            file: BufWriter::with_capacity(1 << 20, file),
        })
    }

    fn write_group(&mut self, payloads: &[&[u8]]) -> Result<(), IngestError> {
        let path = segment_path(&self.dir, self.id);
        let res = (|| {
            for p in payloads {
                self.file.write_all(&(p.len() as u32).to_le_bytes())?;
                self.file.write_all(&crc32fast::hash(p).to_le_bytes())?;
                self.file.write_all(p)?;
            }
            self.file.flush()?;
            self.file.get_ref().sync_data()
        })();
        res.map_err(wal_err(&path))
    }
}

impl Wal {
    /// Starts the writer thread on a new segment after every existing one. `interval` is how
    /// long the first append of a group waits for companions before the fsync.
    pub fn start(
        dir: &Path,
        interval: Duration,
        counters: Arc<IngestCounters>,
    ) -> Result<Wal, IngestError> {
        std::fs::create_dir_all(dir).map_err(wal_err(dir))?;
        let next = list_segments(dir)?.last().map_or(1, |l| l + 1);
        let mut writer = Writer::open(dir, next)?;
        let (tx, rx) = mpsc::channel::<Cmd>();
        thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || run(&mut writer, rx, interval, &counters))
            .map_err(wal_err(dir))?;
        Ok(Wal { tx })
    }

    /// Appends a payload (see [`encode`]); resolves with its segment once it is fsynced.
    pub async fn append(&self, payload: Vec<u8>) -> Result<u64, IngestError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Append { payload, done })
            .map_err(|_| IngestError::ShuttingDown)?;
        rx.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// Closes the current segment and returns its id; later appends go to a new one.
    pub async fn rotate(&self) -> Result<u64, IngestError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Rotate { done })
            .map_err(|_| IngestError::ShuttingDown)?;
        rx.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// Deletes every segment up to and including `segment` (their rows are in Parquet).
    pub async fn delete_up_to(&self, segment: u64) -> Result<(), IngestError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Cmd::DeleteUpTo { segment, done })
            .map_err(|_| IngestError::ShuttingDown)?;
        rx.await.map_err(|_| IngestError::ShuttingDown)?
    }
}

fn run(w: &mut Writer, rx: mpsc::Receiver<Cmd>, interval: Duration, counters: &IngestCounters) {
    let mut broken = false;
    while let Ok(first) = rx.recv() {
        let mut appends = Vec::new();
        let mut others = Vec::new();
        let deadline = Instant::now() + interval;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Append { payload, done } => appends.push((payload, done)),
                other => {
                    others.push(other);
                    break; // keep order: appends before a rotation go to the old segment
                }
            }
            if appends.len() < MAX_GROUP {
                let wait = deadline.saturating_duration_since(Instant::now());
                next = if wait.is_zero() {
                    rx.try_recv().ok()
                } else {
                    rx.recv_timeout(wait).ok()
                };
            }
        }
        if !appends.is_empty() {
            let payloads: Vec<&[u8]> = appends.iter().map(|(p, _)| p.as_slice()).collect();
            let started = Instant::now();
            let res = if broken {
                // The last write failed: never append behind its partial record.
                Writer::open(&w.dir, w.id + 1).and_then(|nw| {
                    *w = nw;
                    broken = false;
                    w.write_group(&payloads)
                })
            } else {
                w.write_group(&payloads)
            };
            counters.wal_fsync.observe(started.elapsed());
            if let Err(e) = &res {
                // The segment may now end in a partial record; continue in a fresh one so that
                // later acknowledged records never sit behind garbage (replay stops there).
                tracing::error!(error = %e, "WAL write failed; nothing in this group is acknowledged");
                match Writer::open(&w.dir, w.id + 1) {
                    Ok(nw) => *w = nw,
                    Err(_) => broken = true,
                }
            }
            for (_, done) in appends {
                let _ = done.send(match &res {
                    Ok(()) => Ok(w.id),
                    Err(e) => Err(unwritable(e)),
                });
            }
        }
        for cmd in others {
            match cmd {
                Cmd::Rotate { done } => {
                    let old = w.id;
                    let res = Writer::open(&w.dir, old + 1).map(|nw| {
                        *w = nw;
                        broken = false;
                        old
                    });
                    let _ = done.send(res);
                }
                Cmd::DeleteUpTo { segment, done } => {
                    let res = delete_up_to(&w.dir, segment.min(w.id.saturating_sub(1)));
                    let _ = done.send(res);
                }
                Cmd::Append { .. } => unreachable!("appends are collected above"),
            }
        }
    }
}

/// The error an appender sees when its group could not be made durable.
fn unwritable(e: &IngestError) -> IngestError {
    let full = matches!(e, IngestError::Wal { source, .. } if source.kind() == std::io::ErrorKind::StorageFull);
    IngestError::Unavailable(if full {
        format!("disk full: {e}; this batch was not acknowledged (resend it when space returns)")
    } else {
        format!("{e}; this batch was not acknowledged (resend it)")
    })
}

/// Deletes every segment (before the writer starts, when replay found nothing to keep).
pub fn delete_segments(dir: &Path) -> Result<(), IngestError> {
    delete_up_to(dir, u64::MAX)
}

fn delete_up_to(dir: &Path, segment: u64) -> Result<(), IngestError> {
    for id in list_segments(dir)? {
        if id <= segment {
            let p = segment_path(dir, id);
            std::fs::remove_file(&p).map_err(wal_err(&p))?;
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(wal_err(dir))
}
