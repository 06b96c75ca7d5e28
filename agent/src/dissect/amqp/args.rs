//! AMQP 0-9-1 method names, their synchronous replies, argument lists (per the 0-9-1 spec's
//! XML) and the basic content properties, decoded into JSON. Field tables become JSON objects
//! (nested up to [`MAX_DEPTH`]); long strings are cut to [`VALUE_CAP`] bytes.

use serde_json::{json, Map, Value};

const MAX_DEPTH: usize = 8;
const VALUE_CAP: usize = 1024;

pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(VALUE_CAP)]).into_owned()
}

/// `class.method` as the spec names it (`basic.publish`, `queue.declare-ok`).
pub fn method_name(class: u16, id: u16) -> String {
    let c = match class {
        10 => "connection",
        20 => "channel",
        40 => "exchange",
        50 => "queue",
        60 => "basic",
        85 => "confirm",
        90 => "tx",
        _ => return format!("{class}.{id}"),
    };
    let m = match (class, id) {
        (10, 10) => "start",
        (10, 11) => "start-ok",
        (10, 20) => "secure",
        (10, 21) => "secure-ok",
        (10, 30) => "tune",
        (10, 31) => "tune-ok",
        (10, 40) => "open",
        (10, 41) => "open-ok",
        (10, 50) | (20, 40) => "close",
        (10, 51) | (20, 41) => "close-ok",
        (10, 60) => "blocked",
        (10, 61) => "unblocked",
        (20, 10) | (85, 10) | (90, 10) => "select",
        (20, 11) | (85, 11) | (90, 11) => "select-ok",
        (20, 20) => "flow",
        (20, 21) => "flow-ok",
        (40, 10) | (50, 10) => "declare",
        (40, 11) | (50, 11) => "declare-ok",
        (40, 20) => "delete",
        (40, 21) => "delete-ok",
        (40, 30) | (50, 20) => "bind",
        (40, 31) | (50, 21) => "bind-ok",
        (40, 40) | (50, 50) => "unbind",
        (40, 51) | (50, 51) => "unbind-ok",
        (50, 30) => "purge",
        (50, 31) => "purge-ok",
        (50, 40) => "delete",
        (50, 41) => "delete-ok",
        (60, 10) => "qos",
        (60, 11) => "qos-ok",
        (60, 20) => "consume",
        (60, 21) => "consume-ok",
        (60, 30) => "cancel",
        (60, 31) => "cancel-ok",
        (60, 40) => "publish",
        (60, 50) => "return",
        (60, 60) => "deliver",
        (60, 70) => "get",
        (60, 71) => "get-ok",
        (60, 72) => "get-empty",
        (60, 80) => "ack",
        (60, 90) => "reject",
        (60, 100) => "recover-async",
        (60, 110) => "recover",
        (60, 111) => "recover-ok",
        (60, 120) => "nack",
        (90, 20) => "commit",
        (90, 21) => "commit-ok",
        (90, 30) => "rollback",
        (90, 31) => "rollback-ok",
        _ => return format!("{c}.{id}"),
    };
    // `channel.open` is 20.10 but shares "select"'s id with confirm/tx: name it properly.
    let m = match (class, id) {
        (20, 10) => "open",
        (20, 11) => "open-ok",
        _ => m,
    };
    format!("{c}.{m}")
}

/// The method ids that answer a synchronous method (empty: asynchronous).
pub fn responses(class: u16, id: u16) -> &'static [u16] {
    match (class, id) {
        (60, 70) => &[71, 72],
        (10, 10) | (10, 20) | (10, 30) | (10, 40) | (10, 50) => match id {
            10 => &[11],
            20 => &[21],
            30 => &[31],
            40 => &[41],
            _ => &[51],
        },
        (20, 10) => &[11],
        (20, 20) => &[21],
        (20, 40) => &[41],
        (40, 10) | (50, 10) | (85, 10) | (90, 10) | (60, 10) => &[11],
        (40, 20) | (50, 20) | (60, 20) | (90, 20) => &[21],
        (40, 30) | (50, 30) | (60, 30) | (90, 30) => &[31],
        (40, 40) | (50, 40) => &[51, 41],
        (50, 50) => &[51],
        (60, 110) => &[111],
        _ => &[],
    }
}

/// Reads the arguments of one method in order.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    bits: Option<(u8, u8)>,
}

