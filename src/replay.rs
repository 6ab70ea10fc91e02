//! The plan behind `dlqd publish`: a captured message and the options → where it goes
//! and the message to send (header edits applied, marked as edited), or why it is not
//! sent. Pure: no I/O, tested in memory.
//!
//! Destinations:
//! - a queue (`--queue Q`): the default exchange, routing key `Q`;
//! - an exchange (`--exchange X`), with `--routing-key K` or, without it, each
//!   message's own: the first routing key of its newest death (the one it was first
//!   published with), else the routing key it was captured with;
//! - back where it died (`--to-origin`): the queue of its newest death (the same fact
//!   as DESTQ, [`DeadLetter::destq`]), through the default exchange. Not the death's
//!   exchange and routing keys: through them, every queue bound to that exchange with
//!   that key would get a copy again, not only the one where it died. A message with
//!   no death history (and no `x-dlqd-original-queue`) has nowhere to go: not sent.
//!
//! Header edits (`--set-header NAME=VALUE`, typed `NAME:int=5`, `NAME:bool=true`,
//! `NAME:float=1.5`, `NAME:str=...`; `--unset-header NAME`) are applied to the copy, and
//! an edited copy carries [`EDITED_HEADER`] `set=a,b;unset=c` (the names asked for, in
//! the order given). The body and the other properties are never changed; like every
//! copy dlqd publishes, it goes without `user_id` (kept in `x-dlqd-user-id`) and
//! without dlqd's DLQ and stage marks ([`outgoing::for_publish`]).
//!
//! A replay is a fresh attempt: unless `--keep-marks`, the marks of a past handling
//! ([`PAST_HANDLING_HEADERS`]: dlqd's retry count, an earlier edit record, the rule and
//! action that forwarded it, the broker's delivery and acquired counts) are removed; where it came
//! from (`x-dlqd-original-queue`, `x-dlqd-reason`, `x-dlqd-user-id`) and its death
//! history (`x-death`, `x-first-death-*`, `x-last-death-*`, `x-dlqd-death`) stay.
//! The broker's headers cannot be set (`--set-header x-death=...`); they can be unset.

use crate::dead_letter::DeadLetter;
use crate::message::RETRIES_HEADER;
use crate::message::{FieldTable, Message, Value};
use crate::outgoing;

/// Header on a copy whose headers `dlqd publish` edited: `set=a,b;unset=c`.
pub const EDITED_HEADER: &str = "x-dlqd-edited";

/// The broker's count of deliveries (quorum queues).
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// The broker's count of acquisitions (quorum queues, RabbitMQ 4.3+).
pub const ACQUIRED_COUNT_HEADER: &str = "x-acquired-count";

/// The marks of a past handling that a replay removes unless `--keep-marks`: with them,
/// a replayed message that fails again would find its retry budget used up.
pub const PAST_HANDLING_HEADERS: [&str; 6] = [
    RETRIES_HEADER,
    EDITED_HEADER,
    outgoing::RULE_HEADER,
    outgoing::ACTION_HEADER,
    DELIVERY_COUNT_HEADER,
    ACQUIRED_COUNT_HEADER,
];

/// Whether the broker owns the header (its death history and delivery count): it can be
/// unset, not set.
pub fn is_brokers(name: &str) -> bool {
    name == "x-death"
        || name == DELIVERY_COUNT_HEADER
        || name == ACQUIRED_COUNT_HEADER
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// Where the messages go.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    Queue(String),
    Exchange {
        exchange: String,
        /// `None`: each message's own.
        routing_key: Option<String>,
    },
    /// Back to the queue each died in.
    Origin,
}

/// The header edits asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderEdits {
    set: Vec<(String, Value)>,
    unset: Vec<String>,
}

/// A header edit that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error(
        "--set-header {0:?}: expected NAME=VALUE (or NAME:int=5, NAME:bool=true, NAME:float=1.5, NAME:str=text)"
    )]
    Form(String),
    #[error("--set-header {given:?}: {value:?} is not a{article} {ty}")]
    Value {
        given: String,
        value: String,
        article: &'static str,
        ty: &'static str,
    },
    #[error("header name {0:?}: a name is 1 to 255 bytes without ',', ';' or '='")]
    Name(String),
    #[error("header {0:?} is edited twice")]
    Twice(String),
    #[error("header {EDITED_HEADER} is dlqd's record of the edits; it cannot be edited")]
    Reserved,
    #[error(
        "unknown type `{ty}` in --set-header {given:?}: int, bool, float or str; a name with a ':' needs an explicit type, e.g. a:b:str=v"
    )]
    UnknownType { given: String, ty: String },
    #[error(
        "--set-header {0:?}: the broker writes this header (death history, delivery count); it cannot be set\n  help: --unset-header {0} removes it"
    )]
    BrokerOwned(String),
}

