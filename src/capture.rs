//! The capture format (§5): JSON Lines, one message per line, lossless for every AMQP
//! field type. The only module that knows JSON.
//!
//! A line is `{"exchange":..,"routing_key":..,"properties":{..},"body":".."}` with
//! `body_base64` instead of `body` when the body is not UTF-8. Properties use the AMQP
//! names (`content_type`, `delivery_mode`, `message_id`, `type`, `headers`, ...), absent
//! ones are left out. Header values are plain JSON where JSON is unambiguous:
//!
//! | AMQP | JSON |
//! |---|---|
//! | long string (UTF-8) | string |
//! | long-long (`l`) | integer |
//! | boolean | `true` / `false` |
//! | double (`d`), finite | number with a fraction or exponent (`1.0`, `2.5e-7`) |
//! | array | array |
//! | table (with no key `$type`) | object |
//!
//! Every other value is a typed object, `{"$type":T,"value":V}`: `i8`, `u8`, `i16`,
//! `u16`, `i32`, `u32` (V an integer), `f32` (V a number), `timestamp` (V seconds),
//! `shortstr` (V a string), `bytes` (V base64), `void` (no V; `null` is read as void
//! too), `decimal` (`{"$type":"decimal","scale":2,"value":12345}`), a non-UTF-8 long
//! string as `{"$type":"longstr","base64":"..."}`, and a table that has a key `$type`
//! as `{"$type":"table","value":{...}}`. Non-finite floats are typed too, with V one of
//! `"NaN"`, `"inf"`, `"-inf"` (`{"$type":"f64","value":"NaN"}`): every NaN is read back
//! as the standard quiet NaN (NaN payload bits are not kept). Typed forms are accepted
//! for every type on input (`{"$type":"i64","value":3}`, `{"$type":"longstr","value":"x"}`).
//!
//! Hand-written files may leave out any field (`{}` is an empty message). Unknown keys
//! are errors, so a misspelt property is not silently dropped. Every error names the line.

use std::io::{self, BufRead, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value as Json};

use crate::message::{FieldTable, Message, Properties, Value};

/// A capture line that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CaptureError {
    /// 1-based line in the capture.
    pub line: u64,
    pub message: String,
}

/// One message as one JSON line (without the trailing newline).
pub fn to_line(message: &Message) -> String {
    let mut buf = Vec::with_capacity(256 + message.body.len());
    // Writing into a Vec cannot fail, and every key we write is a string.
    let _ = write_json(&mut buf, message);
    String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Write one message as one JSON line, with the trailing newline.
pub fn write_line<W: Write>(out: &mut W, message: &Message) -> io::Result<()> {
    write_json(&mut *out, message)?;
    out.write_all(b"\n")
}

fn write_json<W: Write>(out: W, message: &Message) -> io::Result<()> {
    serde_json::to_writer(out, &LineSer(message)).map_err(io::Error::other)
}

/// One JSON line as a message. `line` is used in the error.
pub fn from_line(text: &str, line: u64) -> Result<Message, CaptureError> {
    let err = |message: String| CaptureError { line, message };
    let json: Json = serde_json::from_str(text).map_err(|e| err(format!("invalid JSON: {e}")))?;
    message_from_json(json).map_err(err)
}

/// Reads a capture stream message by message, with line numbers; blank lines are skipped,
/// and so is a UTF-8 byte-order mark at the start.
/// Memory is one line at a time.
pub struct Reader<R> {
    input: R,
    buf: String,
    line: u64,
    done: bool,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader {
            input,
            buf: String::new(),
            line: 0,
            done: false,
        }
    }

    /// The 1-based number of the line last read.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next non-blank line as text (borrowed until the next call), with its number.
    pub fn next_line(&mut self) -> Option<Result<(&str, u64), CaptureError>> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            self.line += 1;
            match self.input.read_line(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {
                    // A UTF-8 byte-order mark (some editors write one) is not part of
                    // the first line.
                    let start = if self.line == 1 && self.buf.starts_with('\u{feff}') {
                        '\u{feff}'.len_utf8()
                    } else {
                        0
                    };
                    if self.buf[start..].trim().is_empty() {
                        continue;
                    }
                    let text = self.buf[start..].trim_end_matches(['\n', '\r']);
                    return Some(Ok((text, self.line)));
                }
                Err(e) => {
                    self.done = true;
                    let message = if e.kind() == io::ErrorKind::InvalidData {
                        "not UTF-8 text".to_string()
                    } else {
                        format!("cannot read: {e}")
                    };
                    return Some(Err(CaptureError {
                        line: self.line,
                        message,
                    }));
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Message, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.next_line()? {
            Ok((text, line)) => from_line(text, line),
            Err(e) => Err(e),
        })
    }
}