impl Reader<'_> {
    fn octet(&mut self) -> Option<u8> {
        self.bits = None;
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }
    fn short(&mut self) -> Option<u16> {
        self.bits = None;
        let v = u16_at(self.b, self.at)?;
        self.at += 2;
        Some(v)
    }
    fn long(&mut self) -> Option<u32> {
        self.bits = None;
        let v = u32_at(self.b, self.at)?;
        self.at += 4;
        Some(v)
    }
    fn longlong(&mut self) -> Option<u64> {
        self.bits = None;
        let v = u64_at(self.b, self.at)?;
        self.at += 8;
        Some(v)
    }
    fn shortstr(&mut self) -> Option<String> {
        let n = usize::from(self.octet()?);
        let v = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(text(v))
    }
    fn longstr_raw(&mut self) -> Option<&[u8]> {
        let n = self.long()? as usize;
        let v = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(v)
    }
    /// Consecutive bits share an octet, least significant first.
    fn bit(&mut self) -> Option<bool> {
        let (byte, i) = match self.bits {
            Some((byte, i)) if i < 8 => (byte, i),
            _ => {
                let byte = *self.b.get(self.at)?;
                self.at += 1;
                (byte, 0)
            }
        };
        self.bits = Some((byte, i + 1));
        Some(byte >> i & 1 == 1)
    }
    fn table(&mut self) -> Option<Value> {
        let raw = self.longstr_raw()?;
        table(raw, 0)
    }
}

fn table(b: &[u8], depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut r = Reader {
        b,
        at: 0,
        bits: None,
    };
    let mut m = Map::new();
    while r.at < b.len() {
        let k = r.shortstr()?;
        let v = field_value(&mut r, depth)?;
        m.insert(k, v);
    }
    Some(Value::Object(m))
}

fn field_value(r: &mut Reader, depth: usize) -> Option<Value> {
    let t = r.octet()?;
    Some(match t {
        b't' => json!(r.octet()? != 0),
        b'b' => json!(r.octet()? as i8),
        b'B' => json!(r.octet()?),
        b's' => json!(r.short()? as i16),
        b'u' => json!(r.short()?),
        b'I' => json!(r.long()? as i32),
        b'i' => json!(r.long()?),
        b'l' => json!(r.longlong()? as i64),
        b'L' => json!(r.longlong()?),
        b'f' => json!(f32::from_bits(r.long()?)),
        b'd' => json!(f64::from_bits(r.longlong()?)),
        b'D' => {
            let scale = r.octet()?;
            json!({"scale": scale, "value": r.long()?})
        }
        b'S' | b'x' => json!(text(r.longstr_raw()?)),
        b'T' => json!(r.longlong()?),
        b'F' => table(r.longstr_raw()?, depth + 1)?,
        b'A' => {
            let raw = r.longstr_raw()?;
            let mut inner = Reader {
                b: raw,
                at: 0,
                bits: None,
            };
            let mut items = Vec::new();
            while inner.at < raw.len() {
                items.push(field_value(&mut inner, depth + 1)?);
            }
            Value::Array(items)
        }
        b'V' => Value::Null,
        _ => return None,
    })
}

