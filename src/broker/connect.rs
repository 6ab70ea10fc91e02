//! Connecting to the broker: the URL (`--url`, `DLQD_URL`, default), amqps via rustls,
//! and redaction so that a password never reaches a log line or an error message.
//!
//! For `amqps://`, the server certificate is checked against the system's roots plus,
//! when set, the PEM certificates in the file named by `DLQD_TLS_CA_FILE` (a private
//! CA). `DLQD_TLS_CERT_FILE` and `DLQD_TLS_KEY_FILE` (PEM certificate chain and PKCS#8
//! key) give a client certificate for brokers that ask for one (`verify_peer`).

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

/// PEM file of extra CA certificates to trust for amqps://.
pub const TLS_CA_ENV: &str = "DLQD_TLS_CA_FILE";
/// PEM file of the client certificate (chain) for amqps://.
pub const TLS_CERT_ENV: &str = "DLQD_TLS_CERT_FILE";
/// PEM file of the client certificate's PKCS#8 private key.
pub const TLS_KEY_ENV: &str = "DLQD_TLS_KEY_FILE";

/// Why a connection could not be made. Every URL in it is redacted.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid broker URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        url: String,
        reason: String,
        /// The broker's reply code when it refused (403 credentials, 530 vhost).
        code: Option<u16>,
    },
    /// The TLS files (DLQD_TLS_*_FILE) cannot be used; reconnecting cannot help.
    #[error("TLS setup for {url}: {reason}")]
    Tls { url: String, reason: String },
}

/// The TLS configuration from `DLQD_TLS_CA_FILE`, `DLQD_TLS_CERT_FILE`, `DLQD_TLS_KEY_FILE`.
pub fn tls_config_from_env() -> Result<OwnedTLSConfig, String> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let read = |name: &str, path: &std::ffi::OsStr| {
        std::fs::read(path).map_err(|e| format!("cannot read {name}={}: {e}", path.display()))
    };
    let cert_chain = match var(TLS_CA_ENV) {
        Some(path) => {
            let pem = read(TLS_CA_ENV, &path)?;
            let text = String::from_utf8(pem)
                .map_err(|_| format!("{TLS_CA_ENV}={} is not PEM text", path.display()))?;
            if !text.contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "{TLS_CA_ENV}={} holds no PEM certificate",
                    path.display()
                ));
            }
            Some(text)
        }
        None => None,
    };
    let identity = match (var(TLS_CERT_ENV), var(TLS_KEY_ENV)) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read(TLS_CERT_ENV, &cert)?,
            key: read(TLS_KEY_ENV, &key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(format!(
                "{TLS_CERT_ENV} and {TLS_KEY_ENV} must be given together"
            ));
        }
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

/// Where the user information of `rest` (the URL after `scheme://`) ends: the `@` that
/// ends the authority, or — when a password holds an unencoded `/`, `?` or `#`, so the
/// authority seems to end before its `@` — the first `@` after the user's `:`. Either
/// way a password is never taken for part of the host or the path.
pub(crate) fn userinfo_end(rest: &str) -> Option<usize> {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if let Some(at) = rest[..authority_end].rfind('@') {
        return Some(at);
    }
    let colon = rest[..authority_end].find(':')?;
    rest[colon..].find('@').map(|at| colon + at)
}

/// The URL with its password replaced by `***` (user, host, port and vhost kept).
///
/// `amqp://guest:secret@host:5672/%2f` → `amqp://guest:***@host:5672/%2f`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let shown = match userinfo_end(rest) {
        None => url.to_string(),
        Some(at) => {
            let (userinfo, tail) = rest.split_at(at);
            match userinfo.find(':') {
                Some(colon) => format!("{scheme}{}:***{tail}", &userinfo[..colon]),
                None => url.to_string(),
            }
        }
    };
    // A URL without an authority (`amqp:///u:p@h`, `amqp:/u:p@h`) may hold user
    // information where no authority is: whatever sits between a `:` and an `@` goes too.
    let mut out = shown;
    if scheme.is_empty() || rest.starts_with('/') {
        for secret in loose_secrets(url) {
            out = out.replace(&secret, "***");
        }
    }
    out
}

/// Every `PASS` of a `:PASS@` anywhere in `url` (not `***`, already redacted), for
/// URLs whose user information is not where a well-formed URL has it.
fn loose_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in url.match_indices('@') {
        if let Some(colon) = url[..at].rfind(':') {
            let pass = &url[colon + 1..at];
            if !pass.is_empty() && pass != "***" && !pass.starts_with('/') {
                out.push(pass.to_string());
            }
        }
    }
    out
}

