//! Time arguments of the API: RFC 3339, epoch milliseconds, `now`, or relative `-15m`.

use chrono::DateTime;
use serde_json::Value;

use crate::QueryError;

/// Parses a time argument into µs since the epoch; `now_us` anchors `now` and relative values.
pub fn parse_time(s: &str, now_us: i64) -> Result<i64, QueryError> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now_us);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return ms
            .checked_mul(1000)
            .ok_or_else(|| QueryError::BadRequest(format!("time {s:?} is out of range")));
    }
    if let Some(rel) = s.strip_prefix('-') {
        let (num, unit) =
            rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = num.parse().map_err(|_| bad_time(s))?;
        let unit_us: i64 = match unit {
            "s" => 1_000_000,
            "m" => 60_000_000,
            "h" => 3_600_000_000,
            "d" => 86_400_000_000,
            _ => return Err(bad_time(s)),
        };
        return Ok(now_us - n.saturating_mul(unit_us));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|_| bad_time(s))
}

fn bad_time(s: &str) -> QueryError {
    QueryError::BadRequest(format!(
        "cannot read time {:?}: use RFC 3339 (2026-11-25T03:12:44.269324Z), epoch milliseconds, `now` or a relative time like -15m",
        s.chars().take(64).collect::<String>()
    ))
}

/// RFC 3339 with microseconds, UTC (`2026-11-25T03:12:44.270982Z`).
pub fn format_ts(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| us.to_string())
}

/// A time in a JSON body: a string as [`parse_time`] takes it, or a number of epoch
/// milliseconds; null or absent is `None`. `what` names the field in the error.
pub fn json_time(v: &Option<Value>, now_us: i64, what: &str) -> Result<Option<i64>, QueryError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_time(s, now_us).map(Some),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000))
            .map(Some)
            .ok_or_else(|| QueryError::BadRequest(format!("`{what}` {n} is out of range"))),
        Some(other) => Err(QueryError::BadRequest(format!(
            "`{what}` must be a time string or epoch milliseconds, not {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_time_form() {
        let now = 1_795_576_364_269_324;
        assert_eq!(parse_time("2026-11-25T03:12:44.269324Z", 0).unwrap(), now);
        assert_eq!(
            parse_time("1795576364269", 0).unwrap(),
            1_795_576_364_269_000
        );
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("-15m", now).unwrap(), now - 900_000_000);
        assert!(parse_time("yesterday", now).is_err());
        assert_eq!(format_ts(now), "2026-11-25T03:12:44.269324Z");
    }
}
