//! A tiny AMQP 0-9-1 publisher over a plain `std::net::TcpStream`, written frame by
//! frame: for the messages lapin cannot publish because its types cannot hold them — a
//! short-string property (message_id, content_type, ...) whose bytes are not UTF-8
//! (lapin's `ShortString` is a `String`), a header name that is not UTF-8, a routing key
//! that is not UTF-8 — and for reading such messages back byte for byte, which lapin
//! cannot do either (it drops the connection at the first one). It speaks just enough
//! of the protocol: PLAIN login, one channel, publisher confirms, `basic.publish` with
//! `mandatory` ([`publish`]: every message confirmed before the next, so the queue's order
//! is the order given), `basic.get` ([`peek`]: everything read, then handed back in order
//! by closing the channel) and a verbatim move of a queue's first message ([`move_first`]:
//! its content header re-sent as received, confirmed, then acknowledged). amqp:// only (no
//! TLS); no heartbeats (each connection lives a moment).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The short-string properties of a message (AMQP 0-9-1 basic class), in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Prop {
    ContentType,
    ContentEncoding,
    CorrelationId,
    ReplyTo,
    Expiration,
    MessageId,
    Type,
    UserId,
    AppId,
    ClusterId,
}

impl Prop {
    /// Every short-string property.
    pub const ALL: [Prop; 10] = [
        Prop::ContentType,
        Prop::ContentEncoding,
        Prop::CorrelationId,
        Prop::ReplyTo,
        Prop::Expiration,
        Prop::MessageId,
        Prop::Type,
        Prop::UserId,
        Prop::AppId,
        Prop::ClusterId,
    ];

    /// Its bit in the property flags.
    fn flag(self) -> u16 {
        1 << match self {
            Prop::ContentType => 15,
            Prop::ContentEncoding => 14,
            Prop::CorrelationId => 10,
            Prop::ReplyTo => 9,
            Prop::Expiration => 8,
            Prop::MessageId => 7,
            Prop::Type => 5,
            Prop::UserId => 4,
            Prop::AppId => 3,
            Prop::ClusterId => 2,
        }
    }

    /// Its AMQP name.
    pub fn name(self) -> &'static str {
        match self {
            Prop::ContentType => "content_type",
            Prop::ContentEncoding => "content_encoding",
            Prop::CorrelationId => "correlation_id",
            Prop::ReplyTo => "reply_to",
            Prop::Expiration => "expiration",
            Prop::MessageId => "message_id",
            Prop::Type => "type",
            Prop::UserId => "user_id",
            Prop::AppId => "app_id",
            Prop::ClusterId => "cluster_id",
        }
    }
}

const FLAG_HEADERS: u16 = 1 << 13;
const FLAG_DELIVERY_MODE: u16 = 1 << 12;

/// One message to publish, every text field as raw bytes.
#[derive(Debug, Clone, Default)]
pub struct RawMessage {
    /// The exchange ("" is the default exchange).
    pub exchange: Vec<u8>,
    pub routing_key: Vec<u8>,
    /// Short-string properties, any bytes (at most 255 each).
    pub properties: Vec<(Prop, Vec<u8>)>,
    /// The headers: (name, long-string value) pairs, any bytes.
    pub headers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    pub delivery_mode: Option<u8>,
    pub body: Vec<u8>,
}

impl RawMessage {
    /// A persistent message for `queue` through the default exchange.
    pub fn to_queue(queue: &str, body: &[u8]) -> RawMessage {
        RawMessage {
            routing_key: queue.as_bytes().to_vec(),
            delivery_mode: Some(2),
            body: body.to_vec(),
            ..RawMessage::default()
        }
    }

    /// With this short-string property (raw bytes).
    pub fn with(mut self, prop: Prop, value: &[u8]) -> RawMessage {
        self.properties.retain(|(p, _)| *p != prop);
        self.properties.push((prop, value.to_vec()));
        self
    }

