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
async fn confirmed(confirm: lapin::PublisherConfirm, facts: Facts) -> Result<(), ActionFailure> {
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
        Err(e) => Err(failure("channel closed", &e, &facts)),
    }
}

/// A publish the broker refused with an error that closes the channel: every publish in
/// flight on it fails with the same error. When the broker's words name what it refused
/// (a size, a `user_id`, an exchange), only the publishes that match are refused for
/// themselves ([`Cause::Refused`], or [`Cause::TooLarge`] for a size over the broker's
/// `max_message_size`: no copy can be published there as it is); the others are its
/// neighbours ([`Cause::ChannelClosed`]) and are sent again, uncharged. A publish made
/// after the close (no reply code) is a neighbour too.
fn failure(context: &str, e: &lapin::Error, facts: &Facts) -> ActionFailure {
    let text = format!("{context}: {e}");
    let lapin::ErrorKind::ProtocolError(p) = e.kind() else {
        return ActionFailure::new(Cause::ChannelClosed, text);
    };
    let code = p.get_id();
    let cause = match Culprit::named(p.get_message().as_str()) {
        Some(culprit) if !culprit.is(facts) => Cause::ChannelClosed,
        Some(Culprit::Size(_)) => Cause::TooLarge,
        _ => Cause::Refused { code },
    };
    ActionFailure::new(cause, text)
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
        Ok(Publisher { channel })
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
        let mut send =
            Box::pin(async move { channel.basic_publish(ex, rk, options, &body, props).await });
        match futures_lite::future::poll_once(&mut send).await {
            Some(Err(e)) => Box::pin(std::future::ready(Err(failure(
                "publish refused",
                &e,
                &facts,
            )))),
            Some(Ok(confirm)) => Box::pin(confirmed(confirm, facts)),
            None => Box::pin(async move {
                match send.await {
                    Ok(confirm) => confirmed(confirm, facts).await,
                    Err(e) => Err(failure("publish refused", &e, &facts)),
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
}
