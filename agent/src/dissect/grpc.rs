//! gRPC on top of HTTP/2: the length-prefixed message framing of a call's DATA bytes
//! (1-byte compressed flag, 4-byte big-endian length), per-message decompression
//! (`grpc-encoding: gzip|deflate`), and protobuf wire format decoded **without a schema** into
//! readable JSON (field numbers as keys), so a call's messages can be read and searched
//! without the `.proto` files.

use std::io::Write;

use serde_json::{json, Map, Value};

use super::body::Capped;

/// Bytes of one message kept for decoding; the rest of a bigger message is counted only.
const MESSAGE_CAP: usize = 64 * 1024;
/// Messages per direction decoded into the detail; later ones are counted only.
const DETAIL_MESSAGES: usize = 16;
/// Nesting depth tried when a length-delimited field may be a sub-message.
const MAX_DEPTH: usize = 16;
/// Longest string or bytes value shown in the detail.
const VALUE_CAP: usize = 256;

/// Splits one direction of a call into messages and decodes the first few.
#[derive(Default)]
pub(crate) struct GrpcReader {
    head: [u8; 5],
    head_len: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
    compressed: bool,
    cur: Vec<u8>,
    cur_truncated: bool,
    in_message: bool,
    pub count: u64,
    pub compressed_count: u64,
    pub messages: Vec<Value>,
    /// Messages that could not be decompressed or decoded as protobuf.
    pub errors: u64,
}

impl GrpcReader {
    pub fn write(&mut self, mut data: &[u8], encoding: Option<&str>) {
        while !data.is_empty() {
            if !self.in_message {
                let take = (5 - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                self.head_len += take;
                data = &data[take..];
                if self.head_len < 5 {
                    return;
                }
                self.head_len = 0;
                self.compressed = self.head[0] & 1 == 1;
                self.remaining = u64::from(u32::from_be_bytes([
                    self.head[1],
                    self.head[2],
                    self.head[3],
                    self.head[4],
                ]));
                self.in_message = true;
                self.cur.clear();
                self.cur_truncated = false;
            }
            let take = (self.remaining.min(data.len() as u64)) as usize;
            let room = MESSAGE_CAP.saturating_sub(self.cur.len());
            if self.messages.len() < DETAIL_MESSAGES {
                self.cur.extend_from_slice(&data[..take.min(room)]);
                self.cur_truncated |= take > room;
            }
            self.remaining -= take as u64;
            data = &data[take..];
            if self.remaining == 0 {
                self.finish_message(encoding);
            }
        }
    }

    fn finish_message(&mut self, encoding: Option<&str>) {
        self.in_message = false;
        self.count += 1;
        if self.compressed {
            self.compressed_count += 1;
        }
        if self.messages.len() >= DETAIL_MESSAGES {
            return;
        }
        let raw = std::mem::take(&mut self.cur);
        let plain = if self.compressed && !self.cur_truncated {
            match decompress(&raw, encoding) {
                Some(p) => p,
                None => {
                    self.errors += 1;
                    self.messages
                        .push(json!({"compressed": true, "undecoded": hex(&raw)}));
                    return;
                }
            }
        } else if self.compressed {
            self.messages
                .push(json!({"compressed": true, "truncated": true}));
            return;
        } else {
            raw
        };
        let v = match decode_message(&plain, 0) {
            Some(m) => Value::Object(m),
            None => {
                self.errors += 1;
                json!({"undecoded": hex(&plain)})
            }
        };
        self.messages.push(if self.cur_truncated {
            json!({"truncated": true, "fields": v})
        } else {
            v
        });
    }

    /// A message was cut off by the end of the stream.
    pub fn incomplete(&self) -> bool {
        self.in_message || self.head_len > 0
    }

    pub fn detail(&self) -> Value {
        json!({
            "message_count": self.count,
            "compressed_messages": self.compressed_count,
            "messages": self.messages,
        })
    }
}

fn decompress(data: &[u8], encoding: Option<&str>) -> Option<Vec<u8>> {
    let out = Capped::new(MESSAGE_CAP);
    let res = match encoding.map(str::trim) {
        Some("gzip") => {
            let mut d = flate2::write::GzDecoder::new(out);
            d.write_all(data).and_then(|_| d.finish())
        }
        Some("deflate") => {
            let mut d = flate2::write::ZlibDecoder::new(out);
            d.write_all(data).and_then(|_| d.finish())
        }
        _ => return None,
    };
    res.ok().map(|c| c.buf)
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&b[..b.len().min(VALUE_CAP)])
}

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn printable(s: &str) -> bool {
    s.chars()
        .all(|c| !c.is_control() || c == '\n' || c == '\t' || c == '\r')
}

