//! `veritrace mqtt-bridge`: MQTT broker -> Kafka ([`veritrace_ingest::mqtt`]).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Args;
use veritrace_ingest::mqtt::{BridgeConfig, BridgeStats, run};

use crate::config::Config;

/// Flags of `veritrace mqtt-bridge`.
#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// The MQTT broker, `host:port` [config: mqtt.broker].
    #[arg(long)]
    mqtt: Option<String>,
    /// Kafka bootstrap servers [config: kafka.brokers].
    #[arg(long)]
    brokers: Option<String>,
    /// Client id of the bridge's persistent session [config: mqtt.client-id].
    #[arg(long)]
    client_id: Option<String>,
    /// `FILTER=KAFKA_TOPIC`, repeatable, e.g. `factory/+/events=veritrace.raw`
    /// [config: mqtt.routes].
    #[arg(long = "route")]
    routes: Vec<String>,
    /// Where /metrics and /healthz are served; port 0 picks a free port
    /// [config: mqtt.metrics-listen].
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Data directory whose identity registry the devices of `[mqtt.devices]` are looked up
    /// in [config: data-dir].
    #[arg(long)]
    data: Option<std::path::PathBuf>,
}

/// Runs the bridge until SIGTERM or Ctrl-C, then finishes the messages in flight.
pub fn bridge(a: BridgeArgs, mut cfg: Config) -> anyhow::Result<ExitCode> {
    if let Some(b) = a.brokers {
        cfg.kafka.brokers = b;
    }
    let m = &cfg.mqtt;
    let broker = a.mqtt.unwrap_or_else(|| m.broker.clone());
    let (host, port) = broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("mqtt broker {broker:?} is not host:port"))?;
    let mut routes: Vec<(String, String)> = m
        .routes
        .iter()
        .map(|(f, t)| (f.clone(), t.clone()))
        .collect();
    if !a.routes.is_empty() {
        routes = a
            .routes
            .iter()
            .map(|r| {
                r.split_once('=')
                    .map(|(f, t)| (f.to_owned(), t.to_owned()))
                    .with_context(|| format!("--route {r:?}: expected FILTER=KAFKA_TOPIC"))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    // Topics bound to devices: their messages are checked against the identity registry.
    let devices = m.device_bindings()?;
    let rt_cfg = cfg.runtime()?;
    let mut signatures = std::collections::HashMap::new();
    if !devices.is_empty() {
        anyhow::ensure!(
            rt_cfg.signatures.root.is_some(),
            "mqtt.devices binds topics to registered devices: set signatures.root-key (the identity registry) too"
        );
        let data = a.data.unwrap_or_else(|| cfg.data_dir.clone());
        let dir = veritrace_anchor::DataDir::open(&data).with_context(|| {
            format!(
                "the bridge looks the devices of mqtt.devices up in the identity registry in {}",
                data.display()
            )
        })?;
        let registry = rt_cfg.signatures.registry(&dir)?;
        for (_, topic) in &routes {
            signatures.insert(
                topic.clone(),
                rt_cfg.signatures.stage(topic, registry.clone()),
            );
        }
    }
    let bcfg = BridgeConfig {
        host,
        port,
        client_id: a.client_id.unwrap_or_else(|| m.client_id.clone()),
        routes,
        max_in_flight: m.max_in_flight,
        max_message_bytes: m.max_message_bytes,
        protocol: m.protocol()?,
        tls: m.tls()?,
        session_expiry: m.session_expiry,
        devices,
        signatures,
        rejected_topic: cfg.kafka.rejected_topic.clone(),
        limits: rt_cfg.policy.limits,
    };
    let listen = a.metrics_listen.unwrap_or(m.metrics_listen);
    let rt = crate::rt::runtime()?;
    rt.block_on(async move {
        let producer = veritrace_ingest::gateway::producer(&cfg.kafka.client())?;
        let stats = Arc::new(BridgeStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let registry = prometheus::Registry::new();
        {
            use veritrace_metrics as vm;
            let received = vm::counter(&registry, &vm::MQTT_RECEIVED)?;
            let published = vm::counter(&registry, &vm::MQTT_PUBLISHED)?;
            let retries = vm::counter(&registry, &vm::MQTT_RETRIES)?;
            let connected = vm::gauge(&registry, &vm::MQTT_CONNECTED)?;
            let refused = vm::counter(&registry, &vm::MQTT_REFUSED)?;
            let s = stats.clone();
            tokio::spawn(async move {
                loop {
                    let sync =
                        |c: &prometheus::IntCounter, v: u64| c.inc_by(v.saturating_sub(c.get()));
                    sync(&received, s.received.load(Ordering::Relaxed));
                    sync(&published, s.published.load(Ordering::Relaxed));
                    sync(&retries, s.retries.load(Ordering::Relaxed));
                    sync(&refused, s.refused.load(Ordering::Relaxed));
                    connected.set(i64::from(s.connected.load(Ordering::Relaxed)));
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
            });
        }
        let health_stats = stats.clone();
        let health: veritrace_metrics::HealthCheck = Arc::new(move || {
            let s = &health_stats;
            let detail = serde_json::json!({
                "received": s.received.load(Ordering::Relaxed),
                "published": s.published.load(Ordering::Relaxed),
            });
            if s.connected.load(Ordering::Relaxed) {
                Ok(detail)
            } else {
                Err("not connected to the MQTT broker".into())
            }
        });
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        eprintln!(
            "mqtt bridge {}{broker} (MQTT {}) -> {} (metrics on http://{})",
            if bcfg.tls.is_some() {
                "mqtts://"
            } else {
                "mqtt://"
            },
            cfg.mqtt.protocol,
            cfg.kafka.brokers,
            listener.local_addr()?
        );
        let app =
            veritrace_metrics::ops_router(registry, veritrace_metrics::Health::ready_when(health));
        let (ops_stop, mut ops_rx) = tokio::sync::watch::channel(false);
        let ops = tokio::spawn(veritrace_metrics::serve(listener, app, async move {
            let _ = ops_rx.wait_for(|s| *s).await;
        }));
        let signal_stop = stop.clone();
        tokio::spawn(async move {
            crate::rt::shutdown_signal().await;
            eprintln!("shutting down: finishing the messages in flight");
            signal_stop.store(true, Ordering::Relaxed);
        });
        let result = run(bcfg, producer, stats, stop).await;
        let _ = ops_stop.send(true);
        let _ = ops.await;
        result.map_err(|e| anyhow::anyhow!(e))
    })?;
    Ok(ExitCode::SUCCESS)
}
