//! The MQTT bridge against real brokers (Debian's mosquitto, tansu) and the real binaries:
//! QoS 1 messages with the bridge killed by -9 in the middle: none lost, none doubled in
//! the table. Under MQTT 3.1.1 on plain TCP (100,000 messages), and under MQTT 5 over TLS
//! with a client certificate the broker requires. Topics bound to registered devices: what a
//! device may not send is kept on the rejected topic with its reason.

mod harness;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Broker, Processor, Topics};
use veritrace_testkit::mosquitto::Mosquitto;
use veritrace_testkit::tls::Pki;
use veritrace_testkit::{free_port, metrics};

struct Bridge {
    child: Option<Child>,
    metrics_port: u16,
}

impl Bridge {
    fn start(mqtt: &str, kafka: &str, log: &std::path::Path, env: &[(String, String)]) -> Bridge {
        Self::start_with(mqtt, kafka, log, env, &[])
    }

    fn start_with(
        mqtt: &str,
        kafka: &str,
        log: &std::path::Path,
        env: &[(String, String)],
        extra: &[&str],
    ) -> Bridge {
        let metrics_port = free_port();
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_veritrace"))
            .args(["mqtt-bridge", "--mqtt", mqtt, "--brokers", kafka])
            .args([
                "--client-id",
                "bridge-under-test",
                "--route",
                "veritrace/#=veritrace.raw",
            ])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("start the bridge");
        veritrace_testkit::wait_port(
            metrics_port,
            "mqtt bridge",
            Duration::from_secs(60),
            Some(log),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Bridge {
            child: Some(child),
            metrics_port,
        }
    }

    fn metric(&self, name: &str) -> f64 {
        metrics::scrape(self.metrics_port)
            .ok()
            .and_then(|t| metrics::sum(&t, name))
            .unwrap_or(0.0)
    }

    fn wait_connected(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        while self.metric("veritrace_mqtt_connected") < 1.0 {
            assert!(Instant::now() < until, "the bridge did not connect");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(mut self) {
        if let Some(c) = self.child.take() {
            veritrace_testkit::signal(&c, "-KILL");
            let mut c = c;
            let _ = c.wait();
        }
    }

    fn stop(mut self) {
        let mut c = self.child.take().expect("running");
        veritrace_testkit::signal(&c, "-TERM");
        let st = c.wait().expect("wait");
        assert!(st.success(), "the bridge exited with {st}");
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Publishes `n` QoS 1 messages (each an event with its own id) and waits for every PUBACK.
fn publish_all(addr: &str, n: u64) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
    let (host, port) = addr.split_once(':').expect("addr");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut opts = MqttOptions::new("publisher", host, port.parse().expect("port"));
        opts.set_keep_alive(Duration::from_secs(30)).set_inflight(200);
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let sender = tokio::spawn(async move {
            for i in 0..n {
                let event = format!(
                    r#"{{"event_id":"mq-{i}","event_type":"telemetry","event_time":"2026-11-01T00:00:00Z","participant":{{"id":"P1","role":"manufacturer"}},"device_id":"dev-{}","readings":{{"t":{}}}}}"#,
                    i % 16,
                    i % 100
                );
                client
                    .publish(format!("veritrace/dev-{}/events", i % 16), QoS::AtLeastOnce, false, event)
                    .await
                    .expect("publish");
            }
            client
        });
        let mut acked = 0u64;
        while acked < n {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => panic!("publisher: {e}"),
            }
        }
        let client = sender.await.expect("sender");
        let _ = client.disconnect().await;
    });
}

/// Publishes each `(topic, payload)` with QoS 1 and waits for every PUBACK.
fn publish_each(addr: &str, messages: Vec<(String, Vec<u8>)>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let (host, port) = addr.split_once(':').expect("addr");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut opts = MqttOptions::new("devices", host, port.parse().expect("port"));
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let n = messages.len();
        for (topic, payload) in messages {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("publish");
        }
        let mut acked = 0;
        while acked < n {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher: {e}"),
            }
        }
        let _ = client.disconnect().await;
    });
}

