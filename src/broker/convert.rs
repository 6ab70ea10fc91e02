//! Conversion between lapin's types (BasicProperties, FieldTable, AMQPValue) and dlqd's
//! own [`Message`]/[`Properties`]/[`Value`], lossless both ways. Strings stay bytes.

use lapin::BasicProperties;
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable as AmqpTable, LongString,
    ShortString,
};

use crate::message::{FieldTable, Message, Properties, Value};

/// A value that AMQP cannot carry (a short string over 255 bytes).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConvertError {
    #[error("{field} is {len} bytes long; AMQP allows at most 255")]
    TooLong { field: String, len: usize },
}

/// A delivered message (exchange, routing key, properties, body) as a [`Message`].
pub fn message_from_amqp(
    exchange: &str,
    routing_key: &str,
    properties: &BasicProperties,
    body: Vec<u8>,
) -> Message {
    Message {
        exchange: exchange.to_string(),
        routing_key: routing_key.to_string(),
        properties: properties_from_amqp(properties),
        body,
    }
}

fn short(s: &Option<ShortString>) -> Option<String> {
    s.as_ref().map(|s| s.as_str().to_string())
}

/// lapin's properties as dlqd's.
pub fn properties_from_amqp(p: &BasicProperties) -> Properties {
    Properties {
        content_type: short(p.content_type()),
        content_encoding: short(p.content_encoding()),
        headers: p.headers().as_ref().map(table_from_amqp),
        delivery_mode: *p.delivery_mode(),
        priority: *p.priority(),
        correlation_id: short(p.correlation_id()),
        reply_to: short(p.reply_to()),
        expiration: short(p.expiration()),
        message_id: short(p.message_id()),
        timestamp: *p.timestamp(),
        message_type: short(p.kind()),
        user_id: short(p.user_id()),
        app_id: short(p.app_id()),
        cluster_id: short(p.cluster_id()),
    }
}

/// A lapin field table as dlqd's.
pub fn table_from_amqp(t: &AmqpTable) -> FieldTable {
    t.inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), value_from_amqp(v)))
        .collect()
}

/// One AMQP value as dlqd's.
pub fn value_from_amqp(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(x) => Value::I8(*x),
        AMQPValue::ShortShortUInt(x) => Value::U8(*x),
        AMQPValue::ShortInt(x) => Value::I16(*x),
        AMQPValue::ShortUInt(x) => Value::U16(*x),
        AMQPValue::LongInt(x) => Value::I32(*x),
        AMQPValue::LongUInt(x) => Value::U32(*x),
        AMQPValue::LongLongInt(x) => Value::I64(*x),
        AMQPValue::Float(x) => Value::F32(*x),
        AMQPValue::Double(x) => Value::F64(*x),
        AMQPValue::DecimalValue(d) => Value::Decimal {
            scale: d.scale,
            value: d.value,
        },
        AMQPValue::ShortString(s) => Value::ShortString(s.as_str().to_string()),
        AMQPValue::LongString(s) => Value::LongString(s.as_bytes().to_vec()),
        AMQPValue::FieldArray(a) => {
            Value::Array(a.as_slice().iter().map(value_from_amqp).collect())
        }
        AMQPValue::Timestamp(t) => Value::Timestamp(*t),
        AMQPValue::FieldTable(t) => Value::Table(table_from_amqp(t)),
        AMQPValue::ByteArray(b) => Value::Bytes(b.as_slice().to_vec()),
        AMQPValue::Void => Value::Void,
    }
}

fn to_short(field: &str, s: &str) -> Result<ShortString, ConvertError> {
    ShortString::try_new(s).map_err(|_| ConvertError::TooLong {
        field: field.to_string(),
        len: s.len(),
    })
}

fn opt_short(field: &str, s: &Option<String>) -> Result<Option<ShortString>, ConvertError> {
    s.as_deref().map(|s| to_short(field, s)).transpose()
}

/// dlqd's properties as lapin's.
pub fn properties_to_amqp(p: &Properties) -> Result<BasicProperties, ConvertError> {
    let mut out = BasicProperties::default();
    if let Some(v) = opt_short("content_type", &p.content_type)? {
        out = out.with_content_type(v);
    }
    if let Some(v) = opt_short("content_encoding", &p.content_encoding)? {
        out = out.with_content_encoding(v);
    }
    if let Some(h) = &p.headers {
        out = out.with_headers(table_to_amqp(h)?);
    }
    if let Some(v) = p.delivery_mode {
        out = out.with_delivery_mode(v);
    }
    if let Some(v) = p.priority {
        out = out.with_priority(v);
    }
    if let Some(v) = opt_short("correlation_id", &p.correlation_id)? {
        out = out.with_correlation_id(v);
    }
    if let Some(v) = opt_short("reply_to", &p.reply_to)? {
        out = out.with_reply_to(v);
    }
    if let Some(v) = opt_short("expiration", &p.expiration)? {
        out = out.with_expiration(v);
    }
    if let Some(v) = opt_short("message_id", &p.message_id)? {
        out = out.with_message_id(v);
    }
    if let Some(v) = p.timestamp {
        out = out.with_timestamp(v);
    }
    if let Some(v) = opt_short("type", &p.message_type)? {
        out = out.with_type(v);
    }
    if let Some(v) = opt_short("user_id", &p.user_id)? {
        out = out.with_user_id(v);
    }
    if let Some(v) = opt_short("app_id", &p.app_id)? {
        out = out.with_app_id(v);
    }
    if let Some(v) = opt_short("cluster_id", &p.cluster_id)? {
        out = out.with_cluster_id(v);
    }
    Ok(out)
}

