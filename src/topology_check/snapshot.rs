//! What `dlqd check --broker` knows about a broker: plain data read from the management
//! API (queues with their arguments and effective policy, exchanges, bindings, the
//! user's permissions), and the effective settings of a queue read from both.

use std::collections::BTreeMap;

/// One vhost of a broker, as the management API showed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// `rabbitmq_version`, e.g. `3.10.8`.
    pub version: String,
    pub vhost: String,
    /// The user dlqd connects as (the AMQP URL's).
    pub user: String,
    pub queues: Vec<Queue>,
    pub exchanges: Vec<Exchange>,
    pub bindings: Vec<Binding>,
    pub permissions: Access,
    /// The user's tags (`impersonator`, ...), when they could be read.
    pub user_tags: Option<Vec<String>>,
    /// Why an AMQP connection with the URL failed, when it was tried and did.
    pub amqp_failure: Option<AmqpFailure>,
}

/// An AMQP connection that dlqd could not open (the management API is another door).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmqpFailure {
    /// The URL, redacted.
    pub url: String,
    /// What went wrong, without the password.
    pub reason: String,
    /// The broker's reply code when it refused: 403 (login), 530 (vhost).
    pub code: Option<u16>,
}

/// An argument or policy value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Int(i64),
    /// Anything else, as JSON text.
    Other(String),
}

impl Value {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Text(s) => s.trim().parse().ok(),
            Value::Other(_) => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Queue {
    pub name: String,
    /// `classic`, `quorum` or `stream`.
    pub kind: String,
    /// The queue's own arguments, with their `x-` prefix (`x-dead-letter-exchange`).
    pub arguments: BTreeMap<String, Value>,
    /// The effective policy definition, keys without a prefix (`dead-letter-exchange`).
    pub policy: BTreeMap<String, Value>,
    /// The name of the policy that applies, when the API names one.
    pub policy_name: Option<String>,
}

/// The settings where RabbitMQ applies the lower of a queue's argument and its policy.
pub const LOWER_WINS: [&str; 5] = [
    "delivery-limit",
    "max-length",
    "max-length-bytes",
    "message-ttl",
    "expires",
];

/// Where a queue's setting comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Argument,
    Policy,
}

impl Queue {
    /// The effective setting `key` (a policy key: `dead-letter-exchange`, `overflow`,
    /// `dead-letter-strategy`, `dead-letter-routing-key`, `delivery-limit`, ...): the
    /// queue's argument `x-KEY` wins over the policy, as RabbitMQ has it for these keys,
    /// except the limits ([`LOWER_WINS`]), where the lower of the two applies.
    pub fn setting(&self, key: &str) -> Option<(&Value, Source)> {
        let arg = self.arguments.get(&format!("x-{key}"));
        let pol = self.policy.get(key);
        if LOWER_WINS.contains(&key)
            && let (Some(a), Some(p)) = (arg, pol)
            && let (Some(x), Some(y)) = (a.as_int(), p.as_int())
        {
            return Some(if y < x {
                (p, Source::Policy)
            } else {
                (a, Source::Argument)
            });
        }
        arg.map(|v| (v, Source::Argument))
            .or(pol.map(|v| (v, Source::Policy)))
    }

    /// The effective setting as text (`None` when absent or not text).
    pub fn text(&self, key: &str) -> Option<&str> {
        self.setting(key).and_then(|(v, _)| v.as_text())
    }

    /// The policy's name, or `NAME` when it is not known.
    pub fn policy_name(&self) -> &str {
        self.policy_name.as_deref().unwrap_or("NAME")
    }

    pub fn is_quorum(&self) -> bool {
        self.kind == "quorum"
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exchange {
    /// `""` is the default exchange.
    pub name: String,
    /// `direct`, `fanout`, `topic`, `headers`, or a plugin's type.
    pub kind: String,
    /// `alternate-exchange`, from its arguments or policy.
    pub alternate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Queue(String),
    Exchange(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub source: String,
    pub destination: Destination,
    pub routing_key: String,
}

/// The user's permissions on the vhost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Access {
    /// The three regular expressions.
    Granted(Permissions),
    /// No permissions on the vhost at all.
    None,
    /// They could not be read (e.g. the management user is not an administrator).
    #[default]
    Unknown,
    /// They could not be read, and why.
    Unreadable(String),
}

/// RabbitMQ's three permission regexes for one user on one vhost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub configure: String,
    pub write: String,
    pub read: String,
}

impl Snapshot {
    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// The exchange `name`; the default exchange `""` always exists.
    pub fn exchange(&self, name: &str) -> Option<Exchange> {
        if name.is_empty() {
            return Some(Exchange {
                name: String::new(),
                kind: "direct".into(),
                alternate: None,
            });
        }
        self.exchanges.iter().find(|e| e.name == name).cloned()
    }

    /// The major version (3, 4, ...), 0 when unknown.
    pub fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(args: &[(&str, Value)], policy: &[(&str, Value)]) -> Queue {
        Queue {
            name: "q".into(),
            kind: "quorum".into(),
            arguments: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            policy: policy
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            policy_name: None,
        }
    }

    #[test]
    fn an_argument_wins_over_the_policy_but_the_lower_delivery_limit_applies() {
        let t = |s: &str| Value::Text(s.into());
        let queue = q(
            &[
                ("x-dead-letter-exchange", t("a")),
                ("x-delivery-limit", Value::Int(50)),
            ],
            &[
                ("dead-letter-exchange", t("b")),
                ("overflow", t("reject-publish")),
                ("delivery-limit", Value::Int(5)),
                ("message-ttl", Value::Int(60000)),
            ],
        );
        let mut queue = queue;
        queue
            .arguments
            .insert("x-message-ttl".into(), Value::Int(1000));
        assert_eq!(
            queue.setting("message-ttl"),
            Some((&Value::Int(1000), Source::Argument))
        );
        assert_eq!(queue.text("dead-letter-exchange"), Some("a"));
        assert_eq!(queue.text("overflow"), Some("reject-publish"));
        assert_eq!(
            queue.setting("delivery-limit"),
            Some((&Value::Int(5), Source::Policy))
        );
        assert_eq!(queue.setting("dead-letter-strategy"), None);
    }

    #[test]
    fn the_default_exchange_always_exists() {
        let s = Snapshot {
            version: "4.3.6".into(),
            ..Snapshot::default()
        };
        assert_eq!(s.exchange("").map(|e| e.kind), Some("direct".into()));
        assert!(s.exchange("x").is_none());
        assert_eq!(s.major(), 4);
    }
}