#[test]
fn a_topic_bound_to_a_device_takes_only_what_that_device_may_send() {
    use veritrace_verify::signature::{Alg, Claims, SigningKey, sign_jws};
    let mqtt = Mosquitto::start();
    let broker = Broker::start();
    broker.create_topics(1);
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let key = |seed: u8| SigningKey::from_bytes(Alg::EdDsa, &[seed; 32]).expect("key");
    let key_file = |name: &str, k: &SigningKey| {
        let SigningKey::Ed25519(sk) = k else {
            unreachable!("EdDSA keys")
        };
        let path = tmp.path().join(format!("{name}.key"));
        std::fs::write(
            &path,
            serde_json::json!({"format": "veritrace.key/1", "alg": "EdDSA", "secret": hex::encode(sk.to_bytes())})
                .to_string(),
        )
        .expect("key file");
        path.to_str().expect("path").to_owned()
    };
    let (root, admin1, admin2, d1, d3) = (key(1), key(11), key(12), key(21), key(23));
    let config = tmp.path().join("veritrace.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = {:?}\n[signatures]\nroot-key = {:?}\npolicy = \"record\"\n[mqtt.devices]\n\"veritrace/devices/+/events\" = \"{{3}}\"\n",
            data.to_str().expect("path"),
            root.public().to_text()
        ),
    )
    .expect("config");
    let cfg = config.to_str().expect("path").to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let at = (now - 1000).to_string();
    let veritrace = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_veritrace"))
            .args(["--config", &cfg])
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let root_file = key_file("root", &root);
    for (id, admin) in [("P1", &admin1), ("P2", &admin2)] {
        veritrace(&[
            "participant",
            "register",
            "--root-key",
            &root_file,
            "--id",
            id,
            "--name",
            id,
            "--role",
            "manufacturer",
            "--admin-key",
            &admin.public().to_text(),
            "--at",
            &at,
        ]);
    }
    for (id, owner, admin, dev) in [("d1", "P1", &admin1, &d1), ("d3", "P2", &admin2, &d3)] {
        veritrace(&[
            "device",
            "register",
            "--admin-key",
            &key_file(id, admin),
            "--participant",
            owner,
            "--id",
            id,
            "--key",
            &dev.public().to_text(),
            "--at",
            &at,
        ]);
    }

    let event = |id: &str, participant: &str| {
        serde_json::json!({
            "event_id": id,
            "event_type": "production",
            "event_time": "2026-11-01T08:00:00Z",
            "participant": {"id": participant, "role": "manufacturer"},
            "trace_code": format!("(01)09506000134352(21){id}"),
        })
        .to_string()
        .into_bytes()
    };
    let signed = |k: &SigningKey, iss: &str, id: &str, participant: &str| {
        let claims = Claims {
            iss: Some(iss.into()),
            sub: Some(format!("(01)09506000134352(21){id}")),
            iat: Some(now),
        };
        sign_jws(k, &k.public().key_id(), &claims, &event(id, participant)).into_bytes()
    };
    let log = tmp.path().join("bridge.log");
    let bridge = Bridge::start_with(
        &mqtt.addr(),
        &broker.addr(),
        &log,
        &[],
        &["--config", &cfg, "--data", data.to_str().expect("path")],
    );
    bridge.wait_connected();
    let d1_topic = "veritrace/devices/d1/events".to_owned();
    publish_each(
        &mqtt.addr(),
        vec![
            // d1's own statement, and an unsigned reading on its topic: forwarded.
            (d1_topic.clone(), signed(&d1, "d1", "e1", "P1")),
            (d1_topic.clone(), event("e4", "P1")),
            // On d1's topic, a statement signed by d3 of another participant: refused.
            (d1_topic.clone(), signed(&d3, "d3", "e2", "P2")),
            // A topic naming a device nobody registered: refused.
            ("veritrace/devices/d9/events".to_owned(), event("e3", "P1")),
            // A topic no binding covers: forwarded as before.
            ("veritrace/lab/x".to_owned(), event("e5", "P1")),
        ],
    );
    let proc = Processor::start(&broker.addr(), &data, "proc", &["--config", &cfg]);
    proc.wait_for(
        "the forwarded events sealed",
        Duration::from_secs(120),
        |m| metrics::sum(m, "veritrace_accepted_events_total").unwrap_or(0.0) >= 3.0,
    );
    let mut rejected: Vec<(String, String, String)> = harness::read_rejected(&broker.addr(), 2)
        .into_iter()
        .map(|r| {
            let v: serde_json::Value = std::str::from_utf8(&r.payload)
                .ok()
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_default();
            let id = v["event_id"]
                .as_str()
                .map_or_else(|| "signed".to_owned(), str::to_owned);
            (
                r.headers
                    .get("veritrace-reason")
                    .cloned()
                    .unwrap_or_default(),
                r.headers
                    .get("veritrace-source")
                    .cloned()
                    .unwrap_or_default(),
                id,
            )
        })
        .collect();
    rejected.sort();
    assert_eq!(
        rejected,
        [
            (
                "signer_not_authorized".to_owned(),
                "mqtt:veritrace/devices/d1/events".to_owned(),
                "signed".to_owned()
            ),
            (
                "unknown_signer".to_owned(),
                "mqtt:veritrace/devices/d9/events".to_owned(),
                "e3".to_owned()
            ),
        ]
    );
    assert_eq!(bridge.metric("veritrace_mqtt_refused_total"), 2.0);
    bridge.stop();
    proc.stop();
    let out = Command::new(env!("CARGO_BIN_EXE_veritrace"))
        .args(["--config", &cfg, "sql", "--format", "json"])
        .arg("SELECT event_id, signer FROM events WHERE event_id LIKE 'e%' ORDER BY event_id")
        .output()
        .expect("sql");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        rows,
        serde_json::json!([
            {"event_id": "e1", "signer": "d1"},
            {"event_id": "e4"},
            {"event_id": "e5"},
        ])
    );
}