/// The password of a URL, raw and percent-decoded, for scrubbing error texts.
fn secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    if let Some(at) = userinfo_end(rest)
        && let Some((_, pass)) = rest[..at].split_once(':')
        && !pass.is_empty()
    {
        out.push(pass.to_string());
        let decoded = percent_decode(pass);
        if decoded != pass {
            out.push(decoded);
        }
    }
    let authority_less = rest.starts_with('/') || !url.contains("://");
    for pass in loose_secrets(url).into_iter().filter(|_| authority_less) {
        let decoded = percent_decode(&pass);
        if decoded != pass {
            out.push(decoded);
        }
        out.push(pass);
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// A hint for a URL lapin cannot parse whose password holds characters that must be
/// percent-encoded.
fn url_hint(url: &str) -> &'static str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let password_has_delimiters = userinfo_end(rest).is_some_and(|at| at > authority_end);
    if password_has_delimiters {
        " (the password holds '/', '?' or '#': percent-encode them as %2F, %3F, %23)"
    } else {
        ""
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every occurrence of the URL's password replaced by `***`.
pub fn scrub(url: &str, text: &str) -> String {
    let mut out = text.to_string();
    for secret in secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// How long one address may take to accept a connection before the next is tried.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Connect to the first of `urls` (the nodes of one cluster) that accepts, starting at
/// `start` and going round once; the connection and the index of its URL. Each address
/// gets [`CONNECT_TIMEOUT`]. The error is the last address's (a bad URL or TLS setup,
/// which no other address can cure, is returned at once).
pub async fn connect_any(
    urls: &[String],
    start: usize,
) -> Result<(Connection, usize), ConnectError> {
    let mut last = None;
    for k in 0..urls.len().max(1) {
        let i = (start + k) % urls.len().max(1);
        let Some(url) = urls.get(i) else { break };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(url)).await {
            Ok(Ok(conn)) => return Ok((conn, i)),
            Ok(Err(e @ (ConnectError::BadUrl { .. } | ConnectError::Tls { .. }))) => return Err(e),
            Ok(Err(e)) => {
                if urls.len() > 1 {
                    tracing::warn!(error = %e, "broker address unavailable; trying the next");
                }
                last = Some(e);
            }
            Err(_) => {
                let e = ConnectError::Connect {
                    url: redact(url),
                    reason: format!("no answer within {CONNECT_TIMEOUT:?}"),
                    code: None,
                };
                if urls.len() > 1 {
                    tracing::warn!(error = %e, "broker address unavailable; trying the next");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(ConnectError::BadUrl {
        url: String::new(),
        reason: "no broker URL given".into(),
    }))
}

/// A broker URL starts with `amqp://` or `amqps://`. Anything else is refused before
/// lapin reads it: lapin takes `amqp:/user:pass@host/vh` for a URL whose vhost holds the
/// user information, and the broker's "vhost ... not found" would then carry the password.
/// The error shows only what precedes the first `/` after the scheme's `:` — never the
/// user information.
pub fn check_scheme(url: &str) -> Result<(), ConnectError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("amqp://") || lower.starts_with("amqps://") {
        let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
        // `amqp:///u:p@h/vh`: no authority, the user information in the vhost.
        if rest.starts_with('/') && rest.contains('@') {
            let scheme = &url[..url.find("://").unwrap_or(0)];
            return Err(ConnectError::BadUrl {
                url: format!("{scheme}:///…"),
                reason: format!(
                    "`{scheme}:///` has no host, and what follows holds an `@`: write {scheme}://user:password@host:5672/%2f"
                ),
            });
        }
        return Ok(());
    }
    let known = |s: &str| {
        ["amqp", "amqps", "http", "https"]
            .iter()
            .any(|k| s.eq_ignore_ascii_case(k))
    };
    let shown = match url.find(':') {
        Some(colon) if known(&url[..colon]) => {
            let slashes = url[colon + 1..].len() - url[colon + 1..].trim_start_matches('/').len();
            format!("{}…", &url[..colon + 1 + slashes])
        }
        _ => "…".to_string(),
    };
    let starts = match shown.trim_end_matches('…') {
        "" => String::new(),
        s => format!(" (this one starts with `{s}`)"),
    };
    Err(ConnectError::BadUrl {
        url: shown.clone(),
        reason: format!(
            "a broker URL starts with amqp:// or amqps://{starts}, e.g. amqp://user:password@host:5672/%2f"
        ),
    })
}

/// Open a connection to `url` (`amqp://` or `amqps://`, TLS through rustls).
pub async fn connect(url: &str) -> Result<Connection, ConnectError> {
    check_scheme(url)?;
    let uri: AMQPUri = url.parse().map_err(|e: String| ConnectError::BadUrl {
        url: redact(url),
        reason: format!("{}{}", scrub(url, &e), url_hint(url)),
    })?;
    let props = ConnectionProperties::default().with_connection_name("dlqd".into());
    let tls = tls_config_from_env().map_err(|reason| ConnectError::Tls {
        url: redact(url),
        reason,
    })?;
    let runtime = lapin::runtime::default_runtime().map_err(|e| ConnectError::Connect {
        url: redact(url),
        reason: scrub(url, &e.to_string()),
        code: None,
    })?;
    Connection::connect_uri_with_config(uri, props, tls, runtime)
        .await
        .map_err(|e| ConnectError::Connect {
            url: redact(url),
            reason: scrub(url, &e.to_string()),
            code: crate::broker::error::reply_code(&e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_only() {
        let cases = [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            ("amqps://u:p%40ss@h/vh?x=1", "amqps://u:***@h/vh?x=1"),
            ("amqp://u:p@ss@h", "amqp://u:***@h"),
            ("amqp://user@h:1", "amqp://user@h:1"),
            ("amqp://h", "amqp://h"),
            ("amqp://u:pw@h/path:with@at", "amqp://u:***@h/path:with@at"),
            ("garbage", "garbage"),
            // Generated secrets with unencoded delimiters.
            (
                "amqp://dlqd:ab/c#d?e@h:5672/vh",
                "amqp://dlqd:***@h:5672/vh",
            ),
            ("amqp://dlqd:x?y@h", "amqp://dlqd:***@h"),
            ("amqps://dlqd:p#w@h/%2f", "amqps://dlqd:***@h/%2f"),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn scrubs_raw_and_decoded_passwords() {
        let url = "amqp://u:s%40cret@h";
        assert_eq!(scrub(url, "bad s%40cret and s@cret"), "bad *** and ***");
        assert_eq!(scrub("amqp://h", "nothing"), "nothing");
    }

    #[test]
    fn bad_url_error_has_no_password() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let err = rt
            .block_on(connect("amqp://u:hunter2@h:notaport/%2f"))
            .expect_err("bad port");
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("u:***@h"), "{text}");
    }

    #[test]
    fn a_password_with_unencoded_delimiters_never_shows() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for url in [
            "amqp://dlqd:Zq/9w#Kp?x@127.0.0.1:5672/%2f",
            "amqp://dlqd:Zq/9w@127.0.0.1:5672/%2f",
            "amqp://dlqd:Zq?9w@127.0.0.1:1",
            "amqp://dlqd:Zq#9w@127.0.0.1:1",
        ] {
            let text = match rt.block_on(connect(url)) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{url} connected"),
            };
            for part in ["Zq/9w", "Zq?9w", "Zq#9w", "Kp", "9w"] {
                assert!(!text.contains(part), "{url}: {text}");
            }
            assert!(text.contains("dlqd:***@127.0.0.1"), "{url}: {text}");
        }
    }

    /// Regression: `amqp:/guest:Sup3rS3cret@host/%2f` (one slash) reached the broker,
    /// which answered "vhost guest:Sup3rS3cret@host// not found" — the password in the
    /// error. Refused before connecting now, the user information never shown.
    #[test]
    fn a_url_with_one_slash_is_refused_without_showing_the_password() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for url in [
            "amqp:/guest:Sup3rS3cret@127.0.0.1/%2f",
            "amqp:guest:Sup3rS3cret@127.0.0.1/%2f",
            "amqp:///guest:Sup3rS3cret@127.0.0.1/%2f",
            "http://guest:Sup3rS3cret@127.0.0.1/",
            "guest:Sup3rS3cret@127.0.0.1",
        ] {
            let text = match rt.block_on(connect(url)) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{url} connected"),
            };
            assert!(!text.contains("Sup3rS3cret"), "{url}: {text}");
            if !url.starts_with("amqp://") {
                // Refused before connecting: not even the user is shown.
                assert!(!text.contains("guest"), "{url}: {text}");
            }
        }
        let err = check_scheme("amqp:/guest:Sup3rS3cret@h/%2f").expect_err("one slash");
        assert!(err.to_string().contains("starts with `amqp:/`"), "{err}");
        check_scheme("AMQPS://u:p@h").expect("upper case is fine");
    }

    #[test]
    fn refused_connection_error_has_no_password() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let err = rt
            .block_on(connect("amqp://u:hunter2@127.0.0.1:1/%2f"))
            .expect_err("nothing listens on port 1");
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.starts_with("cannot connect to amqp://u:***@127.0.0.1:1/%2f"),
            "{text}"
        );
    }
}
