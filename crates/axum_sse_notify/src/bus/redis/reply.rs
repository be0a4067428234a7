//! Stream entries out of Redis replies (`XREAD`, `XRANGE`, `XREVRANGE`),
//! in either protocol version's shape.

use redis::Value;

use crate::event_id::{Epoch, Position};

/// One stream entry: its id, its history's epoch and its other fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub position: Position,
    pub epoch: Option<Epoch>,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// `ms-seq`, a stream entry id, as a position.
pub fn position(id: &str) -> Option<Position> {
    let (ms, seq) = id.split_once('-')?;
    Some(Position::new(ms.parse().ok()?, seq.parse().ok()?))
}

/// A position as a stream entry id.
pub fn entry_id(position: Position) -> String {
    format!("{}-{}", position.major, position.minor)
}

fn text(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn items(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

/// The entries of an `XRANGE`/`XREVRANGE` reply (or of one stream in an
/// `XREAD` reply), in the reply's order. Entries that cannot be read are
/// skipped (and counted in the second value).
pub fn entries(value: &Value) -> (Vec<Entry>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for item in items(value).unwrap_or_default() {
        match entry(item) {
            Some(entry) => out.push(entry),
            None => bad += 1,
        }
    }
    (out, bad)
}

fn entry(value: &Value) -> Option<Entry> {
    let [id, fields] = items(value)? else {
        return None;
    };
    let position = position(std::str::from_utf8(text(id)?).ok()?)?;
    // An entry whose fields cannot be read still has a place in the
    // stream: returned without an epoch, so readers step over it.
    Some(fields_of(fields).map_or_else(
        || Entry {
            position,
            epoch: None,
            fields: Vec::new(),
        },
        |(epoch, fields)| Entry {
            position,
            epoch,
            fields,
        },
    ))
}

/// An entry's epoch (its `h` field, if readable) and its other fields
/// (written one by one, or together as one body `b`).
#[allow(clippy::type_complexity)]
fn fields_of(fields: &Value) -> Option<(Option<Epoch>, Vec<(Vec<u8>, Vec<u8>)>)> {
    let mut epoch = None;
    let mut out = Vec::new();
    let pairs: Vec<(&Value, &Value)> = match fields {
        Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
        other => {
            let flat = items(other)?;
            flat.chunks_exact(2).map(|p| (&p[0], &p[1])).collect()
        }
    };
    for (name, value) in pairs {
        let (name, value) = (text(name)?, text(value)?);
        if name == b"h" {
            epoch = Epoch::parse_hex(std::str::from_utf8(value).ok()?);
        } else if name == b"b" {
            // The fields as one body (what the publisher writes now).
            out.extend(crate::bus::wire::body_fields(value)?);
        } else {
            out.push((name.to_vec(), value.to_vec()));
        }
    }
    Some((epoch, out))
}

/// The entries of an `XREAD` reply for one stream (nil: none).
pub fn read_reply(value: &Value) -> (Vec<Entry>, usize) {
    let streams: Vec<&Value> = match value {
        Value::Nil => return (Vec::new(), 0),
        Value::Map(map) => map.iter().map(|(_, v)| v).collect(),
        other => items(other)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| items(s).and_then(|kv| kv.get(1)))
            .collect(),
    };
    let mut all = (Vec::new(), 0);
    for stream in streams {
        let (entries, bad) = entries(stream);
        all.0.extend(entries);
        all.1 += bad;
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn raw_entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn xread_replies_are_read_in_both_shapes() {
        let entries = Value::Array(vec![
            raw_entry("1700000000000-0", &["h", "00000000000000ff", "k", "e"]),
            raw_entry("1700000000000-1", &["h", "00000000000000ff", "k", "d"]),
            raw_entry("bad", &["h", "x"]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("{sse}:stream"),
            entries.clone(),
        ])]);
        let resp3 = Value::Map(vec![(bulk("{sse}:stream"), entries)]);
        for reply in [resp2, resp3] {
            let (read, bad) = read_reply(&reply);
            assert_eq!(bad, 1);
            assert_eq!(read.len(), 2);
            assert_eq!(read[0].position, Position::new(1_700_000_000_000, 0));
            assert_eq!(read[1].epoch, Some(Epoch::from_u64(255)));
            assert_eq!(read[1].fields, vec![(b"k".to_vec(), b"d".to_vec())]);
        }
        assert_eq!(read_reply(&Value::Nil).0, Vec::new());
    }

    #[test]
    fn fields_written_as_one_body_read_as_fields() {
        let (read, bad) = entries(&Value::Array(vec![
            raw_entry("1-0", &["h", "00000000000000ff", "b", "k:1:eu:3:a-1"]),
            raw_entry("1-1", &["h", "00000000000000ff", "k", "e", "u", "a-1"]),
            raw_entry("1-2", &["h", "00000000000000ff", "b", "k:9:e"]),
        ]));
        assert_eq!(bad, 0);
        assert_eq!(read[0].fields, read[1].fields);
        assert_eq!(read[0].epoch, Some(Epoch::from_u64(255)));
        // A body that cannot be read: the entry keeps its place, unread.
        assert_eq!((read[2].epoch, read[2].fields.len()), (None, 0));
    }

    #[test]
    fn ids_and_positions_convert_both_ways() {
        let p = Position::new(1_733_150_000_000, 7);
        assert_eq!(position(&entry_id(p)), Some(p));
        assert_eq!(position("17"), None);
        assert_eq!(position("a-1"), None);
    }
}