    /// With this header (a long string; name and value raw bytes).
    pub fn with_header(mut self, name: &[u8], value: &[u8]) -> RawMessage {
        self.headers
            .get_or_insert_with(Vec::new)
            .push((name.to_vec(), value.to_vec()));
        self
    }
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn shortstr(out: &mut Vec<u8>, s: &[u8]) -> io::Result<()> {
    let n = u8::try_from(s.len()).map_err(|_| other("short string over 255 bytes"))?;
    out.push(n);
    out.extend_from_slice(s);
    Ok(())
}

fn longstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn method(class: u16, id: u16, args: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + args.len());
    p.extend_from_slice(&class.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(args);
    p
}

/// One frame as read: type, channel, payload.
struct Frame {
    kind: u8,
    channel: u16,
    payload: Vec<u8>,
}

impl Frame {
    fn method(&self) -> Option<(u16, u16)> {
        (self.kind == 1 && self.payload.len() >= 4).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                u16::from_be_bytes([self.payload[2], self.payload[3]]),
            )
        })
    }

    /// The reply code and text of a channel.close or connection.close.
    fn close_reason(&self) -> String {
        let a = &self.payload[4..];
        if a.len() < 3 {
            return "closed".into();
        }
        let code = u16::from_be_bytes([a[0], a[1]]);
        let n = a[2] as usize;
        let text = String::from_utf8_lossy(&a[3..(3 + n).min(a.len())]).into_owned();
        format!("{code} {text}")
    }
}

struct Conn {
    sock: TcpStream,
    frame_max: u32,
}

impl Conn {
    fn send(&mut self, kind: u8, channel: u16, payload: &[u8]) -> io::Result<()> {
        let mut f = Vec::with_capacity(8 + payload.len());
        f.push(kind);
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.push(0xce);
        self.sock.write_all(&f)
    }

    fn read(&mut self) -> io::Result<Frame> {
        let mut head = [0u8; 7];
        self.sock.read_exact(&mut head)?;
        if &head == b"AMQP\0\0\x09" {
            return Err(other("the broker refused the protocol header"));
        }
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut payload = vec![0u8; size + 1];
        self.sock.read_exact(&mut payload)?;
        if payload.pop() != Some(0xce) {
            return Err(other("bad frame end"));
        }
        Ok(Frame {
            kind: head[0],
            channel: u16::from_be_bytes([head[1], head[2]]),
            payload,
        })
    }

    /// The next method frame (heartbeats skipped); a close from the broker is an error.
    fn expect(&mut self, class: u16, id: u16) -> io::Result<Frame> {
        loop {
            let f = self.read()?;
            match f.method() {
                None if f.kind == 8 => continue,
                Some(m) if m == (class, id) => return Ok(f),
                Some((10, 50)) => {
                    return Err(other(format!(
                        "the broker closed the connection: {}",
                        f.close_reason()
                    )));
                }
                Some((20, 40)) => {
                    return Err(other(format!(
                        "the broker closed the channel: {}",
                        f.close_reason()
                    )));
                }
                other_frame => {
                    return Err(other(format!(
                        "expected method {class}.{id}, got {other_frame:?} (frame type {})",
                        f.kind
                    )));
                }
            }
        }
    }

