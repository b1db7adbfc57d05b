//! The MQTT bridge against real brokers (Debian's mosquitto, tansu) and the real binaries:
//! QoS 1 messages with the bridge killed by -9 in the middle: none lost, none doubled in
//! the table. Under MQTT 3.1.1 on plain TCP (100,000 messages), and under MQTT 5 over TLS
//! with a client certificate the broker requires.

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
