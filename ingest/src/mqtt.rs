//! The MQTT bridge (`veritrace mqtt-bridge`): devices publish to an existing MQTT broker;
//! the bridge subscribes (MQTT 3.1.1 or 5, QoS 1, a persistent session: a fixed client id
//! with clean session off, or under MQTT 5 clean start off and a session expiry; plain TCP
//! or TLS with an optional client certificate) and publishes each message to Kafka, acknowledging it to the MQTT
//! broker only once Kafka acknowledged it. A bridge killed at any moment loses nothing: what
//! it had not acknowledged, the broker delivers again when it reconnects, and what reaches
//! Kafka twice is one row (the processors dedupe by event id).
//!
//! Acknowledgements keep the order of the messages (MQTT requires it for QoS 1): a queue of
//! deliveries is awaited in order while new messages keep arriving, up to `max_in_flight`
//! (the broker stops sending when that many are unacknowledged). A Kafka failure is retried
//! with backoff, holding the queue: the broker is back-pressured, nothing is dropped.
//!
//! The broker must keep the session's messages while the bridge is away: mosquitto's
//! `max_queued_messages` (1,000 by default) bounds that; raise it (0: no limit) for outages
//! longer than that many messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use tokio::sync::mpsc;
use veritrace_processors::Reason;
use veritrace_processors::event::Limits;
use veritrace_processors::signed::Signatures;

use crate::devices::{self, TopicBinding};

/// The MQTT protocol version the bridge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[default]
    V311,
    /// MQTT 5.
    V5,
}

impl Protocol {
    /// Parses `3.1.1` or `5`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "3.1.1" | "311" | "4" => Some(Protocol::V311),
            "5" | "5.0" => Some(Protocol::V5),
            _ => None,
        }
    }
}

/// TLS to the MQTT broker: the CA to trust and, for brokers that require one, the bridge's
/// client certificate.
#[derive(Debug, Clone)]
pub struct BridgeTls {
    /// CA certificates (PEM) the broker's certificate must chain to.
    pub ca: std::path::PathBuf,
    /// The bridge's certificate chain and key (PEM), when the broker asks for one.
    pub client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl BridgeTls {
    /// The rustls client configuration (ring provider, TLS 1.2 and 1.3).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = |p: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, String> {
            let v = CertificateDer::pem_file_iter(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", p.display()))?;
            if v.is_empty() {
                return Err(format!("{}: no PEM certificate", p.display()));
            }
            Ok(v)
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&self.ca)? {
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", self.ca.display()))?;
        }
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        match &self.client {
            None => Ok(b.with_no_client_auth()),
            Some((cert, key)) => {
                let k = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("{}: {e}", key.display()))?;
                b.with_client_auth_cert(certs(cert)?, k)
                    .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
            }
        }
    }
}

/// Where the bridge subscribes and publishes.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// MQTT broker host.
    pub host: String,
    /// MQTT broker port.
    pub port: u16,
    /// Client id: fixed, so the broker keeps the session (and the messages for it).
    pub client_id: String,
    /// Topic filters and the Kafka topic each one's messages go to.
    pub routes: Vec<(String, String)>,
    /// Messages received and not yet acknowledged, at most.
    pub max_in_flight: u16,
    /// Largest message accepted from the broker.
    pub max_message_bytes: usize,
    /// MQTT 3.1.1 or 5.
    pub protocol: Protocol,
    /// TLS to the broker, or `None` for plain TCP.
    pub tls: Option<BridgeTls>,
    /// MQTT 5: how long the broker keeps the session (and its messages) while the bridge
    /// is away.
    pub session_expiry: Duration,
    /// Topic filters bound to the devices that publish on them ([`crate::devices`]): a
    /// message a bound device may not send goes to `rejected_topic` instead of its route's.
    pub devices: Vec<TopicBinding>,
    /// The signature stage of each Kafka topic the routes name, over the identity registry
    /// (used when `devices` binds a topic).
    pub signatures: HashMap<String, Signatures>,
    /// Where refused messages go: the original bytes, the reason code in the
    /// `veritrace-reason` header (as the processors publish their rejections).
    pub rejected_topic: String,
    /// The processors' record limits.
    pub limits: Limits,
}

/// One message received, in either protocol version.
enum Msg {
    V4(rumqttc::Publish),
    V5(m5::Publish),
}