    fn publish(&mut self, m: &RawMessage) -> io::Result<()> {
        let mut args = Vec::new();
        args.extend_from_slice(&0u16.to_be_bytes());
        shortstr(&mut args, &m.exchange)?;
        shortstr(&mut args, &m.routing_key)?;
        args.push(0b01); // mandatory
        self.send(1, 1, &method(60, 40, &args))?;

        let mut flags = 0u16;
        let mut props = Vec::new();
        let value = |p: Prop| m.properties.iter().find(|(q, _)| *q == p).map(|(_, v)| v);
        for p in [Prop::ContentType, Prop::ContentEncoding] {
            if let Some(v) = value(p) {
                flags |= p.flag();
                shortstr(&mut props, v)?;
            }
        }
        if let Some(h) = &m.headers {
            flags |= FLAG_HEADERS;
            let mut t = Vec::new();
            for (k, v) in h {
                shortstr(&mut t, k)?;
                t.push(b'S');
                longstr(&mut t, v);
            }
            longstr(&mut props, &t);
        }
        if let Some(d) = m.delivery_mode {
            flags |= FLAG_DELIVERY_MODE;
            props.push(d);
        }
        for p in [
            Prop::CorrelationId,
            Prop::ReplyTo,
            Prop::Expiration,
            Prop::MessageId,
        ] {
            if let Some(v) = value(p) {
                flags |= p.flag();
                shortstr(&mut props, v)?;
            }
        }
        for p in [Prop::Type, Prop::UserId, Prop::AppId, Prop::ClusterId] {
            if let Some(v) = value(p) {
                flags |= p.flag();
                shortstr(&mut props, v)?;
            }
        }
        let mut header = Vec::new();
        header.extend_from_slice(&60u16.to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(m.body.len() as u64).to_be_bytes());
        header.extend_from_slice(&flags.to_be_bytes());
        header.extend_from_slice(&props);
        self.send(2, 1, &header)?;
        let chunk = (self.frame_max as usize).saturating_sub(8).max(1);
        for part in m.body.chunks(chunk) {
            self.send(3, 1, part)?;
        }
        Ok(())
    }
}

/// Log in to the broker at `url` (amqp://) and open channel 1.
fn open(url: &str) -> io::Result<Conn> {
    let uri: lapin::uri::AMQPUri = url.parse().map_err(|e: String| other(e))?;
    if uri.scheme != lapin::uri::AMQPScheme::AMQP {
        return Err(other("raw_amqp speaks amqp:// only"));
    }
    let sock = TcpStream::connect((uri.authority.host.as_str(), uri.authority.port))?;
    sock.set_read_timeout(Some(Duration::from_secs(15)))?;
    sock.set_nodelay(true)?;
    let mut c = Conn {
        sock,
        frame_max: 4096,
    };
    c.sock.write_all(b"AMQP\0\0\x09\x01")?;
    c.expect(10, 10)?; // connection.start
    let user = &uri.authority.userinfo;
    let mut args = Vec::new();
    longstr(&mut args, &[]); // client-properties: an empty table
    shortstr(&mut args, b"PLAIN")?;
    let response = format!("\0{}\0{}", user.username, user.password);
    longstr(&mut args, response.as_bytes());
    shortstr(&mut args, b"en_US")?;
    c.send(1, 0, &method(10, 11, &args))?;
    let tune = c.expect(10, 30)?;
    let a = &tune.payload[4..];
    let channel_max = u16::from_be_bytes([a[0], a[1]]);
    let frame_max = u32::from_be_bytes([a[2], a[3], a[4], a[5]]);
    c.frame_max = if frame_max == 0 { 131_072 } else { frame_max };
    let mut args = Vec::new();
    args.extend_from_slice(&channel_max.to_be_bytes());
    args.extend_from_slice(&c.frame_max.to_be_bytes());
    args.extend_from_slice(&0u16.to_be_bytes()); // no heartbeats
    c.send(1, 0, &method(10, 31, &args))?;
    let mut args = Vec::new();
    shortstr(&mut args, uri.vhost.as_bytes())?;
    shortstr(&mut args, b"")?;
    args.push(0);
    c.send(1, 0, &method(10, 40, &args))?;
    c.expect(10, 41)?; // connection.open-ok
    c.send(1, 1, &method(20, 10, &[0]))?; // channel.open
    c.expect(20, 11)?;
    Ok(c)
}

impl Conn {
    fn confirm_select(&mut self) -> io::Result<()> {
        self.send(1, 1, &method(85, 10, &[0]))?;
        self.expect(85, 11).map(drop)
    }

