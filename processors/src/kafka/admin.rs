//! Topic administration: checking that the topics exist before consuming (a clear error
//! instead of a silent wait), and creating them.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::settings::ClientSettings;
use crate::{Error, Result};

/// Fails with a clear message when a topic is missing or the brokers cannot be reached.
pub fn require_topics<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<()> {
    for t in topics {
        let partitions = topic_partitions(consumer.client(), t, timeout)?;
        if partitions == 0 {
            return Err(Error::Config(format!(
                "topic {t} does not exist on the brokers; create it with `veritrace topics create` \
                 (or your cluster's tooling)"
            )));
        }
    }
    Ok(())
}

/// The number of partitions of `topic` (0 when it does not exist).
pub fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<usize> {
    let md = client.fetch_metadata(Some(topic), timeout).map_err(|e| {
        Error::Kafka(format!(
            "cannot read metadata of topic {topic} (are the brokers reachable, and do \
             security.protocol and the SASL/TLS properties match the cluster?): {e}"
        ))
    })?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len()))
}

/// What `create_topics` did to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    /// Created with this many partitions.
    Created(i32),
    /// Already there with this many partitions (left unchanged).
    Exists(usize),
}

/// Creates each topic with `partitions` partitions unless it already exists.
pub async fn create_topics(
    settings: &ClientSettings,
    topics: &[&str],
    partitions: i32,
    replication: i32,
) -> Result<Vec<(String, TopicOutcome)>> {
    let admin: AdminClient<DefaultClientContext> = settings
        .admin_config()?
        .create()
        .map_err(|e| Error::Kafka(format!("creating the admin client: {e}")))?;
    let timeout = Duration::from_secs(15);
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for t in topics {
        match topic_partitions(admin.inner(), t, timeout)? {
            0 => missing.push(*t),
            n => out.push(((*t).to_owned(), TopicOutcome::Exists(n))),
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .map_err(|e| Error::Kafka(format!("creating topics: {e}")))?;
    for r in results {
        match r {
            Ok(name) => out.push((name, TopicOutcome::Created(partitions))),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let n = topic_partitions(admin.inner(), &name, timeout)?;
                out.push((name, TopicOutcome::Exists(n)));
            }
            Err((name, code)) => {
                return Err(Error::Kafka(format!("creating topic {name}: {code}")));
            }
        }
    }
    Ok(out)
}