/// A length-delimited value: readable text first (a string that happens to parse as a
/// message stays a string), then a sub-message, else bytes in hex.
fn length_delimited(b: &[u8], depth: usize) -> Value {
    if let Ok(s) = std::str::from_utf8(b) {
        if printable(s) {
            return Value::String(s.chars().take(VALUE_CAP).collect());
        }
    }
    if depth < MAX_DEPTH && !b.is_empty() {
        if let Some(m) = decode_message(b, depth + 1) {
            return Value::Object(m);
        }
    }
    Value::String(hex(b))
}

/// Protobuf wire format → `{"<field number>": value}`; repeated fields become arrays.
/// `None` if the bytes are not a well-formed message.
pub(crate) fn decode_message(b: &[u8], depth: usize) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let mut at = 0;
    while at < b.len() {
        let key = varint(b, &mut at)?;
        let field = key >> 3;
        if field == 0 || field > (1 << 29) {
            return None;
        }
        let v = match key & 7 {
            0 => json!(varint(b, &mut at)?),
            1 => {
                let s = b.get(at..at + 8)?;
                at += 8;
                json!(u64::from_le_bytes(s.try_into().ok()?))
            }
            5 => {
                let s = b.get(at..at + 4)?;
                at += 4;
                json!(u32::from_le_bytes(s.try_into().ok()?))
            }
            2 => {
                let len = usize::try_from(varint(b, &mut at)?).ok()?;
                let s = b.get(at..at.checked_add(len)?)?;
                at += len;
                length_delimited(s, depth)
            }
            _ => return None, // groups (deprecated) and invalid wire types
        };
        let k = field.to_string();
        match out.get_mut(&k) {
            // Decoded values are never arrays, so an array is a repeated field.
            Some(Value::Array(a)) => a.push(v),
            Some(prev) => {
                let first = prev.take();
                *prev = Value::Array(vec![first, v]);
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    Some(out)
}

/// gRPC status code names (`grpc-status`).
pub(crate) fn status_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN_STATUS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_and_decodes_nested_messages() {
        // message { 1: "world", 2: { 1: 7 }, 3: 1, 3: 2 }
        let msg = [
            0x0a, 5, b'w', b'o', b'r', b'l', b'd', 0x12, 2, 0x08, 7, 0x18, 1, 0x18, 2,
        ];
        let mut wire = vec![0, 0, 0, 0, msg.len() as u8];
        wire.extend_from_slice(&msg);
        wire.extend_from_slice(&wire.clone());
        for step in [1, 3, 7, wire.len()] {
            let mut r = GrpcReader::default();
            for c in wire.chunks(step) {
                r.write(c, None);
            }
            assert_eq!(r.count, 2);
            assert!(!r.incomplete());
            assert_eq!(
                r.messages[0],
                json!({"1": "world", "2": {"1": 7}, "3": [1, 2]})
            );
        }
    }

    #[test]
    fn gzip_messages_and_garbage() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[0x08, 0x96, 0x01]).unwrap();
        let gz = enc.finish().unwrap();
        let mut wire = vec![1, 0, 0, 0, gz.len() as u8];
        wire.extend_from_slice(&gz);
        let mut r = GrpcReader::default();
        r.write(&wire, Some("gzip"));
        assert_eq!(r.messages[0], json!({"1": 150}));
        assert_eq!(r.compressed_count, 1);
        let mut r = GrpcReader::default();
        r.write(&[0, 0, 0, 0, 3, 0x0f, 0xff, 0xff], None);
        assert_eq!(r.errors, 1);
        assert!(decode_message(&[0xff; 12], 0).is_none());
    }
}