    /// Wait for the confirm of publish number `tag` (1-based, on this channel).
    fn confirmed(&mut self, tag: u64) -> io::Result<()> {
        loop {
            let f = self.read()?;
            match f.method() {
                Some((60, 80)) => {
                    let a = &f.payload[4..];
                    let acked = u64::from_be_bytes(a[..8].try_into().expect("8 bytes"));
                    if acked >= tag {
                        return Ok(());
                    }
                }
                Some((60, 120)) => return Err(other(format!("publish {tag} nacked"))),
                Some((60, 50)) => {
                    return Err(other(format!(
                        "publish {tag} returned: {}",
                        f.close_reason()
                    )));
                }
                Some((10, 50)) => {
                    return Err(other(format!(
                        "the broker closed the connection at publish {tag}: {}",
                        f.close_reason()
                    )));
                }
                Some((20, 40)) => {
                    return Err(other(format!(
                        "the broker closed the channel at publish {tag}: {}",
                        f.close_reason()
                    )));
                }
                _ => {} // heartbeats, a returned message's header and body
            }
        }
    }

    /// `basic.get` one message (unacknowledged): its delivery tag and contents, or None.
    fn get(&mut self, queue: &str) -> io::Result<Option<(u64, RawGot)>> {
        let mut args = Vec::new();
        args.extend_from_slice(&0u16.to_be_bytes());
        shortstr(&mut args, queue.as_bytes())?;
        args.push(0); // no-ack = false
        self.send(1, 1, &method(60, 70, &args))?;
        let f = loop {
            let f = self.read()?;
            match f.method() {
                Some((60, 71)) => break f,
                Some((60, 72)) => return Ok(None),
                Some((10, 50)) | Some((20, 40)) => {
                    return Err(other(format!("basic.get {queue}: {}", f.close_reason())));
                }
                _ => {}
            }
        };
        let a = &f.payload[4..];
        let tag = u64::from_be_bytes(a[..8].try_into().expect("8 bytes"));
        let redelivered = a[8] & 1 == 1;
        let mut r = Reader(&a[9..]);
        let exchange = r.shortstr()?;
        let routing_key = r.shortstr()?;
        let h = self.read()?;
        if h.kind != 2 {
            return Err(other("expected a content header after basic.get-ok"));
        }
        let mut r = Reader(&h.payload[4..]);
        let size = r.u64()? as usize;
        let properties = parse_properties(&mut r)?;
        let mut body = Vec::with_capacity(size);
        while body.len() < size {
            let b = self.read()?;
            if b.kind != 3 {
                return Err(other("expected a body frame"));
            }
            body.extend_from_slice(&b.payload);
        }
        Ok(Some((
            tag,
            RawGot {
                redelivered,
                exchange,
                routing_key,
                properties: properties.0,
                headers: properties.1,
                content_header: h.payload,
                body,
            },
        )))
    }

    fn close(mut self) {
        let _ = self.send(1, 0, &method(10, 50, &[0, 200, 2, b'o', b'k', 0, 0, 0, 0]));
        let _ = self.expect(10, 51);
    }
}

/// A message as read by [`peek`] or [`move_first`], every field as the broker sent it.
#[derive(Debug, Clone)]
pub struct RawGot {
    pub redelivered: bool,
    pub exchange: Vec<u8>,
    pub routing_key: Vec<u8>,
    /// The short-string properties present, raw bytes.
    pub properties: Vec<(Prop, Vec<u8>)>,
    /// The headers table as encoded (without its length), if present.
    pub headers: Option<Vec<u8>>,
    /// The whole content header frame payload (class, weight, size, flags, properties).
    pub content_header: Vec<u8>,
    pub body: Vec<u8>,
}

