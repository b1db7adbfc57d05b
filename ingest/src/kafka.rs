//! Publishing records to Kafka (`veritrace ingest file --kafka`, the load generator).
//!
//! Records are produced keyed by trace code with an idempotent producer (unless turned off
//! for brokers without support), so producer retries never duplicate a record and one
//! object's events keep their order. Every record is accounted for: the report says how
//! many the broker acknowledged and how many failed, and the caller fails when any did.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use veritrace_processors::kafka::ClientSettings;
use veritrace_processors::kafka::admin::topic_partitions;

/// Delivery accounting, filled by librdkafka's delivery callbacks.
#[derive(Debug, Default)]
pub struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            tracing::warn!(target: "librdkafka", fac, "{msg}");
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Records handed to the producer.
    pub sent: u64,
    /// Records the broker acknowledged.
    pub delivered: u64,
    /// Records that failed after the producer's retries.
    pub failed: u64,
    /// The first failure, for the error message.
    pub first_error: Option<String>,
    /// Wall time from the first send to the last acknowledgement.
    pub elapsed: Duration,
}

impl PublishReport {
    /// Records neither acknowledged nor failed (still in flight when the flush timed out).
    pub fn unacknowledged(&self) -> u64 {
        self.sent.saturating_sub(self.delivered + self.failed)
    }
}

/// Errors that stop publishing.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Settings or the topic are unusable.
    #[error("{0}")]
    Setup(String),
    /// The producer refused a record outright.
    #[error("producing to {topic}: {source}")]
    Produce {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        source: KafkaError,
    },
}

/// A keyed, idempotent producer for one topic.
pub struct Publisher {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    sent: u64,
    started: Instant,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects and checks that `topic` exists.
    pub fn new(
        settings: &ClientSettings,
        topic: &str,
        client_id: &str,
    ) -> Result<Self, PublishError> {
        let cfg = settings
            .producer_config(client_id)
            .map_err(|e| PublishError::Setup(e.to_string()))?;
        let producer: ThreadedProducer<Deliveries> = cfg
            .create_with_context(Deliveries::default())
            .map_err(|e| PublishError::Setup(format!("creating the producer: {e}")))?;
        let n = topic_partitions(producer.client(), topic, Duration::from_secs(15))
            .map_err(|e| PublishError::Setup(e.to_string()))?;
        if n == 0 {
            return Err(PublishError::Setup(format!(
                "topic {topic} does not exist on {}; create it with `veritrace topics create`",
                settings.brokers
            )));
        }
        Ok(Publisher {
            producer,
            topic: topic.to_owned(),
            sent: 0,
            started: Instant::now(),
        })
    }

    /// Queues one record, waiting while the producer's queue is full.
    pub fn send(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), PublishError> {
        if self.sent == 0 {
            self.started = Instant::now();
        }
        loop {
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).payload(payload);
            if let Some(k) = key {
                rec = rec.key(k);
            }
            match self.producer.send(rec) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((source, _)) => {
                    return Err(PublishError::Produce {
                        topic: self.topic.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Records acknowledged so far.
    pub fn delivered(&self) -> u64 {
        self.producer.context().delivered.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) for every record to be acknowledged or failed.
    pub fn finish(self, timeout: Duration) -> PublishReport {
        let _ = self.producer.flush(timeout);
        let ctx = self.producer.context();
        PublishReport {
            sent: self.sent,
            delivered: ctx.delivered.load(Ordering::Relaxed),
            failed: ctx.failed.load(Ordering::Relaxed),
            first_error: ctx
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            elapsed: self.started.elapsed(),
        }
    }
}
