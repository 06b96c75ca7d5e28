//! Request and response bodies of the APIs parsed in detail: topics and partitions of
//! Produce, Fetch, Metadata, ListOffsets, OffsetCommit, OffsetFetch, CreateTopics and
//! DeleteTopics, the group of the group APIs, and the top-level error code of the simple
//! ones. Field layouts per version follow Kafka's message JSON definitions. A parse that
//! runs off the body returns `None` and keeps what it collected so far.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::wire::Reader;

/// Topic ids (flexible versions from Fetch v13 / Produce v13 / Metadata v10 on) to names, as
/// learned from Metadata responses on the same connection.
pub type TopicIds = HashMap<[u8; 16], String>;

/// Topics and partitions kept in the JSON detail.
pub const DETAIL_ITEMS: usize = 64;

#[derive(Debug, Default)]
pub struct ReqTopic {
    pub name: String,
    pub partitions: Vec<i32>,
    /// Records in the Produce batches (the batch header's count, also for compressed ones).
    pub records: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Request {
    pub topics: Vec<ReqTopic>,
    pub acks: Option<i16>,
    pub group: Option<String>,
}

#[derive(Debug, Default)]
pub struct Response {
    pub error_code: Option<i16>,
    pub throttle_ms: Option<i32>,
    /// `{"name", "error_code"?, "partitions": [{"partition", "error_code", ...}]}`.
    pub topics: Vec<Value>,
    /// Every error code read, in wire order (top-level first where it comes first).
    pub errors: Vec<i16>,
}

/// Kafka prints topic ids in URL-safe base64; hex with dashes is as unambiguous and simpler.
fn uuid_text(id: &[u8; 16]) -> String {
    let h: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn topic(r: &mut Reader, by_id: bool, ids: &TopicIds) -> Option<String> {
    if by_id {
        let id = r.uuid()?;
        Some(ids.get(&id).cloned().unwrap_or_else(|| uuid_text(&id)))
    } else {
        r.string()
    }
}

fn i32s(r: &mut Reader) -> Option<Vec<i32>> {
    let n = r.array()?;
    let mut v = Vec::with_capacity(n.min(DETAIL_ITEMS));
    for _ in 0..n {
        v.push(r.i32()?);
    }
    Some(v)
}

/// Records in a record set: the count field of each v2 batch, one per legacy message.
pub fn record_count(mut set: &[u8]) -> u64 {
    let mut n = 0u64;
    while set.len() >= 17 {
        let len = i32::from_be_bytes([set[8], set[9], set[10], set[11]]);
        let Some(total) = usize::try_from(len).ok().and_then(|l| l.checked_add(12)) else {
            break;
        };
        if total > set.len() {
            break; // a partial batch at the end of a fetch
        }
        n += match set.get(16) {
            Some(2) => set.get(57..61).map_or(0, |c| {
                u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            }),
            _ => 1,
        };
        set = &set[total..];
    }
    n
}

/// Parses a request body into `req`.
pub fn request(key: i16, v: i16, r: &mut Reader, ids: &TopicIds, req: &mut Request) -> Option<()> {
    match key {
        0 => {
            if v >= 3 {
                r.nullable_string()?;
            }
            req.acks = Some(r.i16()?);
            r.i32()?;
            for _ in 0..r.array()? {
                let mut t = ReqTopic {
                    name: topic(r, v >= 13, ids)?,
                    ..Default::default()
                };
                let mut records = 0;
                for _ in 0..r.array()? {
                    t.partitions.push(r.i32()?);
                    records += record_count(r.bytes()?);
                    r.tags()?;
                }
                t.records = Some(records);
                r.tags()?;
                req.topics.push(t);
            }
        }
        1 => {
            if v <= 14 {
                r.i32()?; // replica_id (a tagged replica_state from v15)
            }
            r.take(8)?; // max_wait_ms, min_bytes
            if v >= 3 {
                r.i32()?;
            }
            if v >= 4 {
                r.i8()?;
            }
            if v >= 7 {
                r.take(8)?; // session id and epoch
            }
            for _ in 0..r.array()? {
                let mut t = ReqTopic {
                    name: topic(r, v >= 13, ids)?,
                    ..Default::default()
                };
                for _ in 0..r.array()? {
                    t.partitions.push(r.i32()?);
                    let skip = 12
                        + if v >= 9 { 4 } else { 0 }
                        + if v >= 12 { 4 } else { 0 }
                        + if v >= 5 { 8 } else { 0 };
                    r.take(skip)?;
                    r.tags()?;
                }
                r.tags()?;
                req.topics.push(t);
            }
        }
        2 => {
            r.i32()?;
            if v >= 2 {
                r.i8()?;
            }
            for _ in 0..r.array()? {
                let mut t = ReqTopic {
                    name: r.string()?,
                    ..Default::default()
                };
                for _ in 0..r.array()? {
                    t.partitions.push(r.i32()?);
                    r.take(8 + if v >= 4 { 4 } else { 0 } + if v == 0 { 4 } else { 0 })?;
                    r.tags()?;
                }
                r.tags()?;
                req.topics.push(t);
            }
        }
        3 => {
            for _ in 0..r.array()? {
                let name = if v >= 10 {
                    let id = r.uuid()?;
                    r.nullable_string()?
                        .or_else(|| ids.get(&id).cloned())
                        .unwrap_or_else(|| uuid_text(&id))
                } else {
                    r.string()?
                };
                r.tags()?;
                req.topics.push(ReqTopic {
                    name,
                    ..Default::default()
                });
            }
        }
        8 => {
            req.group = Some(r.string()?);
            if v >= 1 {
                r.i32()?;
                r.string()?;
            }
            if v >= 7 {
                r.nullable_string()?;
            }
            if (2..=4).contains(&v) {
                r.i64()?;
            }
            for _ in 0..r.array()? {
                let mut t = ReqTopic {
                    name: r.string()?,
                    ..Default::default()
                };
                for _ in 0..r.array()? {
                    t.partitions.push(r.i32()?);
                    r.take(8 + if v >= 6 { 4 } else { 0 } + if v == 1 { 8 } else { 0 })?;
                    r.nullable_string()?;
                    r.tags()?;
                }
                r.tags()?;
                req.topics.push(t);
            }
        }
        9 => {
            let groups = if v >= 8 { r.array()? } else { 1 };
            for _ in 0..groups {
                let group = r.string()?;
                req.group.get_or_insert(group);
                if v >= 9 {
                    r.nullable_string()?;
                    r.i32()?;
                }
                for _ in 0..r.array()? {
                    let name = topic(r, v >= 10, ids)?;
                    let partitions = i32s(r)?;
                    r.tags()?;
                    req.topics.push(ReqTopic {
                        name,
                        partitions,
                        records: None,
                    });
                }
                if v >= 8 {
                    r.tags()?;
                }
            }
        }
        10 => {
            req.group = Some(if v >= 4 {
                r.i8()?;
                let mut first = None;
                for _ in 0..r.array()? {
                    first.get_or_insert(r.string()?);
                }
                first.unwrap_or_default()
            } else {
                r.string()?
            });
        }
        11..=14 => req.group = Some(r.string()?),
        19 => {
            for _ in 0..r.array()? {
                let name = r.string()?;
                r.take(6)?; // num_partitions, replication_factor
                for _ in 0..r.array()? {
                    r.i32()?;
                    r.skip_array(4)?;
                    r.tags()?;
                }
                for _ in 0..r.array()? {
                    r.string()?;
                    r.nullable_string()?;
                    r.tags()?;
                }
                r.tags()?;
                req.topics.push(ReqTopic {
                    name,
                    ..Default::default()
                });
            }
        }
        20 => {
            for _ in 0..r.array()? {
                let name = if v >= 6 {
                    let name = r.nullable_string()?;
                    let id = r.uuid()?;
                    r.tags()?;
                    name.or_else(|| ids.get(&id).cloned())
                        .unwrap_or_else(|| uuid_text(&id))
                } else {
                    r.string()?
                };
                req.topics.push(ReqTopic {
                    name,
                    ..Default::default()
                });
            }
        }
        _ => {}
    }
    Some(())
}

/// Reads the partitions array of a response topic; `each` reads one partition (without its
/// tagged fields) and returns its index, error code and extra JSON fields.
fn partitions(
    r: &mut Reader,
    resp: &mut Response,
    mut each: impl FnMut(&mut Reader) -> Option<(i32, i16, Value)>,
) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    for _ in 0..r.array()? {
        let (p, e, mut extra) = each(r)?;
        r.tags()?;
        resp.errors.push(e);
        if out.len() < DETAIL_ITEMS {
            if let Some(o) = extra.as_object_mut() {
                o.insert("partition".into(), json!(p));
                o.insert("error_code".into(), json!(e));
            }
            out.push(extra);
        }
    }
    Some(out)
}

fn push_topic(resp: &mut Response, name: String, error: Option<i16>, parts: Vec<Value>) {
    if resp.topics.len() < DETAIL_ITEMS {
        let mut t = json!({"name": name, "partitions": parts});
        if let (Some(e), Some(o)) = (error, t.as_object_mut()) {
            o.insert("error_code".into(), json!(e));
        }
        resp.topics.push(t);
    }
}

fn top_error(r: &mut Reader, resp: &mut Response) -> Option<()> {
    let e = r.i16()?;
    resp.error_code = Some(e);
    resp.errors.push(e);
    Some(())
}

/// Parses a response body into `resp`; Metadata v10+ teaches `ids` topic ids.
pub fn response(
    key: i16,
    v: i16,
    r: &mut Reader,
    ids: &mut TopicIds,
    resp: &mut Response,
) -> Option<()> {
    // Where the body starts with throttle_time_ms: from which version (Produce has it last).
    let throttle_from = match key {
        12..=14 | 16 => 1,
        2 | 11 | 19 => 2,
        3 | 8 => 3,
        9 if v >= 3 => 3,
        10 | 20 => 1,
        22 | 25 | 26 | 42 | 60 | 68 | 71 | 72 => 0,
        1 => 1,
        _ => i16::MAX,
    };
    if v >= throttle_from {
        resp.throttle_ms = Some(r.i32()?);
    }
    match key {
        0 => {
            for _ in 0..r.array()? {
                let name = topic(r, v >= 13, ids)?;
                let parts = partitions(r, resp, |r| {
                    let p = r.i32()?;
                    let e = r.i16()?;
                    let base = r.i64()?;
                    r.take(if v >= 2 { 8 } else { 0 } + if v >= 5 { 8 } else { 0 })?;
                    if v >= 8 {
                        for _ in 0..r.array()? {
                            r.i32()?;
                            r.nullable_string()?;
                            r.tags()?;
                        }
                        r.nullable_string()?;
                    }
                    Some((p, e, json!({ "base_offset": base })))
                })?;
                r.tags()?;
                push_topic(resp, name, None, parts);
            }
            if v >= 1 {
                resp.throttle_ms = Some(r.i32()?);
            }
        }
        1 => {
            if v >= 7 {
                top_error(r, resp)?;
                r.i32()?;
            }
            for _ in 0..r.array()? {
                let name = topic(r, v >= 13, ids)?;
                let parts = partitions(r, resp, |r| {
                    let p = r.i32()?;
                    let e = r.i16()?;
                    let hw = r.i64()?;
                    r.take(if v >= 4 { 8 } else { 0 } + if v >= 5 { 8 } else { 0 })?;
                    if v >= 4 {
                        for _ in 0..r.array()? {
                            r.take(16)?;
                            r.tags()?;
                        }
                    }
                    if v >= 11 {
                        r.i32()?;
                    }
                    let records = record_count(r.bytes()?);
                    Some((p, e, json!({"high_watermark": hw, "records": records})))
                })?;
                r.tags()?;
                push_topic(resp, name, None, parts);
            }
        }
        2 | 8 => {
            for _ in 0..r.array()? {
                let name = r.string()?;
                let parts = partitions(r, resp, |r| {
                    let p = r.i32()?;
                    let e = r.i16()?;
                    if key == 8 {
                        return Some((p, e, json!({})));
                    }
                    if v == 0 {
                        r.skip_array(8)?;
                        return Some((p, e, json!({})));
                    }
                    r.i64()?;
                    let offset = r.i64()?;
                    if v >= 4 {
                        r.i32()?;
                    }
                    Some((p, e, json!({ "offset": offset })))
                })?;
                r.tags()?;
                push_topic(resp, name, None, parts);
            }
        }
        3 => {
            for _ in 0..r.array()? {
                r.i32()?;
                r.string()?;
                r.i32()?;
                if v >= 1 {
                    r.nullable_string()?;
                }
                r.tags()?;
            }
            if v >= 2 {
                r.nullable_string()?;
            }
            if v >= 1 {
                r.i32()?;
            }
            for _ in 0..r.array()? {
                let e = r.i16()?;
                resp.errors.push(e);
                let mut name = if v >= 10 {
                    r.nullable_string()?
                } else {
                    Some(r.string()?)
                };
                if v >= 10 {
                    let id = r.uuid()?;
                    match &name {
                        Some(n) if id != [0; 16] && ids.len() < 4096 => {
                            ids.insert(id, n.clone());
                        }
                        None => name = Some(uuid_text(&id)),
                        _ => {}
                    }
                }
                if v >= 1 {
                    r.i8()?;
                }
                let parts = partitions(r, resp, |r| {
                    let e = r.i16()?;
                    let p = r.i32()?;
                    let leader = r.i32()?;
                    if v >= 7 {
                        r.i32()?;
                    }
                    r.skip_array(4)?;
                    r.skip_array(4)?;
                    if v >= 5 {
                        r.skip_array(4)?;
                    }
                    Some((p, e, json!({ "leader": leader })))
                })?;
                if v >= 8 {
                    r.i32()?;
                }
                r.tags()?;
                push_topic(resp, name.unwrap_or_default(), Some(e), parts);
            }
        }
        9 => {
            let groups = if v >= 8 { r.array()? } else { 1 };
            for _ in 0..groups {
                if v >= 8 {
                    r.string()?;
                }
                for _ in 0..r.array()? {
                    let name = topic(r, v >= 10, ids)?;
                    let parts = partitions(r, resp, |r| {
                        let p = r.i32()?;
                        let offset = r.i64()?;
                        if v >= 5 {
                            r.i32()?;
                        }
                        r.nullable_string()?;
                        Some((p, r.i16()?, json!({ "offset": offset })))
                    })?;
                    r.tags()?;
                    push_topic(resp, name, None, parts);
                }
                if v >= 2 {
                    top_error(r, resp)?;
                }
                if v >= 8 {
                    r.tags()?;
                }
            }
        }
        10 if v >= 4 => {
            for _ in 0..r.array()? {
                r.string()?;
                r.i32()?;
                r.string()?;
                r.i32()?;
                let e = r.i16()?;
                resp.errors.push(e);
                r.nullable_string()?;
                r.tags()?;
            }
        }
        19 | 20 => {
            for _ in 0..r.array()? {
                let mut name = if key == 20 && v >= 6 {
                    r.nullable_string()?
                } else {
                    Some(r.string()?)
                };
                if (key == 19 && v >= 7) || (key == 20 && v >= 6) {
                    let id = r.uuid()?;
                    if name.is_none() {
                        name = ids.get(&id).cloned().or_else(|| Some(uuid_text(&id)));
                    }
                }
                let e = r.i16()?;
                resp.errors.push(e);
                if (key == 19 && v >= 1) || (key == 20 && v >= 5) {
                    r.nullable_string()?;
                }
                if key == 19 && v >= 5 {
                    r.take(6)?;
                    for _ in 0..r.array()? {
                        r.string()?;
                        r.nullable_string()?;
                        r.take(3)?;
                        r.tags()?;
                    }
                }
                r.tags()?;
                push_topic(resp, name.unwrap_or_default(), Some(e), Vec::new());
            }
        }
        10..=14 | 16..=18 | 22 | 25 | 26 | 36 | 60 | 68 | 71 | 72 => top_error(r, resp)?,
        _ => {}
    }
    Some(())
}
