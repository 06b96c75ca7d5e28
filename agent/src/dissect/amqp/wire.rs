//! AMQP 0-9-1 wire decoding: method names and arguments (from the spec's XML, as compact
//! signature strings), field tables, and the basic class content-header properties.

use serde_json::{json, Map, Value};

/// Nesting of field tables / arrays decoded; deeper ones are a malformed frame.
const MAX_DEPTH: usize = 16;
/// Fields kept per table / array (the rest are skipped).
const MAX_FIELDS: usize = 256;
/// Characters kept per string value in the JSON detail.
const MAX_TEXT: usize = 1024;

/// A cursor over one frame payload; every read is bounds-checked (`None` = too short).
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Bit position inside the octet at `pos - 1` for packed `bit` arguments (0 = none open).
    bits: u8,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            bits: 0,
        }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        self.bits = 0;
        let s = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }

    /// Consecutive `bit` arguments share octets, least significant bit first.
    fn bit(&mut self) -> Option<bool> {
        if self.bits == 0 || self.bits == 8 {
            let b = self.data.get(self.pos)?;
            self.pos += 1;
            self.bits = 1;
            return Some(b & 1 != 0);
        }
        let b = self.data.get(self.pos.checked_sub(1)?)?;
        let v = (b >> self.bits) & 1 != 0;
        self.bits += 1;
        Some(v)
    }

    pub fn shortstr(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    fn longstr(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }
}

/// Text for the JSON detail: lossy UTF-8, cut to [`MAX_TEXT`] characters.
pub fn text(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.into_owned(),
    }
}

/// A field table as a JSON object.
fn table(r: &mut Reader, depth: usize) -> Option<Value> {
    let body = r.longstr()?;
    let mut t = Reader::new(body);
    let mut out = Map::new();
    while !t.rest().is_empty() {
        let name = text(t.shortstr()?);
        let v = field(&mut t, depth + 1)?;
        if out.len() < MAX_FIELDS {
            out.insert(name, v);
        }
    }
    Some(Value::Object(out))
}

/// One typed field value (RabbitMQ's type letters, which the 0-9-1 errata adopted).
fn field(r: &mut Reader, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match r.u8()? {
        b't' => json!(r.u8()? != 0),
        b'b' => json!(r.u8()? as i8),
        b'B' => json!(r.u8()?),
        b's' => json!(r.u16()? as i16),
        b'u' => json!(r.u16()?),
        b'I' => json!(r.u32()? as i32),
        b'i' => json!(r.u32()?),
        b'l' => json!(r.u64()? as i64),
        b'L' => json!(r.u64()?),
        b'f' => json!(f32::from_bits(r.u32()?)),
        b'd' => json!(f64::from_bits(r.u64()?)),
        b'D' => {
            let scale = r.u8()?;
            let v = r.u32()? as i32;
            json!(v as f64 / 10f64.powi(scale.into()))
        }
        b'S' | b'x' => json!(text(r.longstr()?)),
        b'T' => json!(r.u64()?),
        b'V' => Value::Null,
        b'F' => table(r, depth)?,
        b'A' => {
            let mut a = Reader::new(r.longstr()?);
            let mut out = Vec::new();
            while !a.rest().is_empty() {
                let v = field(&mut a, depth + 1)?;
                if out.len() < MAX_FIELDS {
                    out.push(v);
                }
            }
            Value::Array(out)
        }
        _ => return None,
    })
}

/// Class names by id.
pub fn class_name(class: u16) -> Option<&'static str> {
    Some(match class {
        10 => "connection",
        20 => "channel",
        40 => "exchange",
        50 => "queue",
        60 => "basic",
        85 => "confirm",
        90 => "tx",
        _ => return None,
    })
}