fn check_name(name: &str) -> Result<(), EditError> {
    if name == EDITED_HEADER {
        return Err(EditError::Reserved);
    }
    let ok = !name.is_empty() && name.len() <= 255 && !name.contains([',', ';', '=']);
    if ok {
        Ok(())
    } else {
        Err(EditError::Name(name.into()))
    }
}

/// `NAME=VALUE` or `NAME:TYPE=VALUE` (TYPE one of int, bool, float, str).
fn parse_set(given: &str) -> Result<(String, Value), EditError> {
    let (left, value) = given
        .split_once('=')
        .ok_or_else(|| EditError::Form(given.into()))?;
    let typed = left
        .rsplit_once(':')
        .map(|(name, ty)| (name, ty.to_ascii_lowercase()));
    let bad = |article, ty| EditError::Value {
        given: given.into(),
        value: value.into(),
        article,
        ty,
    };
    let (name, value) = match typed.as_ref().map(|(n, t)| (*n, t.as_str())) {
        None => (left, Value::string(value)),
        Some((name, "int")) => (
            name,
            Value::I64(value.trim().parse().map_err(|_| bad("n", "integer"))?),
        ),
        Some((name, "bool")) => (
            name,
            Value::Bool(match value.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(bad("", "boolean (true or false)")),
            }),
        ),
        Some((name, "float")) => (
            name,
            Value::F64(
                value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| bad("", "finite number"))?,
            ),
        ),
        Some((name, "str")) => (name, Value::string(value)),
        Some((_, _)) => {
            let ty = left.rsplit_once(':').map_or("", |(_, t)| t);
            return Err(EditError::UnknownType {
                given: given.into(),
                ty: ty.into(),
            });
        }
    };
    if is_brokers(name) {
        return Err(EditError::BrokerOwned(name.into()));
    }
    check_name(name)?;
    Ok((name.to_string(), value))
}

impl HeaderEdits {
    /// The edits from `--set-header` and `--unset-header` values; every name once.
    pub fn parse(set: &[String], unset: &[String]) -> Result<Self, EditError> {
        let mut edits = HeaderEdits::default();
        let mut seen = std::collections::BTreeSet::new();
        for s in set {
            let (name, value) = parse_set(s)?;
            if !seen.insert(name.clone()) {
                return Err(EditError::Twice(name));
            }
            edits.set.push((name, value));
        }
        for name in unset {
            check_name(name)?;
            if !seen.insert(name.clone()) {
                return Err(EditError::Twice(name.clone()));
            }
            edits.unset.push(name.clone());
        }
        Ok(edits)
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty()
    }

    /// The value of [`EDITED_HEADER`]: `set=a,b;unset=c` (a part left out when empty).
    pub fn mark(&self) -> String {
        let mut parts = Vec::new();
        if !self.set.is_empty() {
            let names: Vec<&str> = self.set.iter().map(|(n, _)| n.as_str()).collect();
            parts.push(format!("set={}", names.join(",")));
        }
        if !self.unset.is_empty() {
            parts.push(format!("unset={}", self.unset.join(",")));
        }
        parts.join(";")
    }

    fn apply(&self, message: &mut Message) {
        if self.is_empty() {
            return;
        }
        let h = message
            .properties
            .headers
            .get_or_insert_with(FieldTable::new);
        for name in &self.unset {
            h.remove(name);
        }
        for (name, value) in &self.set {
            h.insert(name.clone(), value.clone());
        }
        h.insert(EDITED_HEADER.into(), Value::string(self.mark()));
    }
}

/// What `dlqd publish` was asked to do with each message.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub destination: Destination,
    pub edits: HeaderEdits,
    /// `--keep-marks`: keep [`PAST_HANDLING_HEADERS`] as captured.
    pub keep_marks: bool,
}

/// One publish: to `exchange` with `routing_key`, this message.
#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub exchange: String,
    pub routing_key: String,
    pub message: Message,
}

