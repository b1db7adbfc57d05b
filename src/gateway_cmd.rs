//! `veritrace gateway`: HTTP ingest into the raw topic ([`veritrace_ingest::gateway`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use veritrace_ingest::gateway::{Gateway, GatewayConfig, Sink, flush, producer, router};
use veritrace_processors::embedded::{Embedded, EmbeddedConfig};

use crate::config::Config;

/// Flags of `veritrace gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to listen on; port 0 picks a free port [config: gateway.listen].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Bootstrap servers [config: kafka.brokers].
    #[arg(long)]
    brokers: Option<String>,
    /// Topic to publish to [config: kafka.raw-topic].
    #[arg(long)]
    topic: Option<String>,
    /// Data directory whose identity registry signatures are checked against (and, with
    /// --embedded, where the records are processed) [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// No Kafka: process the records in this process into the data directory (stream
    /// pipeline.stream) and answer each request once its records are sealed
    /// [config: gateway.embedded].
    #[arg(long)]
    embedded: bool,
}

/// Runs the gateway until SIGTERM or Ctrl-C; in-flight requests finish (up to
/// `gateway.shutdown-grace`) and the producer is flushed before exit.
pub fn gateway(a: GatewayArgs, mut cfg: Config) -> anyhow::Result<ExitCode> {
    if let Some(b) = a.brokers {
        cfg.kafka.brokers = b;
    }
    let g = &cfg.gateway;
    let listen = a.listen.unwrap_or(g.listen);
    let topic = a.topic.unwrap_or_else(|| cfg.kafka.raw_topic.clone());
    let rt_cfg = cfg.runtime()?;
    let settings = rt_cfg.signatures.clone();
    let tls_files = g.tls.files("gateway.tls")?;
    veritrace_net::check_plaintext(
        "the gateway",
        listen,
        tls_files.is_some(),
        g.allow_plaintext,
    )
    .map_err(anyhow::Error::msg)?;
    if let Some(f) = &tls_files {
        anyhow::ensure!(
            f.client_certs == veritrace_net::ClientCerts::Off || settings.root.is_some(),
            "gateway.tls.client-certs maps certificates to registered devices: set \
             signatures.root-key (the identity registry) too"
        );
    }
    let tls = tls_files
        .map(veritrace_net::Tls::load)
        .transpose()
        .context("gateway.tls")?;
    let opts = veritrace_net::ServeOptions {
        tls: tls.clone(),
        max_connections: g.max_connections,
        ..veritrace_net::ServeOptions::default()
    };
    let embedded = a.embedded || g.embedded;
    let data = a.data.unwrap_or_else(|| cfg.data_dir.clone());
    let dir = if embedded {
        Some(
            veritrace_anchor::DataDir::create(&data)
                .with_context(|| format!("the embedded gateway processes into {}", data.display()))?
                .with_dedupe_dir(&cfg.pipeline.dedupe_dir),
        )
    } else if settings.root.is_some() {
        Some(veritrace_anchor::DataDir::open(&data).with_context(|| {
            format!(
                "the gateway checks signatures against the identity registry in {}",
                data.display()
            )
        })?)
    } else {
        None
    };
    let registry = match &dir {
        Some(d) if settings.root.is_some() => settings.registry(d)?,
        _ => None,
    };
    // Embedded, the records are a stream of the data directory, not a topic.
    let topic = if embedded {
        rt_cfg.stream.clone()
    } else {
        topic
    };
    let signatures = settings.stage(&topic, registry);
    let gw_cfg = GatewayConfig {
        max_body_bytes: g.max_body_bytes,
        max_records: g.max_records,
        rate: g.rate,
        burst: g.burst,
        delivery_timeout: g.delivery_timeout,
        topic: topic.clone(),
        limits: rt_cfg.policy.limits,
        epcis_schema: cfg.epcis.schema()?.map(std::sync::Arc::new),
    };
    let grace = g.shutdown_grace;
    let rt = crate::rt::runtime()?;
    let sink_embedded = match (&dir, embedded) {
        (Some(d), true) => Some(std::sync::Arc::new(Embedded::start(
            d,
            EmbeddedConfig {
                stream: rt_cfg.stream.clone(),
                policy: rt_cfg.policy,
                epoch_interval: rt_cfg.epoch_interval,
                backend: rt_cfg.backend.clone(),
                signatures: settings.clone(),
                queue: 256,
                holder: format!("veritrace gateway --embedded (pid {})", std::process::id()),
                kind: Default::default(),
            },
        )?)),
        _ => None,
    };
    let brokers = if embedded {
        format!("the embedded processor of {}", data.display())
    } else {
        cfg.kafka.brokers.clone()
    };
    let in_runtime = sink_embedded.clone();
    rt.block_on(async move {
        let (sink, producer) = match &in_runtime {
            Some(e) => (Sink::Embedded(e.clone()), None),
            None => {
                let p = producer(&cfg.kafka.client())?;
                (Sink::Kafka(p.clone()), Some(p))
            }
        };
        let metrics = prometheus::Registry::new();
        let gw = Gateway::new(gw_cfg, sink, signatures, &metrics)?;
        let app = router(gw, metrics);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        eprintln!(
            "gateway on {}://{} publishing to {topic} at {brokers}",
            if tls.is_some() { "https" } else { "http" },
            listener.local_addr()?,
        );
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let stats = std::sync::Arc::new(veritrace_net::AcceptStats::default());
        let server = veritrace_net::serve(listener, app, opts, stats, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        });
        if let Some(r) = crate::rt::serve_until_signal(server, stop_tx, grace).await {
            r.context("gateway server")?;
        }
        // Records handed over but not yet acknowledged: their requests got no 202, so their
        // clients retry; flushing still delivers what it can.
        if let Some(p) = &producer {
            flush(p, std::time::Duration::from_secs(5));
        }
        anyhow::Ok(())
    })?;
    // Embedded: seal what is queued (its requests are answered, if still waiting) and the
    // last epoch.
    if let Some(e) = sink_embedded {
        match std::sync::Arc::try_unwrap(e) {
            Ok(e) => {
                e.stop().context("stopping the embedded processor")?;
            }
            // A request still holds it (grace period over): dropping it seals as well.
            Err(e) => drop(e),
        }
    }
    Ok(ExitCode::SUCCESS)
}
