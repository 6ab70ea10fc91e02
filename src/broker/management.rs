//! The management HTTP API, read for `dlqd check --broker`: the vhost's queues (type,
//! arguments, effective policy), exchanges, bindings and the user's permissions, as a
//! plain-data [`Snapshot`]. Blocking (ureq); the password never appears in an error.
//!
//! The API's address comes from the AMQP URL (same host and credentials, port 15672
//! over http; 15671 over https for `amqps://`) unless `--management URL` names it
//! (`http[s]://[USER:PASSWORD@]HOST:PORT[/PREFIX]`; without credentials, the AMQP
//! URL's). The vhost and the user whose permissions are checked are the AMQP URL's.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use lapin::uri::{AMQPScheme, AMQPUri};
use serde::Deserialize;

use super::connect::{percent_decode, redact, scrub, userinfo_end};
use crate::topology_check::snapshot::{
    Access, Binding, Destination, Exchange, Permissions, Queue, Snapshot, Value,
};

/// How long one request may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What to tell someone whose broker answers no management API.
pub const ENABLE_HINT: &str = "is the management plugin enabled? (rabbitmq-plugins enable rabbitmq_management; it listens on port 15672; --management URL names another address)";

/// Why the management API could not be read. Every URL in it is redacted.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    #[error("invalid {what} URL {url}: {reason}")]
    BadUrl {
        what: &'static str,
        url: String,
        reason: String,
    },
    #[error("cannot reach the management API at {url}: {reason}; {ENABLE_HINT}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the management API at {url} refused the login of {user} (HTTP {status}): wrong user or password, or the user lacks the management/monitoring/administrator tag; give --management http://USER:PASSWORD@HOST:15672 with such a user"
    )]
    Refused {
        url: String,
        user: String,
        status: u16,
    },
    #[error("the vhost {vhost} does not exist at {url}")]
    NoVhost { url: String, vhost: String },
    #[error("the management API at {url} answered {path} with HTTP {status}: {body}")]
    Status {
        url: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("the management API at {url} answered {path} with what is not its JSON: {reason}")]
    Decode {
        url: String,
        path: String,
        reason: String,
    },
}

/// Where the management API is and how to log in.
#[derive(Clone)]
pub struct Endpoint {
    /// `http://host:15672` (no credentials, no trailing slash).
    pub base: String,
    login: String,
    password: String,
    /// The AMQP URL's vhost and user.
    pub vhost: String,
    pub user: String,
    /// Every URL given, for scrubbing error texts.
    secrets_of: Vec<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base)
            .field("login", &self.login)
            .field("vhost", &self.vhost)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The endpoint for the broker at `amqp_url`, or at `management` when given.
    pub fn new(amqp_url: &str, management: Option<&str>) -> Result<Endpoint, ManagementError> {
        // `amqp:/u:p@h` would be read with the user information in the vhost (and the
        // password in the API's "vhost ... does not exist"): refused first.
        if let Err(crate::broker::connect::ConnectError::BadUrl { url, reason }) =
            crate::broker::connect::check_scheme(amqp_url)
        {
            return Err(ManagementError::BadUrl {
                what: "broker",
                url,
                reason,
            });
        }
        let uri: AMQPUri = amqp_url
            .parse()
            .map_err(|e: String| ManagementError::BadUrl {
                what: "broker",
                url: redact(amqp_url),
                reason: scrub(amqp_url, &e),
            })?;
        let a = &uri.authority;
        let mut login = a.userinfo.username.clone();
        let mut password = a.userinfo.password.clone();
        let base = match management {
            Some(m) => {
                let bad = |reason: &str| ManagementError::BadUrl {
                    what: "management",
                    url: redact(m),
                    reason: reason.into(),
                };
                let Some((scheme, rest)) = m.split_once("://") else {
                    return Err(bad("it does not start with http:// or https://"));
                };
                if scheme != "http" && scheme != "https" {
                    return Err(bad("it does not start with http:// or https://"));
                }
                let rest = match userinfo_end(rest) {
                    Some(at) => {
                        let (user, pass) = rest[..at].split_once(':').unwrap_or((&rest[..at], ""));
                        login = percent_decode(user);
                        password = percent_decode(pass);
                        &rest[at + 1..]
                    }
                    None => rest,
                };
                if rest.is_empty() || rest.starts_with('/') {
                    return Err(bad("it names no host"));
                }
                format!("{scheme}://{}", rest.trim_end_matches('/'))
            }
            None => {
                let host = if a.host.contains(':') {
                    format!("[{}]", a.host)
                } else {
                    a.host.clone()
                };
                match uri.scheme {
                    AMQPScheme::AMQPS => format!("https://{host}:15671"),
                    AMQPScheme::AMQP => format!("http://{host}:15672"),
                }
            }
        };
        let vhost = if uri.vhost.is_empty() {
            "/".to_string()
        } else {
            uri.vhost.clone()
        };
        let mut secrets_of = vec![amqp_url.to_string()];
        secrets_of.extend(management.map(String::from));
        Ok(Endpoint {
            base,
            login,
            password,
            vhost,
            user: a.userinfo.username.clone(),
            secrets_of,
        })
    }

    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for u in &self.secrets_of {
            out = scrub(u, &out);
        }
        if !self.password.is_empty() {
            out = out.replace(&self.password, "***");
        }
        out
    }
}

