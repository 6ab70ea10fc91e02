//! Publishing with confirms on a channel of its own: `mandatory` set, many publishes in
//! flight, each resolving to success or to the broker's reason for refusing it. A channel
//! the broker closed (e.g. 404 on a missing exchange) is reopened on the next publish.

use std::future::Future;
use std::pin::Pin;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection};

use crate::broker::convert::properties_to_amqp;
use crate::broker::error::{ActionFailure, BrokerError, Cause};
use crate::broker::frame::check_fits;
use crate::message::Message;

/// A publish in flight: resolves when the broker has confirmed it (or refused it).
pub type Confirm = Pin<Box<dyn Future<Output = Result<(), ActionFailure>> + Send>>;

/// A confirm-mode channel for publishing.
pub struct Publisher {
    channel: Channel,
    refusals: Refusals,
}

/// How long a refusal the broker named is taken to hold: a publish that matches it in
/// that time fails at once, unsent, instead of closing the channel under its neighbours
/// again (with several such messages in flight, each would).
const REFUSAL_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// What the broker refused lately, shared with the confirm futures that learn it.
#[derive(Clone, Default)]
struct Refusals(std::sync::Arc<std::sync::Mutex<Vec<Refusal>>>);

struct Refusal {
    what: Refused,
    at: std::time::Instant,
    cause: Cause,
    reason: String,
}

/// An owned [`Culprit`].
#[derive(Debug, Clone, PartialEq)]
enum Refused {
    Size(u64),
    UserId(String),
    Exchange(String),
}

impl Refusals {
    fn learn(&self, culprit: &Culprit<'_>, f: &ActionFailure) {
        let what = match culprit {
            Culprit::Size(n) => Refused::Size(*n),
            Culprit::UserId(u) => Refused::UserId(u.to_string()),
            Culprit::Exchange(x) => Refused::Exchange(x.to_string()),
        };
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|r| r.at.elapsed() < REFUSAL_TTL && r.what != what);
        all.push(Refusal {
            what,
            at: std::time::Instant::now(),
            cause: f.cause,
            reason: f.reason.clone(),
        });
    }

    /// The refusal this publish would meet again, if one was seen lately.
    fn check(&self, facts: &Facts) -> Option<ActionFailure> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .filter(|r| r.at.elapsed() < REFUSAL_TTL)
            .find(|r| {
                let culprit = match &r.what {
                    Refused::Size(n) => Culprit::Size(*n),
                    Refused::UserId(u) => Culprit::UserId(u),
                    Refused::Exchange(x) => Culprit::Exchange(x),
                };
                culprit.is(facts)
            })
            .map(|r| {
                ActionFailure::new(
                    r.cause,
                    format!(
                        "not sent: the broker refused the same a moment ago: {}",
                        r.reason
                    ),
                )
            })
    }
}

async fn open(conn: &Connection) -> Result<Channel, lapin::Error> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// What identifies one publish when the broker closes the channel over one of them.
#[derive(Debug, Clone, Default, PartialEq)]
struct Facts {
    size: u64,
    exchange: String,
    user_id: Option<String>,
}

/// What the broker said about one publish.
async fn confirmed(
    confirm: lapin::PublisherConfirm,
    facts: Facts,
    refusals: Refusals,
) -> Result<(), ActionFailure> {
    match confirm.await {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(Confirmation::Ack(Some(returned))) => Err(ActionFailure::new(
            Cause::Returned {
                code: returned.reply_code,
            },
            format!(
                "returned by the broker: {} {}",
                returned.reply_code, returned.reply_text
            ),
        )),
        Ok(Confirmation::Nack(_)) => Err(ActionFailure::new(Cause::Nacked, "nacked by the broker")),
        Ok(Confirmation::NotRequested) => Err(ActionFailure::new(
            Cause::Unconfirmed,
            "the broker did not confirm the publish",
        )),
        Err(e) => Err(failure("channel closed", &e, &facts, &refusals)),
    }
}