impl Send {
    /// Where it goes, as the audit trail and the reports write it: `Q` (default
    /// exchange) or `X/K`.
    pub fn target(&self) -> String {
        if self.exchange.is_empty() {
            self.routing_key.clone()
        } else {
            format!("{}/{}", self.exchange, self.routing_key)
        }
    }
}

/// What becomes of one captured message.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Send(Box<Send>),
    /// `--to-origin` and the message has no death history: not sent.
    NoOrigin,
}

/// The plan for one captured message.
pub fn plan(message: &Message, options: &Options) -> Plan {
    let (exchange, routing_key) = match &options.destination {
        Destination::Queue(q) => (String::new(), q.clone()),
        Destination::Exchange {
            exchange,
            routing_key: Some(k),
        } => (exchange.clone(), k.clone()),
        Destination::Exchange {
            exchange,
            routing_key: None,
        } => {
            let dl = DeadLetter::new(message);
            let own = match dl.original_routing_key() {
                "" => message.routing_key.clone(),
                k => k.to_string(),
            };
            (exchange.clone(), own)
        }
        Destination::Origin => {
            let destq = DeadLetter::new(message).destq.into_owned();
            if destq.is_empty() {
                return Plan::NoOrigin;
            }
            (String::new(), destq)
        }
    };
    let mut copy = outgoing::for_publish(message);
    if !options.keep_marks
        && let Some(h) = copy.properties.headers.as_mut()
    {
        for k in PAST_HANDLING_HEADERS {
            h.remove(k);
        }
    }
    options.edits.apply(&mut copy);
    Plan::Send(Box::new(Send {
        exchange,
        routing_key,
        message: copy,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// A message rejected from `orders` (published to exchange `shop` with key
    /// `orders.new`), dead-lettered into `orders.dlq`.
    fn dead_letter() -> Message {
        let mut death = FieldTable::new();
        death.insert("queue".into(), Value::string("orders"));
        death.insert("reason".into(), Value::string("rejected"));
        death.insert("exchange".into(), Value::string("shop"));
        death.insert(
            "routing-keys".into(),
            Value::Array(vec![Value::string("orders.new")]),
        );
        let mut h = FieldTable::new();
        h.insert("x-death".into(), Value::Array(vec![Value::Table(death)]));
        h.insert("tenant".into(), Value::string("eu"));
        h.insert("trace".into(), Value::string("abc"));
        h.insert(outgoing::EXAMINED_HEADER.into(), Value::I64(5));
        Message {
            exchange: String::new(),
            routing_key: "orders.dlq".into(),
            properties: crate::message::Properties {
                headers: Some(h),
                message_id: Some("m1".into()),
                user_id: Some("alice".into()),
                content_type: Some("application/json".into()),
                ..Default::default()
            },
            body: b"{\"id\":1}".to_vec(),
        }
    }

    fn options(destination: Destination, set: &[&str], unset: &[&str]) -> Options {
        Options {
            destination,
            edits: HeaderEdits::parse(&s(set), &s(unset)).unwrap(),
            keep_marks: false,
        }
    }

    fn send(p: Plan) -> Send {
        match p {
            Plan::Send(s) => *s,
            other => panic!("not sent: {other:?}"),
        }
    }

    #[test]
    fn back_to_origin_is_the_queue_it_died_in_through_the_default_exchange() {
        let p = send(plan(
            &dead_letter(),
            &options(Destination::Origin, &[], &[]),
        ));
        assert_eq!(
            (p.exchange.as_str(), p.routing_key.as_str()),
            ("", "orders")
        );
        assert_eq!(p.target(), "orders");
        // Unedited: no mark; the history, headers, properties and body as captured;
        // dlqd's DLQ mark gone; published as dlqd, the user kept aside.
        let m = &p.message;
        assert!(m.header(EDITED_HEADER).is_none());
        assert!(m.header("x-death").is_some());
        assert_eq!(m.header("tenant"), Some(&Value::string("eu")));
        assert!(m.header(outgoing::EXAMINED_HEADER).is_none());
        assert_eq!(m.properties.user_id, None);
        assert_eq!(
            m.header(outgoing::USER_ID_HEADER),
            Some(&Value::string("alice"))
        );
        assert_eq!(m.body, dead_letter().body);
        assert_eq!(
            m.properties.content_type,
            dead_letter().properties.content_type
        );
        assert_eq!(m.properties.message_id.as_deref(), Some("m1"));
    }

    #[test]
    fn a_message_with_no_death_history_has_no_origin() {
        let m = Message {
            body: b"x".to_vec(),
            ..Default::default()
        };
        assert_eq!(
            plan(&m, &options(Destination::Origin, &[], &[])),
            Plan::NoOrigin
        );
        // dlqd's own record of where a forwarded message died counts as history.
        let mut fwd = m.clone();
        fwd.properties.headers = Some(FieldTable::from([(
            "x-dlqd-original-queue".to_string(),
            Value::string("billing"),
        )]));
        assert_eq!(
            send(plan(&fwd, &options(Destination::Origin, &[], &[]))).routing_key,
            "billing"
        );
    }

    #[test]
    fn queues_and_exchanges_with_a_key_or_each_messages_own() {
        let q = send(plan(
            &dead_letter(),
            &options(Destination::Queue("parked".into()), &[], &[]),
        ));
        assert_eq!((q.exchange.as_str(), q.target().as_str()), ("", "parked"));
        let x = send(plan(
            &dead_letter(),
            &options(
                Destination::Exchange {
                    exchange: "shop".into(),
                    routing_key: Some("k".into()),
                },
                &[],
                &[],
            ),
        ));
        assert_eq!(x.target(), "shop/k");
        let own = Destination::Exchange {
            exchange: "shop".into(),
            routing_key: None,
        };
        // Its first routing key, from the death history ...
        let o = send(plan(&dead_letter(), &options(own.clone(), &[], &[])));
        assert_eq!(o.target(), "shop/orders.new");
        // ... else the one it was captured with.
        let plain = Message {
            routing_key: "captured.key".into(),
            ..Default::default()
        };
        assert_eq!(
            send(plan(&plain, &options(own, &[], &[]))).target(),
            "shop/captured.key"
        );
    }

    #[test]
    fn edits_are_applied_and_marked_and_the_body_is_never_touched() {
        let o = options(
            Destination::Origin,
            &[
                "tenant=us",
                "attempts:int=5",
                "ok:bool=true",
                "w:float=1.5",
                "a:b:str=c",
                "big:INT=7",
                "s:Str=x:y",
            ],
            &["trace", "absent"],
        );
        let m = send(plan(&dead_letter(), &o)).message;
        assert_eq!(m.header("tenant"), Some(&Value::string("us")));
        assert_eq!(m.header("attempts"), Some(&Value::I64(5)));
        assert_eq!(m.header("ok"), Some(&Value::Bool(true)));
        assert_eq!(m.header("w"), Some(&Value::F64(1.5)));
        // A name with a ':' says its type; types are case-insensitive.
        assert_eq!(m.header("a:b"), Some(&Value::string("c")));
        assert_eq!(m.header("big"), Some(&Value::I64(7)));
        assert_eq!(m.header("s"), Some(&Value::string("x:y")));
        assert!(m.header("trace").is_none());
        assert_eq!(
            m.header(EDITED_HEADER),
            Some(&Value::string(
                "set=tenant,attempts,ok,w,a:b,big,s;unset=trace,absent"
            ))
        );
        assert!(m.header("x-death").is_some());
        assert_eq!(m.body, dead_letter().body);
        // A message with no headers gets them.
        let bare = Message::default();
        let only_unset = options(Destination::Queue("q".into()), &[], &["x"]);
        let m = send(plan(&bare, &only_unset)).message;
        assert_eq!(m.header(EDITED_HEADER), Some(&Value::string("unset=x")));
        // A value may hold '=' and ':'.
        let o = options(Destination::Queue("q".into()), &["url=a=b:c"], &[]);
        let m = send(plan(&bare, &o)).message;
        assert_eq!(m.header("url"), Some(&Value::string("a=b:c")));
    }

    #[test]
    fn bad_edits_are_refused_with_a_reason() {
        let err =
            |set: &[&str], unset: &[&str]| HeaderEdits::parse(&s(set), &s(unset)).unwrap_err();
        assert!(matches!(err(&["novalue"], &[]), EditError::Form(_)));
        assert!(matches!(err(&["n:int=five"], &[]), EditError::Value { .. }));
        assert!(matches!(err(&["b:bool=yes"], &[]), EditError::Value { .. }));
        assert!(matches!(
            err(&["f:float=NaN"], &[]),
            EditError::Value { .. }
        ));
        assert!(matches!(err(&["=v"], &[]), EditError::Name(_)));
        assert!(matches!(err(&["a,b=v"], &[]), EditError::Name(_)));
        assert!(matches!(err(&[], &[""]), EditError::Name(_)));
        assert!(matches!(err(&["a=1", "a=2"], &[]), EditError::Twice(_)));
        assert!(matches!(err(&["a=1"], &["a"]), EditError::Twice(_)));
        assert!(matches!(err(&[], &[EDITED_HEADER]), EditError::Reserved));
        let long = format!("{}=v", "n".repeat(256));
        assert!(matches!(err(&[&long], &[]), EditError::Name(_)));
        assert_eq!(
            err(&["n:int=five"], &[]).to_string(),
            "--set-header \"n:int=five\": \"five\" is not an integer"
        );
        // An unknown type is an error, not part of the name.
        assert_eq!(
            err(&["retries:Int64=5"], &[]),
            EditError::UnknownType {
                given: "retries:Int64=5".into(),
                ty: "Int64".into()
            }
        );
        let e = err(&["n:foo=1"], &[]).to_string();
        assert!(
            e.starts_with("unknown type `foo` in --set-header")
                && e.contains("int, bool, float or str")
                && e.contains("a:b:str=v"),
            "{e}"
        );
    }

    #[test]
    fn the_brokers_headers_can_be_unset_not_set() {
        for name in [
            "x-death",
            "x-delivery-count",
            "x-acquired-count",
            "x-first-death-queue",
            "x-last-death-reason",
        ] {
            let e = HeaderEdits::parse(&[format!("{name}:int=1")], &[]).unwrap_err();
            assert_eq!(e, EditError::BrokerOwned(name.into()));
            assert!(e.to_string().contains("help: --unset-header"), "{e}");
        }
        let o = options(Destination::Origin, &[], &["x-death", "x-delivery-count"]);
        let p = send(plan(&dead_letter(), &o));
        // Where it goes was read from the captured history; the copy has none.
        assert_eq!(p.routing_key, "orders");
        assert!(p.message.header("x-death").is_none());
    }

    /// A captured message that dlqd already handled: retried 5 times, edited, forwarded
    /// by rule 3, delivered 7 times by a quorum queue.
    fn handled_before() -> Message {
        let mut m = dead_letter();
        let h = m.properties.headers.as_mut().unwrap();
        h.insert(RETRIES_HEADER.into(), Value::I64(5));
        h.insert(EDITED_HEADER.into(), Value::string("set=old"));
        h.insert(DELIVERY_COUNT_HEADER.into(), Value::I64(7));
        h.insert(ACQUIRED_COUNT_HEADER.into(), Value::I64(8));
        h.insert(outgoing::RULE_HEADER.into(), Value::I64(3));
        h.insert(outgoing::ACTION_HEADER.into(), Value::string("forward"));
        h.insert(
            outgoing::ORIGINAL_QUEUE_HEADER.into(),
            Value::string("orders"),
        );
        h.insert(outgoing::REASON_HEADER.into(), Value::string("rejected"));
        h.insert(outgoing::USER_ID_HEADER.into(), Value::string("bob"));
        m.properties.user_id = None;
        m
    }

    #[test]
    fn a_replay_is_a_fresh_attempt_unless_marks_are_kept() {
        let fresh = send(plan(
            &handled_before(),
            &options(Destination::Origin, &[], &[]),
        ))
        .message;
        for k in PAST_HANDLING_HEADERS {
            assert!(fresh.header(k).is_none(), "{k} removed");
        }
        // Where it came from, and its death history, stay.
        assert!(fresh.header("x-death").is_some());
        for k in [
            outgoing::ORIGINAL_QUEUE_HEADER,
            outgoing::REASON_HEADER,
            outgoing::USER_ID_HEADER,
        ] {
            assert!(fresh.header(k).is_some(), "{k} kept");
        }
        // Edits now: the new record only.
        let edited = send(plan(
            &handled_before(),
            &options(Destination::Origin, &["new=1"], &[]),
        ))
        .message;
        assert_eq!(
            edited.header(EDITED_HEADER),
            Some(&Value::string("set=new"))
        );
        assert!(edited.header(RETRIES_HEADER).is_none());
        // --keep-marks: as captured (an edit now replaces the old record).
        let mut keep = options(Destination::Origin, &[], &[]);
        keep.keep_marks = true;
        let kept = send(plan(&handled_before(), &keep)).message;
        let before = handled_before();
        for k in PAST_HANDLING_HEADERS {
            assert_eq!(kept.header(k), before.header(k), "{k} kept");
        }
    }
}
