//! The Kafka sink: librdkafka's idempotent producer with `acks=all`.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rdkafka::{
    ClientConfig, ClientContext,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};
use secrecy::ExposeSecret;

use super::sink::{EventSink, Message, Outcome};
use crate::{config::KafkaArgs, domain::events::TOPICS};

/// Logs the client's connection errors once per outage instead of once per
/// broker per retry: the relay reports the outage and the recovery itself.
#[derive(Clone, Default)]
struct Context {
    quiet: Arc<AtomicBool>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if !self.quiet.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, reason, "Kafka client error (further ones are not logged until a message gets through)");
        }
    }
}

/// Publishes to Kafka.
pub struct KafkaSink {
    producer: FutureProducer<Context>,
    admin: AdminClient<Context>,
    context: Context,
    replication: i32,
}

impl KafkaSink {
    /// A producer and an admin client for the brokers of `args`; connects lazily.
    pub fn new(args: &KafkaArgs) -> anyhow::Result<Self> {
        let brokers = args.kafka_brokers.as_deref().ok_or_else(|| anyhow::anyhow!("no Kafka brokers configured"))?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("client.id", "c360-relay")
            .set("security.protocol", args.kafka_security_protocol.as_str())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", args.kafka_message_timeout.as_millis().to_string());
        if let Some(ca) = &args.kafka_ssl_ca_file {
            config.set("ssl.ca.location", ca.display().to_string());
        }
        if let (Some(cert), Some(key)) = (&args.kafka_ssl_cert_file, &args.kafka_ssl_key_file) {
            config.set("ssl.certificate.location", cert.display().to_string());
            config.set("ssl.key.location", key.display().to_string());
        }
        if matches!(
            args.kafka_security_protocol,
            crate::config::KafkaSecurity::SaslPlaintext | crate::config::KafkaSecurity::SaslSsl
        ) {
            config.set("sasl.mechanisms", &args.kafka_sasl_mechanism);
            if let Some(user) = &args.kafka_sasl_username {
                config.set("sasl.username", user);
            }
            if let Some(password) = &args.sasl_password()? {
                config.set("sasl.password", password.expose_secret());
            }
        }
        for (key, value) in &args.kafka_options {
            config.set(key, value);
        }
        let context = Context::default();
        let producer =
            config.create_with_context(context.clone()).map_err(|e| anyhow::anyhow!("Kafka producer settings: {e}"))?;
        let admin =
            config.create_with_context(context.clone()).map_err(|e| anyhow::anyhow!("Kafka admin settings: {e}"))?;
        Ok(Self { producer, admin, context, replication: args.kafka_replication_factor })
    }

    /// Waits up to `timeout` for every message handed to the producer to be
    /// acknowledged (on shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "Kafka producer not flushed");
        }
    }
}

/// Errors that sending this message again cannot fix. (A missing
/// permission is not one: an operator fixes the ACL and the relay goes on by
/// itself, as after an outage.)
fn refused_for_good(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessageSize
        )
    )
}

impl EventSink for KafkaSink {
    async fn prepare(&self) -> Result<(), String> {
        // Create only what is missing: a client without CREATE permission
        // gets an authorization error even for a topic that exists.
        let producer = self.producer.clone();
        let metadata =
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, Duration::from_secs(10)))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        let existing: HashSet<&str> =
            metadata.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name()).collect();
        let topics: Vec<NewTopic<'_>> = TOPICS
            .iter()
            .filter(|(name, _)| !existing.contains(name))
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(self.replication)))
            .collect();
        if topics.is_empty() {
            return Ok(());
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self.admin.create_topics(&topics, &options).await.map_err(|e| e.to_string())?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(format!("cannot create topic {topic}: {code}")),
            }
        }
        Ok(())
    }

    async fn publish(&self, batch: &[Message<'_>]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut pending = Vec::with_capacity(batch.len());
        // Keys with a message not sent: none of their later messages may go
        // ahead of it.
        let mut stopped_keys: HashSet<&str> = HashSet::new();
        for (i, message) in batch.iter().enumerate() {
            if stopped_keys.contains(message.key) {
                outcomes[i] = Some(Outcome::NotSent);
                continue;
            }
            let headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header { key: "eventType", value: Some(message.event_type) })
                .insert(Header { key: "eventId", value: Some(message.event_id) })
                .insert(Header { key: "tenantId", value: Some(message.tenant) });
            let mut record = FutureRecord::to(message.topic).key(message.key).payload(message.value).headers(headers);
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push((i, delivery));
                        break;
                    }
                    // The producer's queue is full: let it drain, then enqueue.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => {
                        stopped_keys.insert(message.key);
                        outcomes[i] = Some(if refused_for_good(&error) {
                            Outcome::Refused(error.to_string())
                        } else {
                            Outcome::Failed(error.to_string())
                        });
                        break;
                    }
                }
            }
        }
        for (i, delivery) in pending {
            outcomes[i] = Some(match delivery.await {
                Ok(Ok(_)) => Outcome::Delivered,
                Ok(Err((error, _))) if refused_for_good(&error) => Outcome::Refused(error.to_string()),
                Ok(Err((error, _))) => Outcome::Failed(error.to_string()),
                Err(_) => Outcome::Failed("the producer dropped the message".into()),
            });
        }
        if outcomes.iter().any(|o| matches!(o, Some(Outcome::Delivered))) {
            self.context.quiet.store(false, Ordering::Relaxed);
        }
        outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Failed("not sent".into()))).collect()
    }
}
