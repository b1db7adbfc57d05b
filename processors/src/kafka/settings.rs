//! Kafka client settings: the librdkafka properties users pass through (security
//! protocol, SASL, TLS files, timeouts), with secrets kept out of logs and out of config
//! files.
//!
//! Any property value may be an indirection resolved when the client is created:
//! `${env:NAME}` reads an environment variable and `${file:PATH}` reads a file (trailing
//! newline removed), so `sasl.password = "${file:/run/secrets/kafka}"` keeps the password
//! in a mounted secret. Properties whose name suggests a secret are shown as `***` by
//! `Debug` and by [`Properties::redacted`].

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// librdkafka properties (`name = value`), passed through unchanged after secret
/// indirections are resolved.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Properties(pub BTreeMap<String, String>);

/// True for property names whose values must never be printed.
pub fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", "credential"]
        .iter()
        .any(|s| n.contains(s))
        || n.ends_with(".key.pem")
        || n == "ssl.key.pem"
        || n == "ssl_key"
}

impl Properties {
    /// The properties with secret values replaced by `***`.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| {
                let v = if is_secret(k) {
                    "***".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// Adds each property to `cfg`, resolving `${env:..}` and `${file:..}` values. The error
    /// names the property, never its value.
    pub fn apply(&self, cfg: &mut ClientConfig) -> Result<()> {
        for (k, v) in &self.0 {
            cfg.set(k, resolve(k, v)?);
        }
        Ok(())
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

/// Resolves a value indirection (see the module docs).
pub fn resolve(name: &str, value: &str) -> Result<String> {
    let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
        return Ok(value.to_owned());
    };
    if let Some(var) = inner.strip_prefix("env:") {
        std::env::var(var).map_err(|_| {
            Error::Config(format!(
                "kafka property {name}: environment variable {var} is not set"
            ))
        })
    } else if let Some(path) = inner.strip_prefix("file:") {
        let s = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("kafka property {name}: cannot read {path}: {e}"))
        })?;
        Ok(s.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        Err(Error::Config(format!(
            "kafka property {name}: unknown indirection (use ${{env:NAME}} or ${{file:PATH}})"
        )))
    }
}

/// Where and how to reach the cluster, shared by consumers, producers and the admin client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSettings {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Properties for every client.
    pub properties: Properties,
    /// Extra properties for consumers only.
    pub consumer: Properties,
    /// Extra properties for producers only.
    pub producer: Properties,
    /// Use the idempotent producer (no duplicates from producer retries). Turn off only for
    /// brokers that do not support it.
    pub idempotent: bool,
}

impl ClientSettings {
    /// Settings for `brokers` with no extra properties.
    pub fn new(brokers: impl Into<String>) -> Self {
        ClientSettings {
            brokers: brokers.into(),
            properties: Properties::default(),
            consumer: Properties::default(),
            producer: Properties::default(),
            idempotent: true,
        }
    }

    fn base(&self) -> Result<ClientConfig> {
        if self.brokers.trim().is_empty() {
            return Err(Error::Config(
                "kafka.brokers is empty (set it in veritrace.toml, VERITRACE__KAFKA__BROKERS or --brokers)".into(),
            ));
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        Ok(c)
    }

    /// A consumer configuration for `group`: manual offset commits only (offsets are
    /// committed after the batch is durable), earliest offset for a new group, short fetch
    /// waits, and a session timeout short enough that a crashed member's partitions move on.
    /// User properties override these defaults.
    pub fn consumer_config(&self, group: &str, instance_id: Option<&str>) -> Result<ClientConfig> {
        let mut c = self.base()?;
        c.set("group.id", group)
            .set("client.id", "veritrace-process")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "20")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", "1000")
            .set("queued.max.messages.kbytes", "65536");
        if let Some(id) = instance_id {
            c.set("group.instance.id", id);
        }
        self.properties.apply(&mut c)?;
        self.consumer.apply(&mut c)?;
        Ok(c)
    }

    /// A producer configuration: idempotent (unless turned off), all replicas acknowledge,
    /// small linger for batching. User properties override these defaults.
    pub fn producer_config(&self, client_id: &str) -> Result<ClientConfig> {
        let mut c = self.base()?;
        c.set("client.id", client_id)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "500000")
            .set("message.timeout.ms", "30000")
            .set(
                "enable.idempotence",
                if self.idempotent { "true" } else { "false" },
            );
        self.properties.apply(&mut c)?;
        self.producer.apply(&mut c)?;
        Ok(c)
    }

    /// An admin client configuration.
    pub fn admin_config(&self) -> Result<ClientConfig> {
        let mut c = self.base()?;
        c.set("client.id", "veritrace-admin");
        self.properties.apply(&mut c)?;
        Ok(c)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let mut p = BTreeMap::new();
        p.insert("sasl.password".to_owned(), "hunter2".to_owned());
        p.insert("ssl.key.password".to_owned(), "k3y".to_owned());
        p.insert("sasl.oauthbearer.client.secret".to_owned(), "s3".to_owned());
        p.insert("security.protocol".to_owned(), "SASL_SSL".to_owned());
        let props = Properties(p);
        let mut s = ClientSettings::new("127.0.0.1:9092");
        s.properties = props;
        let shown = format!("{s:?}");
        for secret in ["hunter2", "k3y", "s3\""] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("SASL_SSL"));
    }

    #[test]
    fn indirections_resolve_from_files_and_fail_clearly() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, "from-file\n").unwrap();
        let v = resolve("sasl.password", &format!("${{file:{}}}", f.display())).unwrap();
        assert_eq!(v, "from-file");
        let e = resolve("sasl.password", "${env:VERITRACE_TEST_SURELY_UNSET}").unwrap_err();
        assert!(e.to_string().contains("VERITRACE_TEST_SURELY_UNSET"));
        assert!(resolve("x", "${vault:a}").is_err());
        assert_eq!(resolve("x", "plain").unwrap(), "plain");
    }

    #[test]
    fn user_properties_override_defaults_and_empty_brokers_fail() {
        let mut s = ClientSettings::new("127.0.0.1:1");
        s.consumer
            .0
            .insert("session.timeout.ms".into(), "45000".into());
        let c = s.consumer_config("g", None).unwrap();
        assert_eq!(c.get("session.timeout.ms"), Some("45000"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert!(ClientSettings::new(" ").consumer_config("g", None).is_err());
    }
}
