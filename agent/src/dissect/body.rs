//! Message bodies: de-chunking, decompression and the size cap, all streaming, so a 1 GiB
//! download costs at most `body_cap` bytes of memory.

use std::io::Write;

use flate2::write::{DeflateDecoder, GzDecoder, ZlibDecoder};

/// Keeps the first `cap` bytes written and counts the rest.
pub(crate) struct Capped {
    pub buf: Vec<u8>,
    cap: usize,
    pub truncated: bool,
}

impl Capped {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            truncated: false,
        }
    }
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.cap.saturating_sub(self.buf.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Sink {
    Plain(Capped),
    Gzip(GzDecoder<Capped>),
    Zlib(ZlibDecoder<Capped>),
    Deflate(DeflateDecoder<Capped>),
    /// Decoding failed: keep the raw (still encoded) bytes instead.
    Failed(Capped),
    /// The decoded body reached the cap: the rest is counted, not decompressed (a
    /// compression bomb costs no CPU beyond the cap).
    Full(Capped),
}

/// Collects a body's bytes after transfer decoding (chunks removed).
pub(crate) struct Body {
    sink: Sink,
    encoding: Option<String>,
    cap: usize,
    raw_prefix: Vec<u8>,
    pub decode_error: bool,
    pub len: u64,
}

impl Body {
    pub fn new(content_encoding: Option<&str>, cap: usize) -> Self {
        let capped = Capped {
            buf: Vec::new(),
            cap,
            truncated: false,
        };
        let enc = content_encoding.map(|e| e.trim().to_ascii_lowercase());
        let sink = match enc.as_deref() {
            Some("gzip") | Some("x-gzip") => Sink::Gzip(GzDecoder::new(capped)),
            // "deflate" is zlib-wrapped per RFC 9110, but some servers send raw deflate; the
            // first byte decides (see `write`).
            Some("deflate") => Sink::Zlib(ZlibDecoder::new(capped)),
            _ => Sink::Plain(capped),
        };
        Body {
            sink,
            encoding: enc,
            cap,
            raw_prefix: Vec::new(),
            decode_error: false,
            len: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.len == 0 && matches!(self.sink, Sink::Zlib(_)) && (data[0] & 0x0f) != 8 {
            self.sink = Sink::Deflate(DeflateDecoder::new(Capped {
                buf: Vec::new(),
                cap: self.cap,
                truncated: false,
            }));
        }
        self.len += data.len() as u64;
        if self.raw_prefix.len() < self.cap
            && !matches!(self.sink, Sink::Plain(_) | Sink::Failed(_) | Sink::Full(_))
        {
            let room = self.cap - self.raw_prefix.len();
            self.raw_prefix
                .extend_from_slice(&data[..data.len().min(room)]);
        }
        let res = match &mut self.sink {
            Sink::Plain(c) | Sink::Failed(c) => c.write_all(data),
            Sink::Full(_) => Ok(()),
            Sink::Gzip(d) => d.write_all(data),
            Sink::Zlib(d) => d.write_all(data),
            Sink::Deflate(d) => d.write_all(data),
        };
        if res.is_err() {
            self.fail();
            return;
        }
        let full = match &mut self.sink {
            Sink::Gzip(d) => d.get_mut(),
            Sink::Zlib(d) => d.get_mut(),
            Sink::Deflate(d) => d.get_mut(),
            _ => return,
        };
        if full.truncated {
            let buf = std::mem::take(&mut full.buf);
            self.raw_prefix = Vec::new();
            self.sink = Sink::Full(Capped {
                buf,
                cap: self.cap,
                truncated: true,
            });
        }
    }

    fn fail(&mut self) {
        self.decode_error = true;
        let raw = std::mem::take(&mut self.raw_prefix);
        let truncated = self.len as usize > raw.len();
        self.sink = Sink::Failed(Capped {
            buf: raw,
            cap: self.cap,
            truncated,
        });
    }

    /// The decoded body (or the raw bytes if decoding failed) and whether it was cut.
    pub fn finish(mut self) -> (Vec<u8>, bool, bool) {
        let done = match std::mem::replace(
            &mut self.sink,
            Sink::Plain(Capped {
                buf: vec![],
                cap: 0,
                truncated: false,
            }),
        ) {
            Sink::Plain(c) | Sink::Failed(c) | Sink::Full(c) => Ok(c),
            Sink::Gzip(d) => d.finish(),
            Sink::Zlib(d) => d.finish(),
            Sink::Deflate(d) => d.finish(),
        };
        match done {
            Ok(c) => (c.buf, c.truncated, self.decode_error),
            Err(_) => {
                self.fail();
                match self.sink {
                    Sink::Failed(c) => (c.buf, c.truncated, true),
                    _ => (Vec::new(), false, true),
                }
            }
        }
    }

    pub fn encoding(&self) -> Option<&str> {
        self.encoding.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gunzips_in_pieces_and_caps() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&vec![b'x'; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        let mut b = Body::new(Some("gzip"), 4096);
        for chunk in gz.chunks(7) {
            b.write(chunk);
        }
        let (out, truncated, err) = b.finish();
        assert_eq!(out.len(), 4096);
        assert!(truncated && !err);
        let mut b = Body::new(Some("gzip"), 1 << 20);
        b.write(b"not gzip at all");
        let (out, _, err) = b.finish();
        assert!(err);
        assert_eq!(out, b"not gzip at all");
    }
}
