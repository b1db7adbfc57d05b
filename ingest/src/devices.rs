//! Devices bound to where their records come from: a client certificate at the gateway
//! ([`crate::gateway`]), an MQTT topic at the bridge ([`crate::mqtt`], `[mqtt.devices]`).
//! A bound device must be registered and not revoked, and the signed statements it forwards
//! must be signed by itself or by another signer of its participant: a device cannot speak
//! for another company. Unsigned records pass (the stream's signature policy decides).
//!
//! On MQTT the broker authenticates clients and its ACLs say which client may publish to
//! which topic; a binding such as `"factory/+/devices/+/events" = "{4}"` carries that
//! identity on: a message on `factory/sz/devices/press-07/events` is device `press-07`'s.

use veritrace_processors::Reason;
use veritrace_processors::event::Limits;
use veritrace_processors::signed::Signatures;

/// A registered, unrevoked device and its participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundDevice {
    /// The device id.
    pub id: String,
    /// Its participant.
    pub participant: String,
}

/// Why a bound device's record is refused: the reason code and what happened.
pub type Refusal = (Reason, String);

/// Looks a device up in the registry (reloading it once when the id is unknown: the device
/// may have been registered moments ago).
pub fn lookup(stage: &Signatures, id: &str, bound_by: &str) -> Result<BoundDevice, Refusal> {
    let Some(cache) = stage.registry.as_ref() else {
        return Err((
            Reason::UnknownSigner,
            format!(
                "{bound_by} names device {id:?}, but there is no identity registry (signatures.root-key)"
            ),
        ));
    };
    let device = cache
        .current()
        .devices()
        .get(id)
        .cloned()
        .or_else(|| cache.reload().devices().get(id).cloned());
    match device {
        None => Err((
            Reason::UnknownSigner,
            format!("{bound_by} names {id:?}, which is not a registered device"),
        )),
        Some(d) if d.revoked.is_some() => Err((
            Reason::SignerRevoked,
            format!(
                "{bound_by} names device {id:?}, revoked at {}",
                d.revoked.unwrap_or_default()
            ),
        )),
        Some(d) => Ok(BoundDevice {
            id: id.to_owned(),
            participant: d.participant_id,
        }),
    }
}

/// Checks the signed statements of one record (a single statement, a bundle, or an unsigned
/// event) against the device it came from. Faults of the record itself (a bad signature, bad
/// JSON) are not refused here: the processors reject and keep them with their reason.
pub fn check_record(
    stage: &Signatures,
    device: &BoundDevice,
    record: &[u8],
    now_ms: i64,
    limits: &Limits,
) -> Result<(), Refusal> {
    let opened = match stage.open_bundle(record, now_ms, limits) {
        Some(Ok(events)) => events.into_iter().filter_map(Result::ok).collect(),
        Some(Err(_)) => Vec::new(),
        None => stage.open(record, now_ms, limits).into_iter().collect(),
    };
    for o in opened {
        let Some(sig) = o.accepted.event.signature else {
            continue;
        };
        if sig.signer != device.id && sig.signer_participant != device.participant {
            return Err((
                Reason::SignerNotAuthorized,
                format!(
                    "{} is signed by {} of participant {}, but comes from device {} of participant {}",
                    o.accepted.event.event_id,
                    sig.signer,
                    sig.signer_participant,
                    device.id,
                    device.participant
                ),
            ));
        }
    }
    Ok(())
}

/// One part of a device id template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A topic level (0-based), matched by a `+` of the filter.
    Level(usize),
}

/// A topic filter bound to a device id template: `{N}` is the topic's N-th level (from 1),
/// which must be a `+` of the filter; the rest is literal (`"plant3/press/#" = "press-07"`,
/// `"factory/+/devices/+/events" = "{4}"`, `"lines/+/scanner" = "scanner-{2}"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicBinding {
    filter: String,
    template: Vec<Part>,
}