// ---------------------------------------------------------------- writing

struct LineSer<'a>(&'a Message);
struct PropsSer<'a>(&'a Properties);
struct TableSer<'a>(&'a FieldTable);
struct PlainTableSer<'a>(&'a FieldTable);
struct ValueSer<'a>(&'a Value);
struct ArraySer<'a>(&'a [Value]);

impl Serialize for LineSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("exchange", &m.exchange)?;
        map.serialize_entry("routing_key", &m.routing_key)?;
        map.serialize_entry("properties", &PropsSer(&m.properties))?;
        match std::str::from_utf8(&m.body) {
            Ok(text) => map.serialize_entry("body", text)?,
            Err(_) => map.serialize_entry("body_base64", &B64.encode(&m.body))?,
        }
        map.end()
    }
}

impl Serialize for PropsSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = s.serialize_map(None)?;
        let strings = [
            ("content_type", &p.content_type),
            ("content_encoding", &p.content_encoding),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                map.serialize_entry(k, v)?;
            }
        }
        if let Some(h) = &p.headers {
            map.serialize_entry("headers", &TableSer(h))?;
        }
        if let Some(v) = p.delivery_mode {
            map.serialize_entry("delivery_mode", &v)?;
        }
        if let Some(v) = p.priority {
            map.serialize_entry("priority", &v)?;
        }
        let strings = [
            ("correlation_id", &p.correlation_id),
            ("reply_to", &p.reply_to),
            ("expiration", &p.expiration),
            ("message_id", &p.message_id),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                map.serialize_entry(k, v)?;
            }
        }
        if let Some(v) = p.timestamp {
            map.serialize_entry("timestamp", &v)?;
        }
        let strings = [
            ("type", &p.message_type),
            ("user_id", &p.user_id),
            ("app_id", &p.app_id),
            ("cluster_id", &p.cluster_id),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

impl Serialize for TableSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.contains_key("$type") {
            let mut map = s.serialize_map(Some(2))?;
            map.serialize_entry("$type", "table")?;
            map.serialize_entry("value", &PlainTableSer(self.0))?;
            map.end()
        } else {
            PlainTableSer(self.0).serialize(s)
        }
    }
}

impl Serialize for PlainTableSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, &ValueSer(v))?;
        }
        map.end()
    }
}

impl Serialize for ArraySer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(&ValueSer(v))?;
        }
        seq.end()
    }
}

fn typed<S: Serializer, V: Serialize + ?Sized>(s: S, ty: &str, v: &V) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(2))?;
    map.serialize_entry("$type", ty)?;
    map.serialize_entry("value", v)?;
    map.end()
}

/// A non-finite float's text, or `None` for a finite one.
fn non_finite(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some("NaN")
    } else if f == f64::INFINITY {
        Some("inf")
    } else if f == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

impl Serialize for ValueSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Bool(b) => s.serialize_bool(*b),
            Value::I8(v) => typed(s, "i8", v),
            Value::U8(v) => typed(s, "u8", v),
            Value::I16(v) => typed(s, "i16", v),
            Value::U16(v) => typed(s, "u16", v),
            Value::I32(v) => typed(s, "i32", v),
            Value::U32(v) => typed(s, "u32", v),
            Value::I64(v) => s.serialize_i64(*v),
            Value::F32(v) => match non_finite(*v as f64) {
                Some(t) => typed(s, "f32", t),
                None => typed(s, "f32", &(*v as f64)),
            },
            Value::F64(v) => match non_finite(*v) {
                Some(t) => typed(s, "f64", t),
                None => s.serialize_f64(*v),
            },
            Value::Decimal { scale, value } => {
                let mut map = s.serialize_map(Some(3))?;
                map.serialize_entry("$type", "decimal")?;
                map.serialize_entry("scale", scale)?;
                map.serialize_entry("value", value)?;
                map.end()
            }
            Value::ShortString(v) => typed(s, "shortstr", v),
            Value::LongString(b) => match std::str::from_utf8(b) {
                Ok(text) => s.serialize_str(text),
                Err(_) => {
                    let mut map = s.serialize_map(Some(2))?;
                    map.serialize_entry("$type", "longstr")?;
                    map.serialize_entry("base64", &B64.encode(b))?;
                    map.end()
                }
            },
            Value::Array(a) => ArraySer(a).serialize(s),
            Value::Timestamp(t) => typed(s, "timestamp", t),
            Value::Table(t) => TableSer(t).serialize(s),
            Value::Bytes(b) => typed(s, "bytes", &B64.encode(b)),
            Value::Void => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("$type", "void")?;
                map.end()
            }
        }
    }
}