impl RawGot {
    /// A short-string property's bytes.
    pub fn prop(&self, p: Prop) -> Option<&[u8]> {
        self.properties
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, v)| v.as_slice())
    }

    /// The message id, lossily as text ("" when it has none): for assertion messages.
    pub fn id_lossy(&self) -> String {
        String::from_utf8_lossy(self.prop(Prop::MessageId).unwrap_or_default()).into_owned()
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(other("truncated frame"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> io::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> io::Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn shortstr(&mut self) -> io::Result<Vec<u8>> {
        let n = self.u8()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// Short-string properties and the encoded headers table, as read.
type Properties = (Vec<(Prop, Vec<u8>)>, Option<Vec<u8>>);

/// The properties after class, weight and body size: short strings raw, headers raw.
fn parse_properties(r: &mut Reader) -> io::Result<Properties> {
    let flags = r.u16()?;
    let has = |bit: u16| flags & (1 << bit) != 0;
    let mut props = Vec::new();
    let mut headers = None;
    for p in [Prop::ContentType, Prop::ContentEncoding] {
        if flags & p.flag() != 0 {
            props.push((p, r.shortstr()?));
        }
    }
    if flags & FLAG_HEADERS != 0 {
        let n = r.u32()? as usize;
        headers = Some(r.take(n)?.to_vec());
    }
    if has(12) {
        r.u8()?; // delivery mode
    }
    if has(11) {
        r.u8()?; // priority
    }
    for p in [
        Prop::CorrelationId,
        Prop::ReplyTo,
        Prop::Expiration,
        Prop::MessageId,
    ] {
        if flags & p.flag() != 0 {
            props.push((p, r.shortstr()?));
        }
    }
    if has(6) {
        r.u64()?; // timestamp
    }
    for p in [Prop::Type, Prop::UserId, Prop::AppId, Prop::ClusterId] {
        if flags & p.flag() != 0 {
            props.push((p, r.shortstr()?));
        }
    }
    Ok((props, headers))
}

/// Publish `messages` in order on one connection to the broker at `url` (amqp://), each
/// with `mandatory` and confirmed by the broker before the next is sent. An error when
/// the broker returns one (unroutable), nacks one, or closes the channel or connection
/// (with its code and text).
pub fn publish(url: &str, messages: &[RawMessage]) -> io::Result<()> {
    let mut c = open(url)?;
    c.confirm_select()?;
    for (i, m) in messages.iter().enumerate() {
        c.publish(m)?;
        c.confirmed(i as u64 + 1)?;
    }
    c.close();
    Ok(())
}

/// Every message of `queue`, read with `basic.get` and handed back (the channel closed
/// with them unacknowledged: the broker requeues them in their order, marked
/// redelivered). Byte for byte, whatever lapin could not parse.
pub fn peek(url: &str, queue: &str) -> io::Result<Vec<RawGot>> {
    let mut c = open(url)?;
    let mut out = Vec::new();
    while let Some((_, m)) = c.get(queue)? {
        out.push(m);
    }
    c.close();
    Ok(out)
}

/// Move the first message of `from` to the queue `to` (through the default exchange)
/// without changing a byte of its properties or body: its content header is sent again
/// exactly as received, the publish is confirmed, and only then is the original
/// acknowledged. The moved message, or None when `from` is empty. (A crash between the
/// confirm and the ack leaves a duplicate, never a loss.)
pub fn move_first(url: &str, from: &str, to: &str) -> io::Result<Option<RawGot>> {
    let mut c = open(url)?;
    c.confirm_select()?;
    let Some((tag, m)) = c.get(from)? else {
        c.close();
        return Ok(None);
    };
    let mut args = Vec::new();
    args.extend_from_slice(&0u16.to_be_bytes());
    shortstr(&mut args, b"")?;
    shortstr(&mut args, to.as_bytes())?;
    args.push(0b01); // mandatory
    c.send(1, 1, &method(60, 40, &args))?;
    c.send(2, 1, &m.content_header)?;
    let chunk = (c.frame_max as usize).saturating_sub(8).max(1);
    for part in m.body.chunks(chunk) {
        c.send(3, 1, part)?;
    }
    c.confirmed(1)?;
    let mut args = tag.to_be_bytes().to_vec();
    args.push(0); // multiple = false
    c.send(1, 1, &method(60, 80, &args))?; // basic.ack
    c.close();
    Ok(Some(m))
}