#[test]
fn the_mqtt_bridge_killed_with_9_loses_nothing_and_doubles_nothing() {
    let mqtt = Mosquitto::start();
    run(&mqtt, mqtt.port, 100_000, &[]);
}

#[test]
fn the_mqtt_5_bridge_over_tls_with_a_client_certificate_killed_with_9_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = Pki::new(tmp.path(), "mqtt").expect("pki");
    let server = pki.server("mosquitto").expect("server cert");
    let bridge = pki.client("veritrace-bridge").expect("client cert");
    let mqtt = Mosquitto::start_tls(&server, &pki.ca_file);
    let path = |p: &std::path::Path| p.to_str().expect("path").to_owned();
    let env = [
        ("VERITRACE__MQTT__PROTOCOL", "5".to_owned()),
        ("VERITRACE__MQTT__TLS__CA", path(&pki.ca_file)),
        ("VERITRACE__MQTT__TLS__CERT", path(&bridge.cert)),
        ("VERITRACE__MQTT__TLS__KEY", path(&bridge.key)),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let tls_port = mqtt.tls_port.expect("TLS listener");
    // The broker requires the certificate: without it the bridge never gets a session.
    let broker = Broker::start();
    let log = tmp.path().join("no-cert.log");
    let without = Bridge::start(
        &format!("127.0.0.1:{tls_port}"),
        &broker.addr(),
        &log,
        &env[..2],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        without.metric("veritrace_mqtt_connected"),
        0.0,
        "connected without a client certificate"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("mqtts://") && text.contains("MQTT 5"),
        "{text}"
    );
    without.stop();
    drop(broker);
    run(&mqtt, tls_port, 30_000, &env);
}

/// Devices publish `n` messages on the plain listener; the bridge reads them from
/// `bridge_port` (configured by `env`), is killed by -9 at a fifth, restarted; every
/// message must be one row.
fn run(mqtt: &Mosquitto, bridge_port: u16, n: u64, env: &[(String, String)]) {
    let broker = Broker::start();
    broker.create_topics(2);
    let tmp = tempfile::tempdir().expect("tmp");
    let log = tmp.path().join("bridge.log");
    let bridge_addr = format!("127.0.0.1:{bridge_port}");
    let bridge = Bridge::start(&bridge_addr, &broker.addr(), &log, env);
    bridge.wait_connected();

    let addr = mqtt.addr();
    let publisher = std::thread::spawn(move || publish_all(&addr, n));
    // Kill the bridge in the middle of the run, with messages in flight.
    let until = Instant::now() + Duration::from_secs(300);
    while bridge.metric("veritrace_mqtt_published_total") < (n / 5) as f64 {
        assert!(
            Instant::now() < until,
            "the bridge forwarded too little; log:\n{}",
            harness::tail(&log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    bridge.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let bridge = Bridge::start(&bridge_addr, &broker.addr(), &log, env);
    publisher.join().expect("publisher");

    let data = tmp.path().join("data");
    let proc = Processor::start(&broker.addr(), &data, "proc", &[]);
    proc.wait_for("every message sealed once", Duration::from_secs(600), |m| {
        metrics::sum(m, "veritrace_accepted_events_total").unwrap_or(0.0) >= n as f64
    });
    // The restarted bridge took over mid-run: it received what the killed one left.
    assert!(
        bridge.metric("veritrace_mqtt_received_total") > 0.0,
        "no redelivery after the kill"
    );
    bridge.stop();
    proc.stop();
    let out = Command::new(env!("CARGO_BIN_EXE_veritrace"))
        .args([
            "sql",
            "--data",
            data.to_str().expect("path"),
            "--format",
            "json",
        ])
        .arg("SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events")
        .output()
        .expect("sql");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows[0]["n"], n, "{rows}");
    assert_eq!(rows[0]["ids"], n, "{rows}");
}
