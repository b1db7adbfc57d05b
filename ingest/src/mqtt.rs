//! The MQTT bridge (`veritrace mqtt-bridge`): devices publish to an existing MQTT broker;
//! the bridge subscribes (MQTT 3.1.1, QoS 1, a persistent session: clean session off and a
//! fixed client id) and publishes each message to Kafka, acknowledging it to the MQTT
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

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
    let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
    opts.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(cfg.max_message_bytes, cfg.max_message_bytes);
    // (A 5 s keep-alive also bounds how long an idle bridge takes to notice SIGTERM.)
    let (client, mut eventloop) = AsyncClient::new(opts, usize::from(cfg.max_in_flight).max(10));

    // Three tasks, so that the connection is always polled: the poller only reads the
    // connection and forwards messages (it never waits on anything else; the broker sends
    // at most its in-flight window of unacknowledged messages, which bounds the queue); the
    // publisher hands each message to Kafka as it arrives, so deliveries overlap; the acker
    // awaits the deliveries and acknowledges the messages in arrival order.
    let (pub_tx, mut pub_rx) = mpsc::unbounded_channel::<Publish>();
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
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        stats.connections.fetch_add(1, Ordering::Relaxed);
                        stats.connected.store(true, Ordering::Relaxed);
                        backoff = Duration::from_millis(200);
                        tracing::info!(
                            session_present = ack.session_present,
                            "connected to the MQTT broker"
                        );
                        if !ack.session_present {
                            for (filter, _) in &routes {
                                if let Err(e) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                                    failure = Some(format!("subscribing to {filter}: {e}"));
                                }
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
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

    type Pending = (Publish, Option<rdkafka::producer::DeliveryFuture>, String);
    let (ack_tx, mut ack_rx) = mpsc::channel::<Pending>(usize::from(cfg.max_in_flight).max(1));
    let acker = {
        let client = client.clone();
        let stats = stats.clone();
        let stop = stop.clone();
        let producer = producer.clone();
        tokio::spawn(async move {
            while let Some((p, delivery, topic)) = ack_rx.recv().await {
                let delivered = match delivery {
                    Some(d) => matches!(d.await, Ok(Ok(_))),
                    None => false,
                };
                if !delivered && !publish(&producer, &topic, &p.payload, &stats, &stop).await {
                    return;
                }
                stats.published.fetch_add(1, Ordering::Relaxed);
                if client.ack(&p).await.is_err() {
                    return;
                }
            }
        })
    };

    while let Some(p) = pub_rx.recv().await {
        let Some(topic) = kafka_topic(&cfg.routes, &p.topic).map(str::to_owned) else {
            // Subscribed filters deliver only matching topics; what no route takes is
            // acknowledged (or it would come back forever) and said so.
            tracing::error!(topic = %p.topic, "a message on a topic no route maps; acknowledged and not forwarded");
            let _ = client.ack(&p).await;
            continue;
        };
        let key = crate::key_of(&p.payload);
        let mut rec = FutureRecord::to(&topic).payload(p.payload.as_ref());
        if let Some(k) = key.as_deref() {
            rec = rec.key(k);
        }
        // A full producer queue or another refusal: the acker publishes it itself, retrying,
        // before acknowledging.
        let delivery = producer.send_result(rec).ok();
        if ack_tx.send((p, delivery, topic)).await.is_err() {
            break;
        }
    }
    // Stopping: what was taken is published and acknowledged, then the session is left.
    drop(ack_tx);
    let _ = tokio::time::timeout(Duration::from_secs(30), acker).await;
    let _ = client.try_disconnect();
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
