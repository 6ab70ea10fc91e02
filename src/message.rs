//! A dead-lettered message as dlqd holds it: AMQP properties, headers and body in
//! plain Rust types (no lapin, no serde), and the facts the rules match on.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// The prefix of dlqd's own delay queues; `x-death` entries for them are skipped.
pub const DELAY_QUEUE_PREFIX: &str = "dlqd.delay.";
/// Header holding how many times dlqd has retried the message.
pub const RETRIES_HEADER: &str = "x-dlqd-retries";
/// The `user_id` a message carried before dlqd published a copy of it as itself
/// (PUTAUT(DEF)); USERID matches it as the message's `user_id`.
pub const USER_ID_HEADER: &str = "x-dlqd-user-id";

/// One AMQP 0-9-1 field value, as RabbitMQ encodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    /// `b`: short-short int.
    I8(i8),
    /// `B`: short-short uint.
    U8(u8),
    /// `s`: short int.
    I16(i16),
    /// `u`: short uint.
    U16(u16),
    /// `I`: long int.
    I32(i32),
    /// `i`: long uint.
    U32(u32),
    /// `l`: long-long int.
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: value × 10^-scale.
    Decimal {
        scale: u8,
        value: u32,
    },
    /// `s` short string (not sent by RabbitMQ in headers, kept for completeness).
    ShortString(String),
    /// `S`: long string; bytes, not necessarily UTF-8.
    LongString(Vec<u8>),
    /// `A`
    Array(Vec<Value>),
    /// `T`: seconds since the epoch.
    Timestamp(u64),
    /// `F`
    Table(FieldTable),
    /// `x`
    Bytes(Vec<u8>),
    /// `V`
    Void,
}

/// An AMQP field table (header table). Ordered by key, as lapin's is.
pub type FieldTable = BTreeMap<String, Value>;

impl Value {
    /// The value as text for matching: strings decoded lossily, numbers in decimal,
    /// booleans as `true`/`false`; arrays and tables have no text (`None`).
    pub fn as_text(&self) -> Option<String> {
        Some(match self {
            Value::Bool(b) => b.to_string(),
            Value::I8(v) => v.to_string(),
            Value::U8(v) => v.to_string(),
            Value::I16(v) => v.to_string(),
            Value::U16(v) => v.to_string(),
            Value::I32(v) => v.to_string(),
            Value::U32(v) => v.to_string(),
            Value::I64(v) => v.to_string(),
            Value::F32(v) => v.to_string(),
            Value::F64(v) => v.to_string(),
            Value::Decimal { scale, value } => {
                let s = value.to_string();
                let scale = *scale as usize;
                if scale == 0 {
                    s
                } else if s.len() > scale {
                    format!("{}.{}", &s[..s.len() - scale], &s[s.len() - scale..])
                } else {
                    format!("0.{}{}", "0".repeat(scale - s.len()), s)
                }
            }
            Value::ShortString(s) => s.clone(),
            Value::LongString(b) | Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Value::Timestamp(t) => t.to_string(),
            Value::Void => String::new(),
            Value::Array(_) | Value::Table(_) => return None,
        })
    }

    /// The value as a string, when it is one (long or short string), borrowed when it
    /// is valid UTF-8 (the common case costs no allocation).
    pub fn as_str_cow(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::LongString(b) => Some(String::from_utf8_lossy(b)),
            Value::ShortString(s) => Some(Cow::Borrowed(s)),
            _ => None,
        }
    }

    /// The value as a string, when it is one (long or short string).
    pub fn as_str_lossy(&self) -> Option<String> {
        match self {
            Value::LongString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::ShortString(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The value as an unsigned integer, when it is any integer type that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::I8(v) => u64::try_from(v).ok(),
            Value::U8(v) => Some(v as u64),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::U16(v) => Some(v as u64),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::U32(v) => Some(v as u64),
            Value::I64(v) => u64::try_from(v).ok(),
            Value::Timestamp(v) => Some(v),
            _ => None,
        }
    }

    /// A long string from text.
    pub fn string(s: impl Into<String>) -> Value {
        Value::LongString(s.into().into_bytes())
    }
}

/// The AMQP basic properties of a message. Absent properties are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub headers: Option<FieldTable>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub expiration: Option<String>,
    pub message_id: Option<String>,
    pub timestamp: Option<u64>,
    pub message_type: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    pub cluster_id: Option<String>,
}

/// A message as delivered from a DLQ (or read from a capture).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// The exchange the DLQ delivery came through (the dead-letter exchange).
    pub exchange: String,
    /// The routing key of the DLQ delivery.
    pub routing_key: String,
    pub properties: Properties,
    pub body: Vec<u8>,
}

impl Message {
    /// A header, when present.
    pub fn header(&self, name: &str) -> Option<&Value> {
        self.properties.headers.as_ref()?.get(name)
    }
}