/// A publish the broker refused with an error that closes the channel: every publish in
/// flight on it fails with the same error. When the broker's words name what it refused
/// (a size, a `user_id`, an exchange), only the publishes that match are refused for
/// themselves ([`Cause::Refused`], or [`Cause::TooLarge`] for a size over the broker's
/// `max_message_size`: no copy can be published there as it is); the others are its
/// neighbours ([`Cause::ChannelClosed`]) and are sent again, uncharged. A publish made
/// after the close (no reply code) is a neighbour too.
fn failure(context: &str, e: &lapin::Error, facts: &Facts, refusals: &Refusals) -> ActionFailure {
    let text = format!("{context}: {e}");
    let lapin::ErrorKind::ProtocolError(p) = e.kind() else {
        return ActionFailure::new(Cause::ChannelClosed, text);
    };
    let code = p.get_id();
    let named = Culprit::named(p.get_message().as_str());
    let cause = match &named {
        Some(culprit) if !culprit.is(facts) => Cause::ChannelClosed,
        Some(Culprit::Size(_)) => Cause::TooLarge,
        _ => Cause::Refused { code },
    };
    let f = ActionFailure::new(cause, text);
    if let Some(culprit) = named.filter(|c| c.is(facts)) {
        refusals.learn(&culprit, &f);
    }
    f
}

/// What a channel-closing refusal names, in RabbitMQ's words.
#[derive(Debug, PartialEq)]
enum Culprit<'a> {
    /// 406 "message size N is larger than configured max size M".
    Size(u64),
    /// 406 "user_id property set to 'alice' but authenticated user was 'dlqd'".
    UserId(&'a str),
    /// 404 "no exchange 'x' in vhost '/'", 403 "write access to exchange 'x' ...".
    Exchange(&'a str),
}

impl<'a> Culprit<'a> {
    fn named(text: &'a str) -> Option<Self> {
        let quoted = |after: &str| -> Option<&'a str> {
            let rest = text.split_once(after)?.1;
            let rest = rest.strip_prefix('\'')?;
            Some(rest.split_once('\'')?.0)
        };
        if let Some(rest) = text.split_once("message size ").map(|(_, r)| r) {
            let (n, tail) = rest.split_once(' ')?;
            if tail.starts_with("is larger than configured max size") {
                return n.parse().ok().map(Culprit::Size);
            }
        }
        if text.contains("user_id property set to") {
            return quoted("user_id property set to ").map(Culprit::UserId);
        }
        quoted("exchange ").map(Culprit::Exchange)
    }

    fn is(&self, facts: &Facts) -> bool {
        match self {
            Culprit::Size(n) => *n == facts.size,
            Culprit::UserId(u) => facts.user_id.as_deref() == Some(*u),
            Culprit::Exchange(x) => {
                let ex = if facts.exchange.is_empty() {
                    "amq.default"
                } else {
                    facts.exchange.as_str()
                };
                *x == ex
            }
        }
    }
}

fn failed(cause: Cause, reason: String) -> Confirm {
    Box::pin(async move { Err(ActionFailure::new(cause, reason)) })
}

impl Publisher {
    pub async fn open(conn: &Connection) -> Result<Self, BrokerError> {
        let channel = open(conn)
            .await
            .map_err(|e| BrokerError::amqp("cannot open the publishing channel", &e))?;
        Ok(Publisher {
            channel,
            refusals: Refusals::default(),
        })
    }

