//! Whether a RabbitMQ permission regex allows a resource: matched unanchored against
//! the resource's name (as RabbitMQ's `re:run` does), `""` allowing nothing (RabbitMQ
//! reads it as `^$`). The default exchange's resource name is `amq.default`.

/// The resource name RabbitMQ checks for the default exchange.
pub const DEFAULT_EXCHANGE: &str = "amq.default";

/// `Some(true)` when `regex` allows `name`, `None` when the regex uses syntax the
/// `regex` crate does not read (a PCRE look-around): then it cannot be judged here.
pub fn allows(regex: &str, name: &str) -> Option<bool> {
    if regex.is_empty() {
        return Some(false);
    }
    regex::Regex::new(regex).ok().map(|re| re.is_match(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unanchored_like_rabbitmq() {
        assert_eq!(allows(".*", "anything"), Some(true));
        assert_eq!(allows("", "x"), Some(false));
        assert_eq!(allows("dlq", "orders.dlq"), Some(true), "unanchored");
        assert_eq!(allows("^dlqd\\..*$", "orders.dlq"), Some(false));
        assert_eq!(
            allows("^(amq\\.default|dlqd\\..*)$", DEFAULT_EXCHANGE),
            Some(true)
        );
        assert_eq!(allows("^(?!x)", "y"), None, "look-ahead");
    }
}