/// Method name and argument signature: space-separated `name:type` with types `o` octet,
/// `S` short, `L` long, `Q` longlong, `b` bit, `s` shortstr, `l` longstr, `t` table;
/// a name starting with `_` is reserved and left out of the detail, `!` marks a secret
/// (SASL responses) whose value is replaced by its length.
pub fn method_spec(class: u16, method: u16) -> Option<(&'static str, &'static str)> {
    const CLOSE: &str = "reply_code:S reply_text:s class_id:S method_id:S";
    const BIND: &str = "_t:S destination:s source:s routing_key:s nowait:b arguments:t";
    Some(match (class, method) {
        (10, 10) => (
            "start",
            "version_major:o version_minor:o server_properties:t mechanisms:l locales:l",
        ),
        (10, 11) => (
            "start-ok",
            "client_properties:t mechanism:s !response:l locale:s",
        ),
        (10, 20) => ("secure", "!challenge:l"),
        (10, 21) => ("secure-ok", "!response:l"),
        (10, 30) => ("tune", "channel_max:S frame_max:L heartbeat:S"),
        (10, 31) => ("tune-ok", "channel_max:S frame_max:L heartbeat:S"),
        (10, 40) => ("open", "virtual_host:s _c:s _i:b"),
        (10, 41) => ("open-ok", "_k:s"),
        (10, 50) => ("close", CLOSE),
        (10, 51) => ("close-ok", ""),
        (10, 60) => ("blocked", "reason:s"),
        (10, 61) => ("unblocked", ""),
        (10, 70) => ("update-secret", "!new_secret:l reason:s"),
        (10, 71) => ("update-secret-ok", ""),
        (20, 10) => ("open", "_o:s"),
        (20, 11) => ("open-ok", "_c:l"),
        (20, 20) => ("flow", "active:b"),
        (20, 21) => ("flow-ok", "active:b"),
        (20, 40) => ("close", CLOSE),
        (20, 41) => ("close-ok", ""),
        (40, 10) => (
            "declare",
            "_t:S exchange:s type:s passive:b durable:b auto_delete:b internal:b nowait:b arguments:t",
        ),
        (40, 11) => ("declare-ok", ""),
        (40, 20) => ("delete", "_t:S exchange:s if_unused:b nowait:b"),
        (40, 21) => ("delete-ok", ""),
        (40, 30) => ("bind", BIND),
        (40, 31) => ("bind-ok", ""),
        (40, 40) => ("unbind", BIND),
        (40, 51) => ("unbind-ok", ""),
        (50, 10) => (
            "declare",
            "_t:S queue:s passive:b durable:b exclusive:b auto_delete:b nowait:b arguments:t",
        ),
        (50, 11) => ("declare-ok", "queue:s message_count:L consumer_count:L"),
        (50, 20) => (
            "bind",
            "_t:S queue:s exchange:s routing_key:s nowait:b arguments:t",
        ),
        (50, 21) => ("bind-ok", ""),
        (50, 30) => ("purge", "_t:S queue:s nowait:b"),
        (50, 31) => ("purge-ok", "message_count:L"),
        (50, 40) => ("delete", "_t:S queue:s if_unused:b if_empty:b nowait:b"),
        (50, 41) => ("delete-ok", "message_count:L"),
        (50, 50) => (
            "unbind",
            "_t:S queue:s exchange:s routing_key:s arguments:t",
        ),
        (50, 51) => ("unbind-ok", ""),
        (60, 10) => ("qos", "prefetch_size:L prefetch_count:S global:b"),
        (60, 11) => ("qos-ok", ""),
        (60, 20) => (
            "consume",
            "_t:S queue:s consumer_tag:s no_local:b no_ack:b exclusive:b nowait:b arguments:t",
        ),
        (60, 21) => ("consume-ok", "consumer_tag:s"),
        (60, 30) => ("cancel", "consumer_tag:s nowait:b"),
        (60, 31) => ("cancel-ok", "consumer_tag:s"),
        (60, 40) => (
            "publish",
            "_t:S exchange:s routing_key:s mandatory:b immediate:b",
        ),
        (60, 50) => (
            "return",
            "reply_code:S reply_text:s exchange:s routing_key:s",
        ),
        (60, 60) => (
            "deliver",
            "consumer_tag:s delivery_tag:Q redelivered:b exchange:s routing_key:s",
        ),
        (60, 70) => ("get", "_t:S queue:s no_ack:b"),
        (60, 71) => (
            "get-ok",
            "delivery_tag:Q redelivered:b exchange:s routing_key:s message_count:L",
        ),
        (60, 72) => ("get-empty", "_c:s"),
        (60, 80) => ("ack", "delivery_tag:Q multiple:b"),
        (60, 90) => ("reject", "delivery_tag:Q requeue:b"),
        (60, 100) => ("recover-async", "requeue:b"),
        (60, 110) => ("recover", "requeue:b"),
        (60, 111) => ("recover-ok", ""),
        (60, 120) => ("nack", "delivery_tag:Q multiple:b requeue:b"),
        (85, 10) => ("select", "nowait:b"),
        (85, 11) => ("select-ok", ""),
        (90, 10) => ("select", ""),
        (90, 11) => ("select-ok", ""),
        (90, 20) => ("commit", ""),
        (90, 21) => ("commit-ok", ""),
        (90, 30) => ("rollback", ""),
        (90, 31) => ("rollback-ok", ""),
        _ => return None,
    })
}

/// Decode a method's arguments by its signature; `None` when the payload is too short or a
/// table is malformed.
pub fn arguments(sig: &str, r: &mut Reader) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for arg in sig.split_whitespace() {
        let (name, ty) = arg.split_once(':')?;
        let v = match ty {
            "o" => json!(r.u8()?),
            "S" => json!(r.u16()?),
            "L" => json!(r.u32()?),
            "Q" => json!(r.u64()?),
            "b" => json!(r.bit()?),
            "s" => json!(text(r.shortstr()?)),
            "l" => {
                let s = r.longstr()?;
                if name.starts_with('!') {
                    json!(format!("<{} bytes>", s.len()))
                } else {
                    json!(text(s))
                }
            }
            _ => table(r, 0)?,
        };
        if !name.starts_with('_') {
            out.insert(name.trim_start_matches('!').to_string(), v);
        }
    }
    Some(out)
}

/// The basic class properties of a content header (after class, weight and body size).
pub fn properties(r: &mut Reader) -> Option<Map<String, Value>> {
    let flags = r.u16()?;
    // Further flag words (bit 0 set) are reserved for future properties: skip them.
    let mut more = flags & 1 != 0;
    while more {
        more = r.u16()? & 1 != 0;
    }
    const PROPS: [(&str, &str); 14] = [
        ("content_type", "s"),
        ("content_encoding", "s"),
        ("headers", "t"),
        ("delivery_mode", "o"),
        ("priority", "o"),
        ("correlation_id", "s"),
        ("reply_to", "s"),
        ("expiration", "s"),
        ("message_id", "s"),
        ("timestamp", "Q"),
        ("type", "s"),
        ("user_id", "s"),
        ("app_id", "s"),
        ("cluster_id", "s"),
    ];
    let mut out = Map::new();
    for (i, (name, ty)) in PROPS.iter().enumerate() {
        if flags & (0x8000 >> i) == 0 {
            continue;
        }
        let v = match *ty {
            "s" => json!(text(r.shortstr()?)),
            "o" => json!(r.u8()?),
            "Q" => json!(r.u64()?),
            _ => table(r, 0)?,
        };
        out.insert((*name).to_string(), v);
    }
    Some(out)
}