/// dlqd's field table as lapin's.
pub fn table_to_amqp(t: &FieldTable) -> Result<AmqpTable, ConvertError> {
    let mut out = AmqpTable::default();
    for (k, v) in t {
        out.insert(to_short("header name", k)?, value_to_amqp(v)?);
    }
    Ok(out)
}

/// One dlqd value as an AMQP value.
pub fn value_to_amqp(v: &Value) -> Result<AMQPValue, ConvertError> {
    Ok(match v {
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::I8(x) => AMQPValue::ShortShortInt(*x),
        Value::U8(x) => AMQPValue::ShortShortUInt(*x),
        Value::I16(x) => AMQPValue::ShortInt(*x),
        Value::U16(x) => AMQPValue::ShortUInt(*x),
        Value::I32(x) => AMQPValue::LongInt(*x),
        Value::U32(x) => AMQPValue::LongUInt(*x),
        Value::I64(x) => AMQPValue::LongLongInt(*x),
        Value::F32(x) => AMQPValue::Float(*x),
        Value::F64(x) => AMQPValue::Double(*x),
        Value::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue {
            scale: *scale,
            value: *value,
        }),
        Value::ShortString(s) => AMQPValue::ShortString(to_short("short string value", s)?),
        Value::LongString(b) => AMQPValue::LongString(LongString::from(b.clone())),
        Value::Array(a) => AMQPValue::FieldArray(FieldArray::from(
            a.iter().map(value_to_amqp).collect::<Result<Vec<_>, _>>()?,
        )),
        Value::Timestamp(t) => AMQPValue::Timestamp(*t),
        Value::Table(t) => AMQPValue::FieldTable(table_to_amqp(t)?),
        Value::Bytes(b) => AMQPValue::ByteArray(ByteArray::from(b.clone())),
        Value::Void => AMQPValue::Void,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_value() -> Value {
        let mut inner = FieldTable::new();
        inner.insert("queue".into(), Value::string("orders"));
        inner.insert("count".into(), Value::I64(3));
        Value::Array(vec![
            Value::Bool(true),
            Value::I8(-8),
            Value::U8(8),
            Value::I16(-16),
            Value::U16(16),
            Value::I32(-32),
            Value::U32(32),
            Value::I64(-64),
            Value::F32(1.5),
            Value::F64(-2.25),
            Value::Decimal {
                scale: 2,
                value: 12345,
            },
            Value::ShortString("short".into()),
            Value::LongString(vec![0xff, 0x00, b'a']),
            Value::Array(vec![]),
            Value::Timestamp(1_700_000_000),
            Value::Table(inner),
            Value::Bytes(vec![1, 2, 3]),
            Value::Void,
        ])
    }

    fn full_properties() -> Properties {
        let mut headers = FieldTable::new();
        headers.insert("x-death".into(), every_value());
        headers.insert("x-dlqd-retries".into(), Value::I64(2));
        headers.insert("non-utf8".into(), Value::LongString(vec![0xc3, 0x28]));
        Properties {
            content_type: Some("application/json".into()),
            content_encoding: Some("gzip".into()),
            headers: Some(headers),
            delivery_mode: Some(2),
            priority: Some(7),
            correlation_id: Some("corr".into()),
            reply_to: Some("replies".into()),
            expiration: Some("60000".into()),
            message_id: Some("42".into()),
            timestamp: Some(1_700_000_001),
            message_type: Some("order.created".into()),
            user_id: Some("guest".into()),
            app_id: Some("shop".into()),
            cluster_id: Some("c1".into()),
        }
    }

    #[test]
    fn properties_round_trip_through_lapin() {
        for p in [full_properties(), Properties::default()] {
            let amqp = properties_to_amqp(&p).expect("convertible");
            assert_eq!(properties_from_amqp(&amqp), p);
        }
    }

    #[test]
    fn values_round_trip_through_lapin() {
        let v = every_value();
        assert_eq!(value_from_amqp(&value_to_amqp(&v).expect("convertible")), v);
    }

    #[test]
    fn lapin_values_round_trip_through_dlqd() {
        let v = value_to_amqp(&every_value()).expect("convertible");
        assert_eq!(value_to_amqp(&value_from_amqp(&v)).expect("convertible"), v);
    }

    #[test]
    fn long_strings_stay_bytes() {
        let v = AMQPValue::LongString(LongString::from(vec![0xff, 0xfe]));
        assert_eq!(value_from_amqp(&v), Value::LongString(vec![0xff, 0xfe]));
    }

    #[test]
    fn message_from_delivery_parts() {
        let p = properties_to_amqp(&full_properties()).expect("convertible");
        let m = message_from_amqp("dlx", "orders", &p, b"body".to_vec());
        assert_eq!(m.exchange, "dlx");
        assert_eq!(m.routing_key, "orders");
        assert_eq!(m.properties, full_properties());
        assert_eq!(m.body, b"body");
    }

    #[test]
    fn over_long_short_strings_are_errors_not_panics() {
        let p = Properties {
            message_id: Some("x".repeat(256)),
            ..Properties::default()
        };
        assert_eq!(
            properties_to_amqp(&p).expect_err("too long"),
            ConvertError::TooLong {
                field: "message_id".into(),
                len: 256
            }
        );
        let mut h = FieldTable::new();
        h.insert("k".repeat(300), Value::Void);
        assert!(table_to_amqp(&h).is_err());
    }
}
