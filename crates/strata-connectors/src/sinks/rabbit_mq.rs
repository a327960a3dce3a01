//! RabbitMQ over AMQP 0-9-1 (`lapin`, the maintained async AMQP client), with publisher
//! confirms: an event counts as delivered only once the broker confirmed it. Messages are
//! persistent, `message_id` = the event id, and carry the event headers. RabbitMQ
//! deduplicates nothing: a re-send after a crash arrives twice (consumers dedupe by
//! `message_id`).

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use strata_core::RecordedEvent;

use crate::definition::RabbitMqSettings;
use crate::sink::{Delivery, Sink, event_headers};
use crate::template::{Template, TemplateTarget};

/// AMQP delivery mode of a message the broker writes to disk.
const PERSISTENT: u8 = 2;

pub(crate) struct RabbitMqSink {
    settings: RabbitMqSettings,
    exchange: Option<Template>,
    routing_key: Template,
    /// `None` after a failure: the next publish reconnects.
    link: Option<(Connection, Channel)>,
}

impl RabbitMqSink {
    pub(crate) async fn connect(settings: &RabbitMqSettings) -> Result<Self, String> {
        let exchange = if settings.exchange.is_empty() {
            None
        } else {
            Some(Template::parse(&settings.exchange, TemplateTarget::Amqp)?)
        };
        let routing_key = Template::parse(&settings.routing_key, TemplateTarget::Amqp)?;
        let link = open(settings).await?;
        Ok(Self {
            settings: settings.clone(),
            exchange,
            routing_key,
            link: Some(link),
        })
    }

    async fn channel(&mut self) -> Result<Channel, String> {
        if let Some((connection, channel)) = &self.link
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        self.link = None;
        let link = open(&self.settings).await?;
        let channel = link.1.clone();
        self.link = Some(link);
        Ok(channel)
    }
}

async fn open(settings: &RabbitMqSettings) -> Result<(Connection, Channel), String> {
    let connection = Connection::connect(&settings.url, ConnectionProperties::default())
        .await
        .map_err(|error| format!("cannot connect to RabbitMQ: {error}"))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|error| format!("cannot open a RabbitMQ channel: {error}"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|error| format!("RabbitMQ refuses publisher confirms: {error}"))?;
    if let Some(kind) = &settings.declare_exchange {
        let kind = match kind.as_str() {
            "topic" => ExchangeKind::Topic,
            "fanout" => ExchangeKind::Fanout,
            "headers" => ExchangeKind::Headers,
            _ => ExchangeKind::Direct,
        };
        let options = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                settings.exchange.as_str().into(),
                kind,
                options,
                FieldTable::default(),
            )
            .await
            .map_err(|error| format!("cannot declare exchange {:?}: {error}", settings.exchange))?;
    }
    Ok((connection, channel))
}

fn properties(event: &RecordedEvent) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in event_headers(event) {
        headers.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    let seconds = u64::try_from(event.created.0 / 1_000_000_000).unwrap_or(0);
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(ShortString::from(event.id.to_string()))
        .with_content_type(ShortString::from(event.content_type.as_mime()))
        .with_type(ShortString::from(event.event_type.as_str()))
        .with_timestamp(seconds)
        .with_headers(headers)
}

#[async_trait]
impl Sink for RabbitMqSink {
    async fn publish(&mut self, events: &[RecordedEvent]) -> Vec<Delivery> {
        let failed_all = |error: String| {
            events
                .iter()
                .map(|_| Delivery::Failed {
                    error: error.clone(),
                })
                .collect::<Vec<_>>()
        };
        let channel = match self.channel().await {
            Ok(channel) => channel,
            Err(error) => return failed_all(error),
        };
        let options = BasicPublishOptions {
            mandatory: self.settings.mandatory,
            ..BasicPublishOptions::default()
        };
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let exchange = self
                .exchange
                .as_ref()
                .map(|template| template.render(event))
                .unwrap_or_default();
            let routing_key = self.routing_key.render(event);
            if exchange.len() > 255 || routing_key.len() > 255 {
                pending.push(Err(Delivery::Rejected {
                    reason: format!(
                        "exchange {exchange:?} or routing key {routing_key:?} is over AMQP's 255 bytes"
                    ),
                }));
                continue;
            }
            let sent = channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    options,
                    &event.data,
                    properties(event),
                )
                .await
                .map_err(|error| Delivery::Failed {
                    error: format!("RabbitMQ publish failed: {error}"),
                });
            pending.push(sent);
        }
        // lapin hands a returned message to whichever confirmation it resolves next, not
        // always the publish it belongs to (a multiple ack covers several): a return is
        // matched to its event by message id, the event id.
        let mut deliveries = Vec::with_capacity(events.len());
        let mut returned: Vec<(String, String)> = Vec::new();
        for sent in pending {
            let delivery = match sent {
                Err(delivery) => delivery,
                Ok(confirm) => match confirm.await {
                    Ok(Confirmation::Ack(message)) => {
                        if let Some(message) = message {
                            let id = message
                                .properties
                                .message_id()
                                .as_ref()
                                .map(|id| id.to_string())
                                .unwrap_or_default();
                            returned.push((
                                id,
                                format!(
                                    "RabbitMQ returned the message: {} {}",
                                    message.reply_code, message.reply_text
                                ),
                            ));
                        }
                        Delivery::Acknowledged { duplicate: false }
                    }
                    Ok(Confirmation::Nack(_)) => Delivery::Failed {
                        error: "RabbitMQ refused the message (nack)".into(),
                    },
                    Ok(Confirmation::NotRequested) => Delivery::Failed {
                        error: "the channel lost publisher confirms".into(),
                    },
                    Err(error) => Delivery::Failed {
                        error: format!("RabbitMQ confirm failed: {error}"),
                    },
                },
            };
            deliveries.push(delivery);
        }
        for (id, reason) in returned {
            match events.iter().position(|event| event.id.to_string() == id) {
                Some(index) => deliveries[index] = Delivery::Rejected { reason },
                // Not from this batch (it cannot be told which event it was): publish the
                // batch again rather than lose the return.
                None => {
                    for delivery in &mut deliveries {
                        *delivery = Delivery::Failed {
                            error: format!("{reason}, for a message of no event in the batch"),
                        };
                    }
                }
            }
        }
        if deliveries
            .iter()
            .any(|delivery| matches!(delivery, Delivery::Failed { .. }))
        {
            self.link = None;
        }
        deliveries
    }
}
