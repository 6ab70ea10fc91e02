//! amqps:// against a private node with a TLS listener, using a CA, a server certificate
//! and a client certificate the test makes with the openssl CLI. The node asks for and
//! checks the client certificate (verify_peer, fail_if_no_peer_cert). dlqd trusts the
//! test CA through DLQD_TLS_CA_FILE and presents its certificate through
//! DLQD_TLS_CERT_FILE/DLQD_TLS_KEY_FILE; without the CA it refuses the server.

mod hardening_common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hardening_common::*;
use lapin::types::FieldTable;
use support::private_node::PrivateNode;

const PASSWORD: &str = "Tls-9pw-S3CRET";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run /usr/bin/openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ca.pem, server.pem/server.key (for 127.0.0.1 and localhost), client.pem/client.key.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=dlqd test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for (name, cn) in [("server", "localhost"), ("client", "dlqd")] {
        let subj = format!("/CN={cn}");
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let mut req = vec!["req", "-new", "-subj", &subj];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_a_private_ca_and_a_client_certificate() {
    // Where the node can read them (inside its chroot when it runs in one).
    let certs = support::private_node::node_tempdir("dlqd-tls.");
    let dir = certs.path();
    make_certificates(dir);
    let tls_port = free_port();
    let p = |f: &str| support::private_node::node_path(&dir.join(f));
    // dlqd (on the host) reads them by their host paths.
    let host = |f: &str| dir.join(f).display().to_string();
    let conf = format!(
        "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
         ssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\n\
         ssl_options.keyfile = {}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = true\n",
        p("ca.pem"),
        p("server.pem"),
        p("server.key")
    );
    let node = PrivateNode::start_with_conf(&conf);
    node.ctl(&["add_user", "dlqd", PASSWORD]);
    node.ctl(&["set_permissions", "-p", "/", "dlqd", ".*", ".*", ".*"]);

    let mut b = Broker::connect_to(&node.url())
        .await
        .expect("plain admin connection");
    b.queue_with("dlq", FieldTable::default()).await;
    b.queue_with("parked", FieldTable::default()).await;
    for i in 0..5 {
        b.publish("dlq", format!("m{i}").as_bytes(), props(&format!("m{i}")))
            .await;
    }

    let url = format!("amqps://dlqd:{PASSWORD}@127.0.0.1:{tls_port}/%2f");
    let run = [
        "run",
        "--once",
        "--queue",
        "dlq",
        "--rule",
        "ACTION(FWD) FWDQ(parked)",
    ];

    // Without the CA: the server's certificate is not trusted; nothing moves.
    let (u, args) = (url.clone(), run.map(String::from));
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dlqd_for(&args, &[("DLQD_URL", &u)], Duration::from_secs(4))
    })
    .await
    .expect("join");
    let log = stderr_of(&out);
    assert!(
        log.to_lowercase().contains("certificate"),
        "an untrusted server is refused, saying why: {}",
        tail(&log, 3000)
    );
    assert!(!log.contains(PASSWORD), "password in the log: {log}");
    assert_eq!(b.count("dlq").await, 5);

    // A CA file that is not PEM: a clear, fatal error (exit 1), no retry loop.
    std::fs::write(dir.join("junk.pem"), "not a certificate").expect("junk");
    let (u, args, junk) = (url.clone(), run.map(String::from), host("junk.pem"));
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dlqd_env(
            &args,
            &[("DLQD_URL", &u), ("DLQD_TLS_CA_FILE", &junk)],
            Duration::from_secs(30),
        )
    })
    .await
    .expect("join");
    let log = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("DLQD_TLS_CA_FILE"), "{log}");
    assert!(!log.contains(PASSWORD), "password in the log: {log}");

    // With the CA and the client certificate: the drain works over TLS.
    let (u, args) = (url.clone(), run.map(String::from));
    let (ca, cert, key) = (host("ca.pem"), host("client.pem"), host("client.key"));
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dlqd_env(
            &args,
            &[
                ("DLQD_URL", &u),
                ("DLQD_TLS_CA_FILE", &ca),
                ("DLQD_TLS_CERT_FILE", &cert),
                ("DLQD_TLS_KEY_FILE", &key),
            ],
            Duration::from_secs(60),
        )
    })
    .await
    .expect("join");
    let log = stderr_of(&out);
    assert!(out.status.success(), "{}\n{}", out.status, tail(&log, 4000));
    assert!(
        log.contains(&format!("amqps://dlqd:***@127.0.0.1:{tls_port}")),
        "{log}"
    );
    assert!(!log.contains(PASSWORD), "password in the log: {log}");
    let moved = b.drain("parked").await;
    assert_eq!(
        moved.iter().map(Got::id).collect::<Vec<_>>(),
        vec!["m0", "m1", "m2", "m3", "m4"]
    );
    assert_eq!(b.count("dlq").await, 0);
    b.cleanup().await;
}

/// A port nothing listens on right now (for the node's TLS listener).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