    /// Publish `message` (its properties and body) to `exchange` with `routing_key`,
    /// mandatory. The returned future resolves when the broker confirms it.
    pub async fn publish(
        &mut self,
        conn: &Connection,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Confirm {
        if !self.channel.status().connected() {
            match open(conn).await {
                Ok(channel) => self.channel = channel,
                Err(e) => {
                    return failed(
                        Cause::ChannelClosed,
                        format!("cannot reopen the publishing channel: {e}"),
                    );
                }
            }
        }
        // A content header over frame_max would make the broker close the connection.
        if let Err(reason) = check_fits(&message.properties, conn.configuration().frame_max()) {
            return failed(Cause::TooLarge, reason);
        }
        let props = match properties_to_amqp(&message.properties) {
            Ok(p) => p,
            Err(e) => return failed(Cause::Invalid, format!("cannot publish: {e}")),
        };
        let (Ok(ex), Ok(rk)) = (
            lapin::types::ShortString::try_new(exchange),
            lapin::types::ShortString::try_new(routing_key),
        ) else {
            return failed(
                Cause::Invalid,
                "exchange or routing key longer than 255 bytes".into(),
            );
        };
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        // The first poll of basic_publish queues the frames and numbers the confirm, in
        // call order; what is left (the socket write, the confirm) is awaited later, so
        // that many publishes are in flight without a thread round trip each.
        let channel = self.channel.clone();
        let body = message.body.clone();
        let facts = Facts {
            size: body.len() as u64,
            exchange: exchange.to_string(),
            user_id: message.properties.user_id.clone(),
        };
        if let Some(f) = self.refusals.check(&facts) {
            return Box::pin(std::future::ready(Err(f)));
        }
        let refusals = self.refusals.clone();
        let mut send =
            Box::pin(async move { channel.basic_publish(ex, rk, options, &body, props).await });
        match futures_lite::future::poll_once(&mut send).await {
            Some(Err(e)) => Box::pin(std::future::ready(Err(failure(
                "publish refused",
                &e,
                &facts,
                &refusals,
            )))),
            Some(Ok(confirm)) => Box::pin(confirmed(confirm, facts, refusals)),
            None => Box::pin(async move {
                match send.await {
                    Ok(confirm) => confirmed(confirm, facts, refusals).await,
                    Err(e) => Err(failure("publish refused", &e, &facts, &refusals)),
                }
            }),
        }
    }

    pub async fn close(&self) {
        if self.channel.status().connected() {
            let _ = self.channel.close(200, "bye".into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(size: u64, exchange: &str, user_id: Option<&str>) -> Facts {
        Facts {
            size,
            exchange: exchange.into(),
            user_id: user_id.map(str::to_string),
        }
    }

    #[test]
    fn the_brokers_words_name_the_publish_it_refused() {
        let cases = [
            (
                "PRECONDITION_FAILED - message size 17000000 is larger than configured max size 16777216",
                Some(Culprit::Size(17_000_000)),
            ),
            (
                "PRECONDITION_FAILED - user_id property set to 'alice' but authenticated user was 'guest'",
                Some(Culprit::UserId("alice")),
            ),
            (
                "NOT_FOUND - no exchange 'billing.errors' in vhost '/'",
                Some(Culprit::Exchange("billing.errors")),
            ),
            (
                "ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' refused for user 'dlqd'",
                Some(Culprit::Exchange("amq.default")),
            ),
            ("PRECONDITION_FAILED - something new", None),
        ];
        for (text, want) in cases {
            assert_eq!(Culprit::named(text), want, "{text}");
        }
    }

    #[test]
    fn only_the_publish_named_is_the_culprit() {
        let alice = Culprit::UserId("alice");
        assert!(alice.is(&facts(10, "", Some("alice"))));
        assert!(!alice.is(&facts(10, "", Some("bob"))));
        assert!(!alice.is(&facts(10, "", None)));
        let default = Culprit::Exchange("amq.default");
        assert!(default.is(&facts(1, "", None)));
        assert!(!default.is(&facts(1, "x", None)));
        assert!(Culprit::Size(5).is(&facts(5, "", None)));
        assert!(!Culprit::Size(5).is(&facts(6, "", None)));
    }

    #[test]
    fn a_refusal_learned_fails_the_same_publishes_unsent_for_a_while() {
        let refusals = Refusals::default();
        let f = ActionFailure::new(Cause::Refused { code: 406 }, "user_id alice refused");
        refusals.learn(&Culprit::UserId("alice"), &f);
        let again = refusals
            .check(&facts(10, "", Some("alice")))
            .expect("alice's next publish fails unsent");
        assert_eq!(again.cause, Cause::Refused { code: 406 });
        assert!(refusals.check(&facts(10, "", Some("bob"))).is_none());
        assert!(refusals.check(&facts(10, "", None)).is_none());
    }
}
