//! Sizes on the wire: AMQP 0-9-1 sends a message's properties (headers included) in
//! one content-header frame, which cannot be split. A frame larger than the negotiated
//! `frame_max` makes the broker close the whole connection (501 FRAME_ERROR), failing
//! every publish and delivery in flight; so dlqd checks the size before publishing.

use crate::message::{FieldTable, Properties, Value};

/// Bytes a frame adds around its payload: type (1), channel (2), size (4), end (1).
pub const FRAME_OVERHEAD: usize = 8;
/// The content-header payload before the properties: class, weight, body size.
const HEADER_PREFIX: usize = 2 + 2 + 8;

/// The size of the content-header frame that carries `p` (overhead included).
pub fn content_header_frame_len(p: &Properties) -> usize {
    FRAME_OVERHEAD + HEADER_PREFIX + properties_len(p)
}

/// Encoded size of the basic properties: the flags word, then each present field.
pub fn properties_len(p: &Properties) -> usize {
    let short = |s: &Option<String>| s.as_ref().map_or(0, |s| 1 + s.len());
    2 + short(&p.content_type)
        + short(&p.content_encoding)
        + p.headers.as_ref().map_or(0, table_len)
        + p.delivery_mode.map_or(0, |_| 1)
        + p.priority.map_or(0, |_| 1)
        + short(&p.correlation_id)
        + short(&p.reply_to)
        + short(&p.expiration)
        + short(&p.message_id)
        + p.timestamp.map_or(0, |_| 8)
        + short(&p.message_type)
        + short(&p.user_id)
        + short(&p.app_id)
        + short(&p.cluster_id)
}

/// A field table: its 4-byte length, then name (short string), type tag and value each.
pub fn table_len(t: &FieldTable) -> usize {
    4 + t
        .iter()
        .map(|(k, v)| 1 + k.len() + 1 + value_len(v))
        .sum::<usize>()
}

/// A field value without its type tag.
fn value_len(v: &Value) -> usize {
    match v {
        Value::Bool(_) | Value::I8(_) | Value::U8(_) => 1,
        Value::I16(_) | Value::U16(_) => 2,
        Value::I32(_) | Value::U32(_) | Value::F32(_) => 4,
        Value::I64(_) | Value::F64(_) | Value::Timestamp(_) => 8,
        Value::Decimal { .. } => 5,
        Value::ShortString(s) => 1 + s.len(),
        Value::LongString(b) | Value::Bytes(b) => 4 + b.len(),
        Value::Array(a) => 4 + a.iter().map(|v| 1 + value_len(v)).sum::<usize>(),
        Value::Table(t) => table_len(t),
        Value::Void => 0,
    }
}

/// Err with a reason when `p` does not fit in one frame of `frame_max` bytes (0 = no limit).
pub fn check_fits(p: &Properties, frame_max: u32) -> Result<(), String> {
    let len = content_header_frame_len(p);
    if frame_max != 0 && len > frame_max as usize {
        return Err(format!(
            "the message's properties and headers take {len} bytes, more than the \
             connection's frame_max of {frame_max} bytes (AMQP cannot split them)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_properties_are_the_flags_word_only() {
        assert_eq!(properties_len(&Properties::default()), 2);
        assert_eq!(content_header_frame_len(&Properties::default()), 22);
    }

    #[test]
    fn sizes_add_up_per_field() {
        let mut h = FieldTable::new();
        h.insert("big".into(), Value::string("x".repeat(10)));
        h.insert("n".into(), Value::I64(1));
        h.insert("a".into(), Value::Array(vec![Value::I32(1), Value::Void]));
        let p = Properties {
            message_id: Some("edge".into()),
            delivery_mode: Some(2),
            headers: Some(h),
            ..Properties::default()
        };
        // table: 4 + (1+3+1+4+10) + (1+1+1+8) + (1+1+1+4+(1+4)+(1+0))
        let table = 4 + 19 + 11 + 13;
        assert_eq!(properties_len(&p), 2 + 5 + 1 + table);
    }

    #[test]
    fn too_large_properties_are_refused_with_a_reason() {
        let mut h = FieldTable::new();
        h.insert("big".into(), Value::string("x".repeat(200)));
        let p = Properties {
            headers: Some(h),
            ..Properties::default()
        };
        let len = content_header_frame_len(&p) as u32;
        assert!(check_fits(&p, len).is_ok());
        assert!(check_fits(&p, 0).is_ok());
        let err = check_fits(&p, len - 1).expect_err("one byte too many");
        assert!(err.contains("frame_max"), "{err}");
    }
}