/// A path segment percent-encoded (`/` → `%2F`).
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Client {
    agent: ureq::Agent,
    ep: Endpoint,
    auth: String,
}

impl Client {
    /// GET `path`: the status and the body.
    fn get(&self, path: &str) -> Result<(u16, String), ManagementError> {
        let url = format!("{}{path}", self.ep.base);
        let unreachable = |e: ureq::Error| ManagementError::Unreachable {
            url: self.ep.base.clone(),
            reason: self.ep.scrub(&e.to_string()),
        };
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", &self.auth)
            .call()
            .map_err(unreachable)?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(unreachable)?;
        Ok((status, body))
    }

    /// GET `path` and decode it; a 404 is `None`; 401 and 403 are [`ManagementError::Refused`].
    fn json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<Option<T>, ManagementError> {
        let (status, body) = self.get(path)?;
        match status {
            200 => serde_json::from_str(&body)
                .map(Some)
                .map_err(|e| ManagementError::Decode {
                    url: self.ep.base.clone(),
                    path: path.into(),
                    reason: e.to_string(),
                }),
            404 => Ok(None),
            401 | 403 => Err(ManagementError::Refused {
                url: self.ep.base.clone(),
                user: self.ep.login.clone(),
                status,
            }),
            _ => Err(ManagementError::Status {
                url: self.ep.base.clone(),
                path: path.into(),
                status,
                body: self.ep.scrub(&crate::escape::text(
                    &body.chars().take(300).collect::<String>(),
                )),
            }),
        }
    }
}

#[derive(Deserialize)]
struct Overview {
    #[serde(default)]
    rabbitmq_version: String,
}

#[derive(Deserialize)]
struct ApiQueue {
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    arguments: serde_json::Value,
    #[serde(default)]
    effective_policy_definition: serde_json::Value,
    /// The policy's name (`null` or absent when none applies).
    #[serde(default)]
    policy: Option<String>,
}

impl ApiQueue {
    /// A policy is named but its definition is not there yet: the API's view lags a
    /// change.
    fn lags(&self) -> bool {
        self.policy.as_deref().is_some_and(|p| !p.is_empty())
            && values(&self.effective_policy_definition).is_empty()
    }
}

/// How long to wait before reading the queues again when their data lags a policy
/// change.
pub const LAG_RETRY: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct ApiExchange {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    arguments: serde_json::Value,
}

#[derive(Deserialize)]
struct ApiBinding {
    source: String,
    destination: String,
    destination_type: String,
    #[serde(default)]
    routing_key: String,
}