impl Msg {
    fn topic(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Msg::V4(p) => std::borrow::Cow::Borrowed(p.topic.as_str()),
            Msg::V5(p) => String::from_utf8_lossy(&p.topic),
        }
    }

    fn payload(&self) -> &[u8] {
        match self {
            Msg::V4(p) => &p.payload,
            Msg::V5(p) => &p.payload,
        }
    }
}

/// The client side of the connection, in either protocol version.
#[derive(Clone)]
enum Client {
    V4(AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Client {
    fn try_subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .try_subscribe(filter, QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    async fn ack(&self, m: &Msg) -> Result<(), String> {
        match (self, m) {
            (Client::V4(c), Msg::V4(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (Client::V5(c), Msg::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Err("a message of one protocol version acknowledged on the other".into()),
        }
    }

    fn try_disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

/// What one poll of the connection gave (moved once, never stored: its size is no cost).
#[allow(clippy::large_enum_variant)]
enum Polled {
    Connected { session_present: bool },
    Message(Msg),
    Other,
}

/// The connection (one per bridge: its size is no cost).
#[allow(clippy::large_enum_variant)]
enum Conn {
    V4(rumqttc::EventLoop),
    V5(rumqttc::v5::EventLoop),
}

impl Conn {
    async fn poll(&mut self) -> Result<Polled, String> {
        match self {
            Conn::V4(l) => match l.poll().await.map_err(|e| e.to_string())? {
                Event::Incoming(Packet::ConnAck(a)) => Ok(Polled::Connected {
                    session_present: a.session_present,
                }),
                Event::Incoming(Packet::Publish(p)) => Ok(Polled::Message(Msg::V4(p))),
                _ => Ok(Polled::Other),
            },
            Conn::V5(l) => {
                use rumqttc::v5::Event as E5;
                match l.poll().await.map_err(|e| e.to_string())? {
                    E5::Incoming(m5::Packet::ConnAck(a)) => Ok(Polled::Connected {
                        session_present: a.session_present,
                    }),
                    E5::Incoming(m5::Packet::Publish(p)) => Ok(Polled::Message(Msg::V5(p))),
                    _ => Ok(Polled::Other),
                }
            }
        }
    }
}

/// Connects (lazily: the first poll connects) with a persistent session.
fn connect(cfg: &BridgeConfig) -> Result<(Client, Conn), String> {
    let transport = match &cfg.tls {
        None => Transport::Tcp,
        Some(t) => Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(
            t.client_config()?,
        ))),
    };
    let cap = usize::from(cfg.max_in_flight).max(10);
    // (A 5 s keep-alive also bounds how long an idle bridge takes to notice SIGTERM.)
    Ok(match cfg.protocol {
        Protocol::V311 => {
            let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
            opts.set_clean_session(false)
                .set_manual_acks(true)
                .set_keep_alive(Duration::from_secs(5))
                .set_max_packet_size(cfg.max_message_bytes, cfg.max_message_bytes)
                .set_transport(transport);
            let (c, l) = AsyncClient::new(opts, cap);
            (Client::V4(c), Conn::V4(l))
        }
        Protocol::V5 => {
            let max = u32::try_from(cfg.max_message_bytes).unwrap_or(u32::MAX);
            let mut opts = rumqttc::v5::MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
            opts.set_clean_start(false)
                .set_session_expiry_interval(Some(
                    u32::try_from(cfg.session_expiry.as_secs()).unwrap_or(u32::MAX),
                ))
                // The broker sends at most this many unacknowledged messages.
                .set_receive_maximum(Some(cfg.max_in_flight.max(1)))
                .set_manual_acks(true)
                .set_keep_alive(Duration::from_secs(5))
                .set_max_packet_size(Some(max))
                .set_transport(transport);
            let (c, l) = rumqttc::v5::AsyncClient::new(opts, cap);
            (Client::V5(c), Conn::V5(l))
        }
    })
}

/// Counters of a running bridge (for `/metrics`).
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Messages received from the MQTT broker.
    pub received: AtomicU64,
    /// Messages Kafka acknowledged (then acknowledged to the MQTT broker).
    pub published: AtomicU64,
    /// Kafka publish attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Connections to the MQTT broker (reconnections included).
    pub connections: AtomicU64,
    /// True while connected to the MQTT broker.
    pub connected: AtomicBool,
    /// Messages refused by their topic's device binding (published to the rejected topic).
    pub refused: AtomicU64,
}

/// Why a message goes to the rejected topic instead of its route's.
#[derive(Debug, Clone)]
struct Refused {
    reason: Reason,
    detail: String,
    /// `mqtt:TOPIC`, in the `veritrace-source` header.
    source: String,
}

/// The refusal of a message whose topic binds a device that may not send it (unregistered,
/// revoked, or a statement signed for another participant); `None` for every other message.
fn refusal(cfg: &BridgeConfig, kafka_topic: &str, msg: &Msg) -> Option<Refused> {
    let mqtt_topic = msg.topic();
    let refused = |(reason, detail): devices::Refusal| Refused {
        reason,
        detail,
        source: format!("mqtt:{mqtt_topic}"),
    };
    let id = match devices::device_of(&cfg.devices, &mqtt_topic) {
        Ok(None) => return None,
        Ok(Some(id)) => id,
        Err(r) => return Some(refused(r)),
    };
    let stage = cfg.signatures.get(kafka_topic)?;
    let device = match devices::lookup(stage, &id, &format!("MQTT topic {mqtt_topic:?}")) {
        Ok(d) => d,
        Err(r) => return Some(refused(r)),
    };
    devices::check_record(
        stage,
        &device,
        msg.payload(),
        veritrace_processors::now_ms(),
        &cfg.limits,
    )
    .err()
    .map(refused)
}

/// The headers of a refused message, as the processors write them on their rejections.
fn rejection_headers(r: &Refused) -> OwnedHeaders {
    veritrace_processors::kafka::rejection_headers(r.reason.as_str(), &r.detail, &r.source)
}

fn kafka_topic<'a>(routes: &'a [(String, String)], mqtt_topic: &str) -> Option<&'a str> {
    routes
        .iter()
        .find(|(filter, _)| rumqttc::matches(mqtt_topic, filter))
        .map(|(_, t)| t.as_str())
}

/// Publishes one message to Kafka until Kafka acknowledges it (retrying with backoff while
/// `stop` is not set); `false` when stopped first.
async fn publish(
    producer: &FutureProducer,
    topic: &str,
    payload: &[u8],
    refused: Option<&Refused>,
    stats: &BridgeStats,
    stop: &AtomicBool,
) -> bool {
    let key = crate::key_of(payload);
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut rec = FutureRecord::to(topic).payload(payload);
        if let Some(k) = key.as_deref() {
            rec = rec.key(k);
        }
        if let Some(r) = refused {
            rec = rec.headers(rejection_headers(r));
        }
        match producer.send(rec, Duration::from_secs(5)).await {
            Ok(_) => return true,
            Err((e, _)) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "Kafka did not take a message; retrying (the MQTT message stays unacknowledged)");
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Runs the bridge until `stop` is set; in-flight messages are finished (published and
/// acknowledged) before it returns.
pub async fn run(
    cfg: BridgeConfig,
    producer: FutureProducer,
    stats: Arc<BridgeStats>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    if cfg.routes.is_empty() {
        return Err("no topic filters to subscribe to (mqtt.routes)".into());
    }
    let (client, mut eventloop) = connect(&cfg)?;

    // Three tasks, so that the connection is always polled: the poller only reads the
    // connection and forwards messages (it never waits on anything else; the broker sends
    // at most its in-flight window of unacknowledged messages, which bounds the queue); the
    // publisher hands each message to Kafka as it arrives, so deliveries overlap; the acker
    // awaits the deliveries and acknowledges the messages in arrival order.
    let (pub_tx, mut pub_rx) = mpsc::unbounded_channel::<Msg>();
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let poller = {
        let client = client.clone();
        let stats = stats.clone();
        let stop = stop.clone();
        let routes = cfg.routes.clone();
        tokio::spawn(async move {
            let mut forward = Some(pub_tx);
            let mut backoff = Duration::from_millis(200);
            let mut failure: Option<String> = None;
            loop {
                if stop.load(Ordering::Relaxed) || failure.is_some() {
                    // Stop taking messages; keep polling until the acknowledgements are out.
                    forward = None;
                }
                let event = tokio::select! {
                    biased;
                    _ = done_rx.changed() => break,
                    e = eventloop.poll() => e,
                };
                match event {
                    Ok(Polled::Connected { session_present }) => {
                        stats.connections.fetch_add(1, Ordering::Relaxed);
                        stats.connected.store(true, Ordering::Relaxed);
                        backoff = Duration::from_millis(200);
                        tracing::info!(session_present, "connected to the MQTT broker");
                        if !session_present {
                            for (filter, _) in &routes {
                                if let Err(e) = client.try_subscribe(filter) {
                                    failure = Some(format!("subscribing to {filter}: {e}"));
                                }
                            }
                        }
                    }
                    Ok(Polled::Message(p)) => {
                        stats.received.fetch_add(1, Ordering::Relaxed);
                        // Not forwarded when stopping: unacknowledged, it is delivered again.
                        if let Some(f) = &forward {
                            let _ = f.send(p);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        stats.connected.store(false, Ordering::Relaxed);
                        if forward.is_some() {
                            tracing::warn!(error = %e, "MQTT connection lost; reconnecting (unacknowledged messages are delivered again)");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
            stats.connected.store(false, Ordering::Relaxed);
            failure
        })
    };

    type Pending = (
        Msg,
        Option<rdkafka::producer::DeliveryFuture>,
        String,
        Option<Refused>,
    );
    let (ack_tx, mut ack_rx) = mpsc::channel::<Pending>(usize::from(cfg.max_in_flight).max(1));
    let acker = {
        let client = client.clone();
        let stats = stats.clone();
        let stop = stop.clone();
        let producer = producer.clone();
        tokio::spawn(async move {
            while let Some((p, delivery, topic, refused)) = ack_rx.recv().await {
                let delivered = match delivery {
                    Some(d) => matches!(d.await, Ok(Ok(_))),
                    None => false,
                };
                if !delivered
                    && !publish(
                        &producer,
                        &topic,
                        p.payload(),
                        refused.as_ref(),
                        &stats,
                        &stop,
                    )
                    .await
                {
                    return;
                }
                stats.published.fetch_add(1, Ordering::Relaxed);
                if refused.is_some() {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                }
                if client.ack(&p).await.is_err() {
                    return;
                }
            }
        })
    };

    while let Some(p) = pub_rx.recv().await {
        let Some(topic) = kafka_topic(&cfg.routes, &p.topic()).map(str::to_owned) else {
            // Subscribed filters deliver only matching topics; what no route takes is
            // acknowledged (or it would come back forever) and said so.
            tracing::error!(topic = %p.topic(), "a message on a topic no route maps; acknowledged and not forwarded");
            let _ = client.ack(&p).await;
            continue;
        };
        // A message its topic's device may not send is kept, with the reason, on the
        // rejected topic (never dropped: the MQTT broker has it acknowledged only then).
        let refused = refusal(&cfg, &topic, &p);
        let topic = match &refused {
            Some(r) => {
                tracing::warn!(mqtt_topic = %p.topic(), reason = r.reason.as_str(), detail = %r.detail, "refused by the topic's device binding; sent to the rejected topic");
                cfg.rejected_topic.clone()
            }
            None => topic,
        };
        let key = crate::key_of(p.payload());
        let mut rec = FutureRecord::to(&topic).payload(p.payload());
        if let Some(k) = key.as_deref() {
            rec = rec.key(k);
        }
        if let Some(r) = &refused {
            rec = rec.headers(rejection_headers(r));
        }
        // A full producer queue or another refusal: the acker publishes it itself, retrying,
        // before acknowledging.
        let delivery = producer.send_result(rec).ok();
        if ack_tx.send((p, delivery, topic, refused)).await.is_err() {
            break;
        }
    }
    // Stopping: what was taken is published and acknowledged, then the session is left.
    drop(ack_tx);
    let _ = tokio::time::timeout(Duration::from_secs(30), acker).await;
    client.try_disconnect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = done_tx.send(true);
    match poller.await {
        Ok(None) => Ok(()),
        Ok(Some(failure)) => Err(failure),
        Err(e) => Err(format!("the MQTT poller failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_mqtt_filters() {
        let routes = vec![
            ("factory/+/events".to_owned(), "veritrace.raw".to_owned()),
            ("lab/#".to_owned(), "lab.raw".to_owned()),
        ];
        assert_eq!(
            kafka_topic(&routes, "factory/press-07/events"),
            Some("veritrace.raw")
        );
        assert_eq!(kafka_topic(&routes, "lab/a/b/c"), Some("lab.raw"));
        assert_eq!(kafka_topic(&routes, "factory/press-07/other"), None);
    }
}
