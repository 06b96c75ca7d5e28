//! pcap and pcapng files through the `pcap-parser` crate: both byte orders, µs and ns
//! timestamps, pcapng interfaces with their own link types and `if_tsresol`/`if_tsoffset`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::{PcapNGPacketBlock, PcapReaderIterator};
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
    /// Units per second (`if_tsresol`), never 0.
    resolution: u64,
    /// `if_tsoffset`, seconds added to every timestamp.
    offset_s: i64,
}

/// Units per second of a pcapng `if_tsresol` (10^n, or 2^n with the top bit set); µs when
/// absent or out of range. (pcap-parser 0.17's own helper rejects every power-of-two value.)
fn ts_resolution(tsresol: u8) -> u64 {
    let n = u32::from(tsresol & 0x7f);
    let r = if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    };
    r.unwrap_or(1_000_000).max(1)
}

impl Interface {
    /// A raw pcapng timestamp in µs since the epoch; saturates instead of overflowing on
    /// nonsense values from a corrupt file.
    fn micros(&self, ts: u64) -> i64 {
        let secs = i64::try_from(ts / self.resolution)
            .unwrap_or(i64::MAX)
            .saturating_add(self.offset_s);
        let frac = u128::from(ts % self.resolution) * 1_000_000 / u128::from(self.resolution);
        secs.saturating_mul(1_000_000)
            .saturating_add(i64::try_from(frac).unwrap_or(0))
    }
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

/// Reads packets from a pcap or pcapng file, one at a time, in file order.
pub struct CaptureReader {
    path: PathBuf,
    reader: Box<dyn PcapReaderIterator + Send>,
    legacy_link: LinkType,
    legacy_nanos: bool,
    interfaces: Vec<Interface>,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    total: u64,
    done: bool,
    last_ts: i64,
    skipped: u64,
    buffer_size: usize,
}

/// Read buffer; large enough for any frame of a 256 KiB snaplen capture.
const BUFFER: usize = 1 << 20;
/// The buffer grows up to this for larger records (pcapng allows them); a record claiming
/// more is taken as corruption rather than a reason to allocate gigabytes.
const MAX_RECORD: usize = 16 << 20;

impl CaptureReader {
    /// Opens a capture file; the format (pcap or pcapng, either byte order) is found from
    /// its magic number.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AgentError> {
        let path = path.as_ref();
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
            last_ts: 0,
            skipped: 0,
            buffer_size: BUFFER,
        })
    }

    /// Bytes of the file consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Size of the file, for progress bars.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Packet blocks skipped because they name no described interface.
    pub fn skipped_packets(&self) -> u64 {
        self.skipped
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
                            self.last_ts = i64::from(b.ts_sec) * 1_000_000 + frac;
                            Some(Packet {
                                ts_us: self.last_ts,
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
                                resolution: ts_resolution(idb.if_tsresol),
                                offset_s: idb.if_tsoffset,
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            match self.interfaces.get(epb.if_id as usize) {
                                Some(ifc) => {
                                    let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                    self.last_ts = ifc.micros(ts);
                                    Some(Packet {
                                        ts_us: self.last_ts,
                                        link: ifc.link,
                                        data: epb.packet_data().to_vec(),
                                    })
                                }
                                None => {
                                    // A packet naming an interface never described: its link
                                    // type is unknown, so it is skipped (and counted).
                                    self.skipped += 1;
                                    None
                                }
                            }
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            // Simple packet blocks have no timestamp: reuse the previous one.
                            match self.interfaces.first() {
                                Some(ifc) => Some(Packet {
                                    ts_us: self.last_ts,
                                    link: ifc.link,
                                    data: spb.packet_data().to_vec(),
                                }),
                                None => {
                                    self.skipped += 1;
                                    None
                                }
                            }
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
                Err(PcapError::BufferTooSmall) => {
                    let size = self.buffer_size.saturating_mul(2);
                    if size > MAX_RECORD || !self.reader.grow(size) {
                        return Err(self.corrupt(format!(
                            "a record larger than {} MiB (corrupt length field?)",
                            MAX_RECORD >> 20
                        )));
                    }
                    self.buffer_size = size;
                    if let Err(e) = self.reader.refill() {
                        let reason = format!("{e:?}");
                        return Err(self.corrupt(reason));
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