#[derive(Deserialize)]
struct ApiUser {
    /// A list (3.10 and later) or a comma-separated string (older).
    #[serde(default)]
    tags: serde_json::Value,
}

#[derive(Deserialize)]
struct ApiPermissions {
    configure: String,
    write: String,
    read: String,
}

/// An object's entries as [`Value`]s (the API writes an empty one as `[]` at times).
fn values(v: &serde_json::Value) -> BTreeMap<String, Value> {
    let Some(map) = v.as_object() else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => Value::Text(s.clone()),
                serde_json::Value::Number(n) if n.is_i64() => {
                    Value::Int(n.as_i64().unwrap_or_default())
                }
                other => Value::Other(other.to_string()),
            };
            (k.clone(), value)
        })
        .collect()
}

/// Read the vhost of `ep` whole.
pub fn snapshot(ep: &Endpoint) -> Result<Snapshot, ManagementError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ep.login, ep.password));
    let client = Client {
        agent,
        ep: ep.clone(),
        auth: format!("Basic {token}"),
    };
    let vh = seg(&ep.vhost);
    let no_vhost = || ManagementError::NoVhost {
        url: ep.base.clone(),
        vhost: ep.vhost.clone(),
    };
    let overview: Overview = client
        .json("/api/overview?columns=rabbitmq_version")?
        .ok_or_else(|| ManagementError::Unreachable {
            url: ep.base.clone(),
            reason: "/api/overview is not there".into(),
        })?;
    let queues_path =
        format!("/api/queues/{vh}?columns=name,type,arguments,effective_policy_definition,policy");
    let mut queues: Vec<ApiQueue> = client.json(&queues_path)?.ok_or_else(no_vhost)?;
    if queues.iter().any(ApiQueue::lags) {
        tracing::info!(
            "a queue's policy is named but not yet in effect; reading the queues again in 2 s"
        );
        std::thread::sleep(LAG_RETRY);
        queues = client.json(&queues_path)?.ok_or_else(no_vhost)?;
    }
    let exchanges: Vec<ApiExchange> = client
        .json(&format!("/api/exchanges/{vh}?columns=name,type,arguments"))?
        .ok_or_else(no_vhost)?;
    let bindings: Vec<ApiBinding> = client
        .json(&format!("/api/bindings/{vh}"))?
        .ok_or_else(no_vhost)?;
    let user_tags = match client.json::<ApiUser>(&format!("/api/users/{}", seg(&ep.user))) {
        Ok(Some(u)) => Some(match u.tags {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect(),
            serde_json::Value::String(s) => s
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            _ => Vec::new(),
        }),
        Ok(None) | Err(ManagementError::Refused { .. }) => None,
        Err(e) => return Err(e),
    };
    let permissions = match client
        .json::<ApiPermissions>(&format!("/api/permissions/{vh}/{}", seg(&ep.user)))
    {
        Ok(Some(p)) => Access::Granted(Permissions {
            configure: p.configure,
            write: p.write,
            read: p.read,
        }),
        Ok(None) => Access::None,
        Err(ManagementError::Refused { user, status, .. }) => Access::Unreadable(format!(
            "the management API refused {user} (HTTP {status}): reading permissions needs the administrator tag"
        )),
        Err(e) => return Err(e),
    };
    Ok(Snapshot {
        version: overview.rabbitmq_version,
        vhost: ep.vhost.clone(),
        user: ep.user.clone(),
        queues: queues
            .into_iter()
            .map(|q| Queue {
                name: q.name,
                kind: q.kind.unwrap_or_else(|| "classic".into()),
                arguments: values(&q.arguments),
                policy: values(&q.effective_policy_definition),
                policy_name: q.policy.filter(|p| !p.is_empty()),
            })
            .collect(),
        exchanges: exchanges
            .into_iter()
            .map(|e| {
                let alternate = values(&e.arguments)
                    .get("alternate-exchange")
                    .and_then(|v| v.as_text().map(String::from));
                Exchange {
                    name: e.name,
                    kind: e.kind,
                    alternate,
                }
            })
            .collect(),
        bindings: bindings
            .into_iter()
            .map(|b| Binding {
                source: b.source,
                destination: if b.destination_type == "exchange" {
                    Destination::Exchange(b.destination)
                } else {
                    Destination::Queue(b.destination)
                },
                routing_key: b.routing_key,
            })
            .collect(),
        permissions,
        user_tags,
        amqp_failure: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_address_comes_from_the_amqp_url_or_the_override() {
        let ep = Endpoint::new("amqp://u:s3cret@rabbit:5674/prod", None).expect("url");
        assert_eq!(ep.base, "http://rabbit:15672");
        assert_eq!((ep.vhost.as_str(), ep.user.as_str()), ("prod", "u"));
        assert_eq!((ep.login.as_str(), ep.password.as_str()), ("u", "s3cret"));
        let ep = Endpoint::new("amqps://u:p@h/%2f", None).expect("url");
        assert_eq!(
            (ep.base.as_str(), ep.vhost.as_str()),
            ("https://h:15671", "/")
        );
        let ep = Endpoint::new("amqp://dlqd:p@h/%2f", Some("http://admin:adm%21n@h:15675/"))
            .expect("url");
        assert_eq!(ep.base, "http://h:15675");
        assert_eq!(
            (ep.login.as_str(), ep.password.as_str()),
            ("admin", "adm!n")
        );
        assert_eq!(
            ep.user, "dlqd",
            "the permissions checked are the AMQP user's"
        );
        let ep = Endpoint::new("amqp://dlqd:p@h/%2f", Some("http://h:1")).expect("url");
        assert_eq!((ep.login.as_str(), ep.password.as_str()), ("dlqd", "p"));
        assert!(format!("{ep:?}").find("\"p\"").is_none());
    }

    #[test]
    fn errors_never_show_a_password() {
        let e = Endpoint::new("amqp://u:hunter2@h:x/%2f", None).expect_err("bad port");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = Endpoint::new("amqp://u:p@h/%2f", Some("ftp://a:hunter2@h")).expect_err("scheme");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let ep = Endpoint::new(
            "amqp://u:hunter2@127.0.0.1:1/%2f",
            Some("http://127.0.0.1:1"),
        )
        .expect("url");
        let e = snapshot(&ep).expect_err("nothing listens on port 1");
        let text = e.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("rabbitmq-plugins enable rabbitmq_management"),
            "{text}"
        );
    }

    #[test]
    fn arguments_and_policies_become_values() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"x-dead-letter-exchange":"dlx","x-delivery-limit":5,"x-single-active-consumer":true}"#,
        )
        .expect("json");
        let got = values(&v);
        assert_eq!(got["x-dead-letter-exchange"], Value::Text("dlx".into()));
        assert_eq!(got["x-delivery-limit"], Value::Int(5));
        assert_eq!(got["x-single-active-consumer"], Value::Other("true".into()));
        // An empty policy is written `[]` by some versions.
        assert!(values(&serde_json::json!([])).is_empty());
    }

    #[test]
    fn a_named_policy_without_its_definition_lags() {
        let q = |v: serde_json::Value| serde_json::from_value::<ApiQueue>(v).expect("queue");
        assert!(q(json!({"name": "a", "policy": "p", "effective_policy_definition": []})).lags());
        assert!(q(json!({"name": "a", "policy": "p", "effective_policy_definition": {}})).lags());
        let settled =
            json!({"name": "a", "policy": "p", "effective_policy_definition": {"max-length": 1}});
        assert!(!q(settled).lags());
        assert!(!q(json!({"name": "a", "policy": null, "effective_policy_definition": []})).lags());
        assert!(!q(json!({"name": "a"})).lags());
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("/"), "%2F");
        assert_eq!(seg("a.b c"), "a.b%20c");
    }
}