impl TopicBinding {
    /// Parses a binding; the error says what is wrong with it.
    pub fn parse(filter: &str, template: &str) -> Result<TopicBinding, String> {
        let levels: Vec<&str> = filter.split('/').collect();
        if filter.is_empty() || !rumqttc::valid_filter(filter) {
            return Err(format!("{filter:?} is not an MQTT topic filter"));
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find('{') {
                None => {
                    parts.push(Part::Text(rest.to_owned()));
                    rest = "";
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_owned()));
                    }
                    let close = rest[i..]
                        .find('}')
                        .ok_or_else(|| format!("{template:?}: an unclosed {{"))?;
                    let n: usize = rest[i + 1..i + close].parse().map_err(|_| {
                        format!(
                            "{template:?}: {{{}}} is not a level number",
                            &rest[i + 1..i + close]
                        )
                    })?;
                    if n == 0 || levels.get(n - 1) != Some(&"+") {
                        return Err(format!(
                            "{template:?}: level {{{n}}} of {filter:?} is not a + wildcard, so it names no device"
                        ));
                    }
                    parts.push(Part::Level(n - 1));
                    rest = &rest[i + close + 1..];
                }
            }
        }
        if parts.is_empty() {
            return Err(format!("{filter:?}: an empty device id"));
        }
        Ok(TopicBinding {
            filter: filter.to_owned(),
            template: parts,
        })
    }

    /// The filter.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The device a message on `topic` comes from, when the filter matches it.
    pub fn device(&self, topic: &str) -> Option<String> {
        if !rumqttc::matches(topic, &self.filter) {
            return None;
        }
        let levels: Vec<&str> = topic.split('/').collect();
        let mut id = String::new();
        for p in &self.template {
            match p {
                Part::Text(t) => id.push_str(t),
                Part::Level(n) => id.push_str(levels.get(*n)?),
            }
        }
        Some(id)
    }
}

/// The device a message on `topic` comes from: `Ok(None)` when no binding matches, an error
/// when two bindings name different devices.
pub fn device_of(bindings: &[TopicBinding], topic: &str) -> Result<Option<String>, Refusal> {
    let mut found: Option<(String, &str)> = None;
    for b in bindings {
        if let Some(id) = b.device(topic) {
            match &found {
                Some((other, filter)) if *other != id => {
                    return Err((
                        Reason::SignerNotAuthorized,
                        format!(
                            "topic {topic:?} is bound to device {other:?} by {filter:?} and to {id:?} by {:?}",
                            b.filter
                        ),
                    ));
                }
                Some(_) => {}
                None => found = Some((id, b.filter())),
            }
        }
    }
    Ok(found.map(|(id, _)| id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_wildcard_levels_and_literals() {
        let b = TopicBinding::parse("factory/+/devices/+/events", "{4}").expect("parse");
        assert_eq!(
            b.device("factory/sz/devices/press-07/events").as_deref(),
            Some("press-07")
        );
        assert_eq!(b.device("factory/sz/devices/press-07/other"), None);
        let b = TopicBinding::parse("lines/+/scanner", "scanner-{2}").expect("parse");
        assert_eq!(b.device("lines/L4/scanner").as_deref(), Some("scanner-L4"));
        let b = TopicBinding::parse("plant3/press/#", "press-07").expect("parse");
        assert_eq!(b.device("plant3/press/a/b").as_deref(), Some("press-07"));
    }

    #[test]
    fn bad_bindings_say_what_is_wrong() {
        for (f, t, want) in [
            ("factory/+/events", "{3}", "not a + wildcard"),
            ("factory/+/events", "{0}", "not a + wildcard"),
            ("factory/#", "{2}", "not a + wildcard"),
            ("factory/+/events", "{x}", "not a level number"),
            ("factory/+/events", "dev-{2", "unclosed"),
            ("factory/+/events", "", "empty device id"),
            ("factory/#/events", "d", "not an MQTT topic filter"),
        ] {
            let err = TopicBinding::parse(f, t).expect_err(t);
            assert!(err.contains(want), "{f} {t}: {err}");
        }
    }

    #[test]
    fn two_bindings_that_disagree_refuse_the_message() {
        let bindings = [
            TopicBinding::parse("a/+/x", "{2}").expect("parse"),
            TopicBinding::parse("a/#", "gateway-a").expect("parse"),
            TopicBinding::parse("b/+", "{2}").expect("parse"),
        ];
        assert!(device_of(&bindings, "a/d1/x").is_err());
        assert_eq!(device_of(&bindings, "a/d1/y"), Ok(Some("gateway-a".into())));
        assert_eq!(device_of(&bindings, "b/d2"), Ok(Some("d2".into())));
        assert_eq!(device_of(&bindings, "c/d3"), Ok(None));
    }
}
