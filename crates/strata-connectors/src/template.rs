//! Templates that name where an event goes (`events.{category}.{stream}`): checked once
//! when a connector is created, rendered for every event.

use strata_core::RecordedEvent;

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Stream,
    Category,
    EventType,
}

/// What a template renders into; decides which characters a rendered value may keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateTarget {
    /// A NATS subject: tokens split by `.`, no whitespace, no wildcards in values.
    NatsSubject,
    /// An AMQP exchange name or routing key (a short string, at most 255 bytes).
    Amqp,
}

/// A checked template with the placeholders `{stream}`, `{category}` and `{type}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    target: TemplateTarget,
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    /// A sentence naming the problem: an unknown placeholder, an unclosed brace, a character
    /// the target does not allow, an empty subject token.
    pub fn parse(text: &str, target: TemplateTarget) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the template is empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("template {text:?} has a '}}' without its '{{'"));
            }
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("template {text:?} has a '{{' that is never closed"))?;
            parts.push(match &after[..close] {
                "stream" => Part::Stream,
                "category" => Part::Category,
                "type" => Part::EventType,
                other => {
                    return Err(format!(
                        "template {text:?} has the unknown placeholder {{{other}}}; \
                         use {{stream}}, {{category}} or {{type}}"
                    ));
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let template = Self { parts, target };
        template.check_literals(text)?;
        Ok(template)
    }

    fn check_literals(&self, text: &str) -> Result<(), String> {
        if self.target != TemplateTarget::NatsSubject {
            return Ok(());
        }
        for part in &self.parts {
            if let Part::Text(literal) = part
                && let Some(bad) = literal
                    .chars()
                    .find(|c| c.is_whitespace() || matches!(c, '*' | '>'))
            {
                return Err(format!(
                    "template {text:?} contains {bad:?}, which a NATS subject to publish to \
                     cannot hold"
                ));
            }
        }
        // A sample rendering shows empty tokens (`a..b`, a leading or trailing dot).
        let sample = self.render_parts("s", "c", "t");
        if sample.split('.').any(str::is_empty) {
            return Err(format!(
                "template {text:?} gives NATS subjects with an empty token (two dots in a row, \
                 or a dot at either end)"
            ));
        }
        Ok(())
    }

    /// The name for `event`. Values are made safe for the target: in a NATS subject, `.`,
    /// whitespace, `*` and `>` become `_`, and an empty value becomes `_`.
    pub fn render(&self, event: &RecordedEvent) -> String {
        let category = event.stream.category();
        self.render_parts(event.stream.as_str(), category, &event.event_type)
    }

    fn render_parts(&self, stream: &str, category: &str, event_type: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Stream => self.push_value(&mut out, stream),
                Part::Category => self.push_value(&mut out, category),
                Part::EventType => self.push_value(&mut out, event_type),
            }
        }
        out
    }

    fn push_value(&self, out: &mut String, value: &str) {
        match self.target {
            TemplateTarget::Amqp => out.push_str(value),
            TemplateTarget::NatsSubject => {
                if value.is_empty() {
                    out.push('_');
                }
                out.extend(value.chars().map(|c| {
                    if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                        '_'
                    } else {
                        c
                    }
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::{Bytes, ContentType, EventId, Position, Revision, StreamName, Timestamp};

    fn event(stream: &str, event_type: &str) -> RecordedEvent {
        RecordedEvent {
            stream: StreamName::new(stream).unwrap(),
            revision: Revision(0),
            position: Position(0),
            id: EventId::new_random(),
            event_type: event_type.into(),
            content_type: ContentType::Json,
            data: Bytes::new(),
            metadata: Bytes::new(),
            created: Timestamp(0),
        }
    }

    #[test]
    fn renders_placeholders_and_makes_subject_tokens_safe() {
        let template = Template::parse(
            "events.{category}.{stream}.{type}",
            TemplateTarget::NatsSubject,
        )
        .unwrap();
        assert_eq!(
            template.render(&event("order-4.2 x", "Placed>")),
            "events.order.order-4_2_x.Placed_"
        );
        let amqp = Template::parse("{category}.{type}", TemplateTarget::Amqp).unwrap();
        assert_eq!(amqp.render(&event("cart-1", "Added")), "cart.Added");
    }

    #[test]
    fn refuses_bad_templates_with_the_reason() {
        for (text, needle) in [
            ("events.{strem}", "unknown placeholder {strem}"),
            ("events.{stream", "never closed"),
            ("events}.x", "without its"),
            ("events..{stream}", "empty token"),
            ("events.{stream}.", "empty token"),
            ("events.*", "cannot hold"),
            ("", "empty"),
        ] {
            let error = Template::parse(text, TemplateTarget::NatsSubject).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
