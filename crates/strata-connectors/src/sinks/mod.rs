//! The sinks: one file per broker.

mod http;
mod nats;
mod rabbit_mq;

use crate::definition::SinkSettings;
use crate::sink::Sink;

pub(crate) use http::HttpSink;
pub use http::SIGNATURE_HEADER;
pub(crate) use nats::NatsSink;
pub(crate) use rabbit_mq::RabbitMqSink;

/// Connects the sink `settings` describe: fails with the reason when the broker cannot be
/// reached or refuses the setup (so that a create with bad settings fails at once).
pub(crate) async fn connect(settings: &SinkSettings) -> Result<Box<dyn Sink>, String> {
    Ok(match settings {
        SinkSettings::Nats(nats) => Box::new(NatsSink::connect(nats).await?),
        SinkSettings::RabbitMq(rabbit) => Box::new(RabbitMqSink::connect(rabbit).await?),
        SinkSettings::Http(http) => Box::new(HttpSink::connect(http).await?),
    })
}
