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

use crate::dead_letter::DeadLetter;
use crate::message::{FieldTable, Message, Value};
use crate::outgoing;

/// Header on a copy whose headers `dlqd publish` edited: `set=a,b;unset=c`.
pub const EDITED_HEADER: &str = "x-dlqd-edited";

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
        .filter(|(_, ty)| matches!(*ty, "int" | "bool" | "float" | "str"));
    let bad = |article, ty| EditError::Value {
        given: given.into(),
        value: value.into(),
        article,
        ty,
    };
    let (name, value) = match typed {
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
        Some((name, _)) => (name, Value::string(value)),
    };
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
                "a:b=c",
            ],
            &["trace", "absent"],
        );
        let m = send(plan(&dead_letter(), &o)).message;
        assert_eq!(m.header("tenant"), Some(&Value::string("us")));
        assert_eq!(m.header("attempts"), Some(&Value::I64(5)));
        assert_eq!(m.header("ok"), Some(&Value::Bool(true)));
        assert_eq!(m.header("w"), Some(&Value::F64(1.5)));
        // An unknown type is part of the name.
        assert_eq!(m.header("a:b"), Some(&Value::string("c")));
        assert!(m.header("trace").is_none());
        assert_eq!(
            m.header(EDITED_HEADER),
            Some(&Value::string(
                "set=tenant,attempts,ok,w,a:b;unset=trace,absent"
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
    }
}
