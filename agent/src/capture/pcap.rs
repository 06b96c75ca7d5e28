//! pcap and pcapng files through the `pcap-parser` crate: both byte orders, µs and ns
//! timestamps, pcapng interfaces with their own link types and `if_tsresol`/`if_tsoffset`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};

use super::LinkType;
use crate::AgentError;

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Packet {
    pub ts_us: i64,
    pub link: LinkType,
    pub data: Vec<u8>,
}

struct Interface {
    link: LinkType,
    /// Units per second.
    resolution: u64,
    offset_s: i64,
}

/// Counts bytes read from the file, for progress bars.
struct Counting {
    file: File,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

pub struct CaptureReader {
    path: PathBuf,
    reader: Box<dyn PcapReaderIterator + Send>,
    legacy_link: LinkType,
    legacy_nanos: bool,
    interfaces: Vec<Interface>,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    total: u64,
    done: bool,
}

/// Large enough for any frame of a 256 KiB snaplen capture.
const BUFFER: usize = 1 << 20;

impl CaptureReader {
    pub fn open(path: &Path) -> Result<Self, AgentError> {
        let open_err = |source| AgentError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let total = file.metadata().map_err(open_err)?.len();
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counting = Counting {
            file,
            read: read.clone(),
        };
        let reader = create_reader(BUFFER, counting).map_err(|e| AgentError::NotACapture {
            path: path.to_path_buf(),
            reason: match e {
                PcapError::Eof => "empty file".into(),
                PcapError::HeaderNotRecognized => "unknown magic number".into(),
                other => format!("{other:?}"),
            },
        })?;
        Ok(CaptureReader {
            path: path.to_path_buf(),
            reader,
            legacy_link: LinkType::Ethernet,
            legacy_nanos: false,
            interfaces: Vec::new(),
            read,
            total,
            done: false,
        })
    }

    /// Bytes of the file consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// The next packet, `None` at the end. A truncated last record ends the file cleanly (as
    /// tcpdump leaves it when killed); corruption in the middle is an error naming the offset.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, AgentError> {
        loop {
            if self.done {
                return Ok(None);
            }
            match self.reader.next() {
                Ok((offset, block)) => {
                    let pkt = match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            self.legacy_link = LinkType::from_linktype(h.network.0);
                            self.legacy_nanos = h.is_nanosecond_precision();
                            None
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let frac = if self.legacy_nanos {
                                i64::from(b.ts_usec) / 1000
                            } else {
                                i64::from(b.ts_usec)
                            };
                            Some(Packet {
                                ts_us: i64::from(b.ts_sec) * 1_000_000 + frac,
                                link: self.legacy_link,
                                data: b.data.to_vec(),
                            })
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            self.interfaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            self.interfaces.push(Interface {
                                link: LinkType::from_linktype(idb.linktype.0),
                                resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                                offset_s: idb.if_tsoffset,
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            self.interfaces.get(epb.if_id as usize).map(|ifc| {
                                let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                let secs = (ts / ifc.resolution) as i64 + ifc.offset_s;
                                let frac = ts % ifc.resolution;
                                let us = (u128::from(frac) * 1_000_000 / u128::from(ifc.resolution))
                                    as i64;
                                Packet {
                                    ts_us: secs * 1_000_000 + us,
                                    link: ifc.link,
                                    data: epb.data.to_vec(),
                                }
                            })
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            self.interfaces.first().map(|ifc| Packet {
                                ts_us: 0,
                                link: ifc.link,
                                data: spb.data.to_vec(),
                            })
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    self.reader.consume(offset);
                    if let Some(p) = pkt {
                        return Ok(Some(p));
                    }
                }
                Err(PcapError::Eof) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(PcapError::UnexpectedEof) => {
                    // The last record is cut short (a capture killed mid-write): keep what came before.
                    tracing::warn!(file = %self.path.display(), "capture ends with a truncated record; ignored");
                    self.done = true;
                    return Ok(None);
                }
                Err(PcapError::Incomplete(_)) => {
                    match self.reader.refill() {
                        Ok(()) => {}
                        Err(PcapError::UnexpectedEof) | Err(PcapError::Eof) => {
                            tracing::warn!(file = %self.path.display(), "capture ends with a truncated record; ignored");
                            self.done = true;
                            return Ok(None);
                        }
                        Err(e) => {
                            let reason = format!("{e:?}");
                            return Err(self.corrupt(reason));
                        }
                    }
                    if self.reader.reader_exhausted() && self.bytes_read() >= self.total {
                        // A final record cut short (capture killed mid-write): stop here.
                        match self.reader.next() {
                            Err(PcapError::Eof) => {
                                self.done = true;
                                return Ok(None);
                            }
                            Err(PcapError::Incomplete(_)) => {
                                tracing::warn!(file = %self.path.display(), "capture ends with a truncated record; ignored");
                                self.done = true;
                                return Ok(None);
                            }
                            _ => continue,
                        }
                    }
                }
                Err(e) => {
                    let reason = format!("{e:?}");
                    return Err(self.corrupt(reason));
                }
            }
        }
    }

    fn corrupt(&self, reason: String) -> AgentError {
        AgentError::Corrupt {
            path: self.path.clone(),
            offset: self.bytes_read(),
            reason,
        }
    }
}