// ---------------------------------------------------------------- reading

fn kind(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn message_from_json(json: Json) -> Result<Message, String> {
    let Json::Object(obj) = json else {
        return Err(format!("expected a JSON object, found {}", kind(&json)));
    };
    let mut m = Message::default();
    let mut body_seen = None::<&'static str>;
    for (k, v) in obj {
        match k.as_str() {
            "exchange" => m.exchange = string(v, "exchange")?.unwrap_or_default(),
            "routing_key" => m.routing_key = string(v, "routing_key")?.unwrap_or_default(),
            "properties" => m.properties = properties(v)?,
            "body" | "body_base64" => {
                let key: &'static str = if k == "body" { "body" } else { "body_base64" };
                if let Some(prev) = body_seen {
                    return Err(format!("both \"{prev}\" and \"{key}\" given"));
                }
                body_seen = Some(key);
                let text = string(v, key)?.unwrap_or_default();
                m.body = if key == "body" {
                    text.into_bytes()
                } else {
                    B64.decode(text.as_bytes())
                        .map_err(|e| format!("body_base64: invalid base64: {e}"))?
                };
            }
            other => {
                return Err(format!(
                    "unknown field \"{other}\" (expected exchange, routing_key, properties, body or body_base64)"
                ));
            }
        }
    }
    Ok(m)
}

fn string(v: Json, what: &str) -> Result<Option<String>, String> {
    match v {
        Json::Null => Ok(None),
        Json::String(s) => Ok(Some(s)),
        other => Err(format!("{what}: expected a string, found {}", kind(&other))),
    }
}

fn small_uint<T: TryFrom<u64>>(v: Json, what: &str) -> Result<Option<T>, String> {
    match v {
        Json::Null => Ok(None),
        Json::Number(n) => n
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{what}: {n} is out of range")),
        other => Err(format!(
            "{what}: expected an integer, found {}",
            kind(&other)
        )),
    }
}

fn properties(v: Json) -> Result<Properties, String> {
    let obj = match v {
        Json::Null => return Ok(Properties::default()),
        Json::Object(o) => o,
        other => {
            return Err(format!(
                "properties: expected an object, found {}",
                kind(&other)
            ));
        }
    };
    let mut p = Properties::default();
    for (k, v) in obj {
        let key = k.as_str();
        match key {
            "content_type" => p.content_type = string(v, key)?,
            "content_encoding" => p.content_encoding = string(v, key)?,
            "correlation_id" => p.correlation_id = string(v, key)?,
            "reply_to" => p.reply_to = string(v, key)?,
            "expiration" => p.expiration = string(v, key)?,
            "message_id" => p.message_id = string(v, key)?,
            "type" | "message_type" => p.message_type = string(v, key)?,
            "user_id" => p.user_id = string(v, key)?,
            "app_id" => p.app_id = string(v, key)?,
            "cluster_id" => p.cluster_id = string(v, key)?,
            "delivery_mode" => p.delivery_mode = small_uint(v, key)?,
            "priority" => p.priority = small_uint(v, key)?,
            "timestamp" => {
                p.timestamp = match v {
                    Json::Object(_) => match value(v, "properties.timestamp")? {
                        Value::Timestamp(t) => Some(t),
                        other => other
                            .as_u64()
                            .map(Some)
                            .ok_or_else(|| "properties.timestamp: expected seconds".to_string())?,
                    },
                    v => small_uint(v, "properties.timestamp")?,
                }
            }
            "headers" => {
                p.headers = match v {
                    Json::Null => None,
                    v => match value(v, "headers")? {
                        Value::Table(t) => Some(t),
                        other => {
                            return Err(format!(
                                "headers: expected an object (a table), found {other:?}"
                            ));
                        }
                    },
                }
            }
            other => {
                return Err(format!(
                    "unknown property \"{other}\" (expected content_type, content_encoding, \
                     headers, delivery_mode, priority, correlation_id, reply_to, expiration, \
                     message_id, timestamp, type, user_id, app_id or cluster_id)"
                ));
            }
        }
    }
    Ok(p)
}

fn table(obj: Map<String, Json>, path: &str) -> Result<FieldTable, String> {
    let mut t = FieldTable::new();
    for (k, v) in obj {
        let sub = format!("{path}.{k}");
        let val = value(v, &sub)?;
        t.insert(k, val);
    }
    Ok(t)
}

/// A header value from JSON; `path` (like `headers.x-death[0].count`) names it in errors.
fn value(j: Json, path: &str) -> Result<Value, String> {
    Ok(match j {
        Json::Null => Value::Void,
        Json::Bool(b) => Value::Bool(b),
        Json::String(s) => Value::LongString(s.into_bytes()),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::I64(i)
            } else if n.is_u64() {
                return Err(format!(
                    "{path}: {n} does not fit a long-long (signed 64-bit) integer"
                ));
            } else {
                match n.as_f64() {
                    Some(f) => Value::F64(f),
                    None => return Err(format!("{path}: {n} is not a number dlqd can hold")),
                }
            }
        }
        Json::Array(a) => Value::Array(
            a.into_iter()
                .enumerate()
                .map(|(i, v)| value(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(mut o) => match o.remove("$type") {
            None => Value::Table(table(o, path)?),
            Some(Json::String(ty)) => typed_value(&ty, o, path)?,
            Some(other) => {
                return Err(format!(
                    "{path}: \"$type\" must be a string, found {}",
                    kind(&other)
                ));
            }
        },
    })
}

fn typed_value(ty: &str, mut o: Map<String, Json>, path: &str) -> Result<Value, String> {
    let mut take = |key: &str| {
        o.remove(key)
            .ok_or_else(|| format!("{path}: {{\"$type\":\"{ty}\"}} needs \"{key}\""))
    };
    fn int<T: TryFrom<i128>>(v: Json, path: &str, ty: &str) -> Result<T, String> {
        let n: Option<i128> = match &v {
            Json::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from)),
            _ => None,
        };
        n.and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| format!("{path}: {v} is not a valid {ty}"))
    }
    fn float(v: Json, path: &str, ty: &str) -> Result<f64, String> {
        match &v {
            Json::Number(n) => n.as_f64(),
            Json::String(s) => match s.as_str() {
                "NaN" | "nan" => Some(f64::NAN),
                "inf" | "Infinity" | "+inf" => Some(f64::INFINITY),
                "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| format!("{path}: {v} is not a valid {ty}"))
    }
    fn text(v: Json, path: &str, ty: &str) -> Result<String, String> {
        match v {
            Json::String(s) => Ok(s),
            other => Err(format!(
                "{path}: {ty} value must be a string, found {}",
                kind(&other)
            )),
        }
    }
    fn b64(v: Json, path: &str, ty: &str) -> Result<Vec<u8>, String> {
        B64.decode(text(v, path, ty)?.as_bytes())
            .map_err(|e| format!("{path}: invalid base64: {e}"))
    }
    Ok(match ty {
        "i8" => Value::I8(int(take("value")?, path, ty)?),
        "u8" => Value::U8(int(take("value")?, path, ty)?),
        "i16" => Value::I16(int(take("value")?, path, ty)?),
        "u16" => Value::U16(int(take("value")?, path, ty)?),
        "i32" => Value::I32(int(take("value")?, path, ty)?),
        "u32" => Value::U32(int(take("value")?, path, ty)?),
        "i64" => Value::I64(int(take("value")?, path, ty)?),
        "timestamp" => Value::Timestamp(int(take("value")?, path, ty)?),
        "f32" => Value::F32(float(take("value")?, path, ty)? as f32),
        "f64" => Value::F64(float(take("value")?, path, ty)?),
        "decimal" => Value::Decimal {
            scale: int(take("scale")?, path, "decimal scale")?,
            value: int(take("value")?, path, "decimal value")?,
        },
        "bool" => match take("value")? {
            Json::Bool(b) => Value::Bool(b),
            other => return Err(format!("{path}: {other} is not a valid bool")),
        },
        "shortstr" => Value::ShortString(text(take("value")?, path, ty)?),
        "longstr" => match (o.remove("base64"), o.remove("value")) {
            (Some(b), None) => Value::LongString(b64(b, path, ty)?),
            (None, Some(v)) => Value::LongString(text(v, path, ty)?.into_bytes()),
            _ => {
                return Err(format!(
                    "{path}: {{\"$type\":\"longstr\"}} needs exactly one of \"value\" or \"base64\""
                ));
            }
        },
        "bytes" => Value::Bytes(b64(take("value")?, path, ty)?),
        "void" => Value::Void,
        "array" => match take("value")? {
            a @ Json::Array(_) => value(a, path)?,
            other => {
                return Err(format!(
                    "{path}: array value must be an array, found {}",
                    kind(&other)
                ));
            }
        },
        "table" => match take("value")? {
            Json::Object(t) => Value::Table(table(t, path)?),
            other => {
                return Err(format!(
                    "{path}: table value must be an object, found {}",
                    kind(&other)
                ));
            }
        },
        other => {
            return Err(format!(
                "{path}: unknown $type \"{other}\" (expected i8, u8, i16, u16, i32, u32, i64, f32, \
                 f64, decimal, bool, shortstr, longstr, bytes, timestamp, void, array or table)"
            ));
        }
    })
}

#[cfg(test)]
mod tests;