/// The arguments of a method, by name; `None` if they do not parse.
pub fn method_args(class: u16, id: u16, b: &[u8]) -> Option<Map<String, Value>> {
    let mut r = Reader {
        b,
        at: 0,
        bits: None,
    };
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    match (class, id) {
        (10, 10) => {
            put("version_major", json!(r.octet()?));
            put("version_minor", json!(r.octet()?));
            put("server_properties", r.table()?);
            put("mechanisms", json!(text(r.longstr_raw()?)));
        }
        (10, 11) => {
            put("client_properties", r.table()?);
            put("mechanism", json!(r.shortstr()?));
            // The response carries the credentials: never kept.
            let _ = r.longstr_raw()?;
            put("locale", json!(r.shortstr()?));
        }
        (10, 30) | (10, 31) => {
            put("channel_max", json!(r.short()?));
            put("frame_max", json!(r.long()?));
            put("heartbeat", json!(r.short()?));
        }
        (10, 40) => put("virtual_host", json!(r.shortstr()?)),
        (10, 50) | (20, 40) => {
            put("reply_code", json!(r.short()?));
            put("reply_text", json!(r.shortstr()?));
            put("failing_class", json!(r.short()?));
            put("failing_method", json!(r.short()?));
        }
        (20, 20) | (20, 21) => put("active", json!(r.bit()?)),
        (40, 10) => {
            r.short()?;
            put("exchange", json!(r.shortstr()?));
            put("type", json!(r.shortstr()?));
            put("passive", json!(r.bit()?));
            put("durable", json!(r.bit()?));
            put("auto_delete", json!(r.bit()?));
            put("internal", json!(r.bit()?));
            put("no_wait", json!(r.bit()?));
            put("arguments", r.table()?);
        }
        (40, 20) => {
            r.short()?;
            put("exchange", json!(r.shortstr()?));
            put("if_unused", json!(r.bit()?));
            put("no_wait", json!(r.bit()?));
        }
        (40, 30) | (40, 40) => {
            r.short()?;
            put("destination", json!(r.shortstr()?));
            put("source", json!(r.shortstr()?));
            put("routing_key", json!(r.shortstr()?));
            put("no_wait", json!(r.bit()?));
            put("arguments", r.table()?);
        }
        (50, 10) => {
            r.short()?;
            put("queue", json!(r.shortstr()?));
            put("passive", json!(r.bit()?));
            put("durable", json!(r.bit()?));
            put("exclusive", json!(r.bit()?));
            put("auto_delete", json!(r.bit()?));
            put("no_wait", json!(r.bit()?));
            put("arguments", r.table()?);
        }
        (50, 11) => {
            put("queue", json!(r.shortstr()?));
            put("message_count", json!(r.long()?));
            put("consumer_count", json!(r.long()?));
        }
        (50, 20) | (50, 50) => {
            r.short()?;
            put("queue", json!(r.shortstr()?));
            put("exchange", json!(r.shortstr()?));
            put("routing_key", json!(r.shortstr()?));
            if id == 20 {
                put("no_wait", json!(r.bit()?));
            }
            put("arguments", r.table()?);
        }
        (50, 30) => {
            r.short()?;
            put("queue", json!(r.shortstr()?));
            put("no_wait", json!(r.bit()?));
        }
        (50, 31) | (50, 41) => put("message_count", json!(r.long()?)),
        (50, 40) => {
            r.short()?;
            put("queue", json!(r.shortstr()?));
            put("if_unused", json!(r.bit()?));
            put("if_empty", json!(r.bit()?));
            put("no_wait", json!(r.bit()?));
        }
        (60, 10) => {
            put("prefetch_size", json!(r.long()?));
            put("prefetch_count", json!(r.short()?));
            put("global", json!(r.bit()?));
        }
        (60, 20) => {
            r.short()?;
            put("queue", json!(r.shortstr()?));
            put("consumer_tag", json!(r.shortstr()?));
            put("no_local", json!(r.bit()?));
            put("no_ack", json!(r.bit()?));
            put("exclusive", json!(r.bit()?));
            put("no_wait", json!(r.bit()?));
            put("arguments", r.table()?);
        }
        (60, 21) | (60, 31) => put("consumer_tag", json!(r.shortstr()?)),
        (60, 30) => {
            put("consumer_tag", json!(r.shortstr()?));
            put("no_wait", json!(r.bit()?));
        }
        (60, 40) => {
            r.short()?;
            put("exchange", json!(r.shortstr()?));
            put("routing_key", json!(r.shortstr()?));
            put("mandatory", json!(r.bit()?));
            put("immediate", json!(r.bit()?));
        }
        (60, 50) => {
            put("reply_code", json!(r.short()?));
            put("reply_text", json!(r.shortstr()?));
            put("exchange", json!(r.shortstr()?));
            put("routing_key", json!(r.shortstr()?));
        }
        (60, 60) => {
            put("consumer_tag", json!(r.shortstr()?));
            put("delivery_tag", json!(r.longlong()?));
            put("redelivered", json!(r.bit()?));
            put("exchange", json!(r.shortstr()?));
            put("routing_key", json!(r.shortstr()?));
        }
        (60, 70) => {
            r.short()?;
            put("queue", json!(r.shortstr()?));
            put("no_ack", json!(r.bit()?));
        }
        (60, 71) => {
            put("delivery_tag", json!(r.longlong()?));
            put("redelivered", json!(r.bit()?));
            put("exchange", json!(r.shortstr()?));
            put("routing_key", json!(r.shortstr()?));
            put("message_count", json!(r.long()?));
        }
        (60, 80) | (60, 120) => {
            put("delivery_tag", json!(r.longlong()?));
            put("multiple", json!(r.bit()?));
            if id == 120 {
                put("requeue", json!(r.bit()?));
            }
        }
        (60, 90) => {
            put("delivery_tag", json!(r.longlong()?));
            put("requeue", json!(r.bit()?));
        }
        (60, 100) | (60, 110) => put("requeue", json!(r.bit()?)),
        (85, 10) => put("no_wait", json!(r.bit()?)),
        _ => {}
    }
    Some(m)
}

/// Basic content properties of a content header (after class, weight and body size).
pub fn properties(b: &[u8]) -> Value {
    let Some(flags) = u16_at(b, 0) else {
        return Value::Null;
    };
    let mut r = Reader {
        b,
        at: 2,
        bits: None,
    };
    let mut m = Map::new();
    // Flag bit 15 first; bit 0 would announce more flag words (none are defined).
    let names: [(&str, u8); 14] = [
        ("content_type", b's'),
        ("content_encoding", b's'),
        ("headers", b'F'),
        ("delivery_mode", b'o'),
        ("priority", b'o'),
        ("correlation_id", b's'),
        ("reply_to", b's'),
        ("expiration", b's'),
        ("message_id", b's'),
        ("timestamp", b'T'),
        ("type", b's'),
        ("user_id", b's'),
        ("app_id", b's'),
        ("cluster_id", b's'),
    ];
    for (i, (name, kind)) in names.iter().enumerate() {
        if flags & (1 << (15 - i)) == 0 {
            continue;
        }
        let v = match kind {
            b's' => r.shortstr().map(Value::from),
            b'o' => r.octet().map(Value::from),
            b'T' => r.longlong().map(Value::from),
            _ => r.table(),
        };
        match v {
            Some(v) => {
                m.insert((*name).into(), v);
            }
            None => break,
        }
    }
    Value::Object(m)
}
