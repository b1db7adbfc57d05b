//! The canonical event: parsing factory/ERP JSON, structuring it, and validating it.
//!
//! Pure: no I/O, no clock (the caller passes `now`). Every failure is a [`Rejection`] with a
//! stable [`Reason`]; arbitrary bytes never panic (see the property tests).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Number, Value};
use veritrace_verify::canonical::{self, StrictValue};
use veritrace_verify::{Digest, merkle};

use crate::number;
use crate::reason::{Reason, Rejection};
use crate::tracecode::{self, TraceCodeError};

/// Version of the canonical event format, written into every event as `"version"`.
pub const EVENT_VERSION: u32 = 1;

/// Default largest accepted record, 64 KiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;

/// Earliest accepted event time: 2000-01-01T00:00:00Z.
const MIN_TIME_MS: i64 = 946_684_800_000;

/// Longest id-like string (ids, names, sites, operators).
const MAX_TEXT: usize = 256;

/// Kinds of event. The names follow the industrial product traceability requirements;
/// `transformation` and `assembly` also map onto GS1 EPCIS transformation and aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum EventType {
    Production,
    QualityCheck,
    WarehouseIn,
    WarehouseOut,
    Transport,
    Retail,
    Sale,
    Assembly,
    /// Takes objects out of a container or an assembly (unpacking a pallet, removing a
    /// part): `trace_code` the container, `inputs` what comes out (none: everything in it).
    /// It ends the containment an `assembly` began, so traces know what was in what when.
    Disassembly,
    /// Declares earlier events in error (`retracts` names them; EPCIS `errorDeclaration`):
    /// they stay in the log, proven, but queries and traces read the corrected view.
    ErrorDeclaration,
    /// A serialised code issued by its brand (`veritrace codes issue`): the first state of
    /// its lifecycle. `trace_code` the code; `attributes` its AI 8030 signature and key id.
    CodeIssued,
    /// An object called back by its maker or a regulator (EPCIS disposition `recalled`).
    Recall,
    /// An object taken out of use for good (EPCIS ObjectEvent DELETE: decommissioning,
    /// destroying).
    Decommissioning,
    /// A version of a business type, as it was in force ([`crate::types`]): `attributes`
    /// hold its name, number, digest and whole definition (`veritrace types records`).
    TypeDefinition,
    Transformation,
    Maintenance,
    Telemetry,
    /// An identity registry record (`participant.registered`, `device.registered`,
    /// `device.key_rotated`, `device.revoked`): made by the pipeline from a signed record
    /// on the registry stream, never accepted as an ordinary event.
    Registry,
    /// An entry of the query servers' audit log ([`crate::audit`]): made by the pipeline
    /// on the audit stream, never accepted as an ordinary event.
    Audit,
    /// A business type of the deployment's own ([`crate::types`]), by its index there.
    Custom(u16),
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "registry" => Ok(EventType::Registry),
            "audit" => Ok(EventType::Audit),
            _ => EventType::parse(&s)
                .or_else(|| crate::types::lookup(&s))
                .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an event type"))),
        }
    }
}

impl EventType {
    /// Every type a source may send ([`EventType::Registry`] is not one).
    pub const ALL: [EventType; 17] = [
        EventType::Production,
        EventType::QualityCheck,
        EventType::WarehouseIn,
        EventType::WarehouseOut,
        EventType::Transport,
        EventType::Retail,
        EventType::Sale,
        EventType::Assembly,
        EventType::Disassembly,
        EventType::ErrorDeclaration,
        EventType::CodeIssued,
        EventType::Recall,
        EventType::Decommissioning,
        EventType::TypeDefinition,
        EventType::Transformation,
        EventType::Maintenance,
        EventType::Telemetry,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Production => "production",
            EventType::QualityCheck => "quality_check",
            EventType::WarehouseIn => "warehouse_in",
            EventType::WarehouseOut => "warehouse_out",
            EventType::Transport => "transport",
            EventType::Retail => "retail",
            EventType::Sale => "sale",
            EventType::Assembly => "assembly",
            EventType::Disassembly => "disassembly",
            EventType::ErrorDeclaration => "error_declaration",
            EventType::CodeIssued => "code_issued",
            EventType::Recall => "recall",
            EventType::Decommissioning => "decommissioning",
            EventType::TypeDefinition => "type_definition",
            EventType::Transformation => "transformation",
            EventType::Maintenance => "maintenance",
            EventType::Telemetry => "telemetry",
            EventType::Registry => "registry",
            EventType::Audit => "audit",
            EventType::Custom(i) => crate::types::name(i),
        }
    }

    /// A built-in type a source may send, by name (business types: [`crate::types`]).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Participant roles.
pub const ROLES: [&str; 11] = [
    "supplier",
    "manufacturer",
    "assembler",
    "inspector",
    "warehouse",
    "carrier",
    "distributor",
    "retailer",
    "customer",
    "maintainer",
    "regulator",
];

/// Quality check results.
pub const RESULTS: [&str; 3] = ["pass", "fail", "conditional"];

/// A participant: who records the event, or the counterparty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    /// Participant id (enterprise code, GLN, ...).
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One of [`ROLES`].
    pub role: String,
}

/// Trace object master data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TraceObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
}

/// An amount with its unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantity {
    /// Unit (`kg`, `pcs`, `m`, ...).
    pub unit: String,
    /// Non-negative amount.
    pub value: f64,
}

/// WGS 84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude, -90..=90.
    pub lat: f64,
    /// Longitude, -180..=180.
    pub lon: f64,
}

/// Unstructured data (a report, a certificate) entering as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// File name (absent or empty is `bad_attachment`).
    #[serde(default)]
    pub name: String,
    /// SHA-256 of the content, lower-case hex (absent or malformed is `bad_attachment`).
    #[serde(default)]
    pub sha256: String,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The signature an accepted event was signed with, as the leaf commits to it: the signer
/// the registry named, the key that verified, and the digest of the whole envelope as
/// received (kept in the `envelope` column, so a proof carries it and an auditor checks
/// the signature offline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureInfo {
    /// `ES256` or `EdDSA`.
    pub alg: String,
    /// For an event signed in a bundle: its position among the bundle's events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_index: Option<u64>,
    /// For an event signed in a bundle: how many events the bundle signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_size: Option<u64>,
    /// `cose` or `jws`.
    pub envelope: String,
    /// SHA-256 of the envelope as received, lower-case hex.
    pub envelope_sha256: String,
    /// When it was signed (the `iat` claim, seconds since the epoch).
    pub iat: i64,
    /// Key id of the verifying key (see `veritrace_verify::signature::PublicKey::key_id`).
    pub key_id: String,
    /// The device or participant that signed (`iss`).
    pub signer: String,
    /// The participant the signer belongs to.
    pub signer_participant: String,
}

/// The canonical, validated event. Its RFC 8785 serialisation is the Merkle leaf preimage.
/// Fields are declared in canonical (sorted) order so the JCS serializer streams them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Attachment hashes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Free attributes (a JSON object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Value>,
    /// The other party.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<Participant>,
    /// Device id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Unique id from the source.
    pub event_id: String,
    /// When, normalised to UTC with millisecond precision (`YYYY-MM-DDTHH:MM:SS.sssZ`).
    pub event_time: String,
    /// `event_time` as milliseconds since the Unix epoch (not serialised).
    #[serde(skip)]
    pub event_time_ms: i64,
    /// What happened.
    pub event_type: EventType,
    /// The built-in type whose requirements and trace-graph meaning it has: `event_type`
    /// itself, or a business type's `like` (not serialised).
    #[serde(skip)]
    pub kind: EventType,
    /// Consumed or built-in objects (normalised).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// Position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Master data of the trace object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<TraceObject>,
    /// Operator id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Produced objects (normalised).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Who records it.
    pub participant: Participant,
    /// Amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Quantity>,
    /// Sensor readings.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub readings: BTreeMap<String, f64>,
    /// QC result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The events an `error_declaration` declares in error (their event ids).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retracts: Vec<String>,
    /// Who signed the statement the event came from; absent when it came unsigned (or
    /// signatures are off for it). Part of the leaf, so a proof shows who said it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureInfo>,
    /// Site id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The trace object (normalised element string); for assembly, the output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_code: Option<String>,
    /// [`EVENT_VERSION`].
    pub version: u32,
}

impl Event {
    /// The canonical bytes (RFC 8785), i.e. the leaf preimage.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, Rejection> {
        let mut out = Vec::with_capacity(512);
        crate::event_jcs::write(self, &mut out)
            .map(|()| out)
            .map_err(|e| match e {
                veritrace_verify::Error::UnsafeInteger { value } => Rejection::new(
                    Reason::NumberOutOfRange,
                    format!("number {value} cannot be represented exactly (beyond +-2^53)"),
                ),
                other => Rejection::new(Reason::BadValue, other.to_string()),
            })
    }

    /// The GTIN of the trace code, when it is a GTIN-based code.
    pub fn gtin(&self) -> Option<&str> {
        let c = self.trace_code.as_deref()?;
        c.strip_prefix("(01)")
            .map(|rest| &rest[..rest.len().min(14)])
    }
}

/// An accepted event with its canonical bytes and leaf hash.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The structured event.
    pub event: Event,
    /// RFC 8785 bytes.
    pub canonical: Vec<u8>,
    /// `SHA-256(0x00 || canonical)`.
    pub leaf_hash: Digest,
}

/// Validation limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted record in bytes.
    pub max_payload: usize,
    /// How far in the future an event time may be, in milliseconds (clock skew).
    pub max_future_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_future_ms: 24 * 3600 * 1000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    event_id: String,
    event_type: String,
    event_time: String,
    participant: Obj<Participant>,
    #[serde(default)]
    trace_code: Option<String>,
    #[serde(default)]
    inputs: Option<Vec<String>>,
    #[serde(default)]
    outputs: Option<Vec<String>>,
    #[serde(default)]
    object: Option<Obj<TraceObject>>,
    #[serde(default)]
    quantity: Option<Obj<RawQuantity>>,
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    retracts: Option<Vec<String>>,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    counterparty: Option<Obj<Participant>>,
    #[serde(default)]
    location: Option<Obj<RawLocation>>,
    #[serde(default)]
    readings: Option<Readings>,
    /// Kept as text: its number literals are checked as written ([`number::inexact_literal`]).
    #[serde(default)]
    attributes: Option<Box<RawValue>>,
    #[serde(default)]
    attachments: Option<Vec<Obj<RawAttachment>>>,
    /// Written into every stored event; accepted back (when it is [`EVENT_VERSION`]) so
    /// that exported events can be imported again: a migration, a replay, a partner's copy.
    #[serde(default)]
    version: Option<u64>,
}

impl RawEvent {
    /// True when the top-level field `name` ([`crate::types::REQUIRABLE`]) is present.
    fn has(&self, name: &str) -> bool {
        match name {
            "trace_code" => self.trace_code.is_some(),
            "inputs" => self.inputs.as_ref().is_some_and(|v| !v.is_empty()),
            "outputs" => self.outputs.as_ref().is_some_and(|v| !v.is_empty()),
            "object" => self.object.is_some(),
            "quantity" => self.quantity.is_some(),
            "operator" => self.operator.is_some(),
            "result" => self.result.is_some(),
            "site" => self.site.is_some(),
            "device_id" => self.device_id.is_some(),
            "counterparty" => self.counterparty.is_some(),
            "location" => self.location.is_some(),
            "readings" => self.readings.is_some(),
            "attributes" => self.attributes.is_some(),
            "attachments" => self.attachments.as_ref().is_some_and(|v| !v.is_empty()),
            _ => false,
        }
    }
}

/// A struct read only from a JSON object. serde also reads structs positionally from
/// arrays, which would take a GeoJSON-style `"location": [lon, lat]` as `lat, lon`.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(m))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData)).map(Obj)
    }
}

/// Only the version of a record that does not have this version's shape.
#[derive(Deserialize)]
struct VersionOnly {
    #[serde(default)]
    version: Option<Value>,
}

fn unsupported_version(v: impl std::fmt::Display) -> Rejection {
    Rejection::new(
        Reason::BadValue,
        format!("unsupported event version {v}; this build writes {EVENT_VERSION}"),
    )
}

// The numeric fields as parsed: `serde_json::Number` keeps what an `f64` would lose (an
// integer literal beyond 2^53), so the range is checked in `structure`, naming the field.
// The serde names are the public types' names, which error details show.

#[derive(Deserialize)]
#[serde(rename = "Quantity", deny_unknown_fields)]
struct RawQuantity {
    unit: String,
    value: Number,
}

#[derive(Deserialize)]
#[serde(rename = "Location", deny_unknown_fields)]
struct RawLocation {
    lat: Number,
    lon: Number,
}

#[derive(Deserialize)]
#[serde(rename = "Attachment", deny_unknown_fields)]
struct RawAttachment {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    size: Option<Number>,
}

/// Sensor readings as parsed: a name -> number map, or why it is not one. Built directly
/// from the JSON (no intermediate `serde_json::Value`); duplicate names are refused.
enum Readings {
    Valid(BTreeMap<String, f64>),
    Invalid(Rejection),
}

impl<'de> Deserialize<'de> for Readings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Readings;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of name -> number")
            }
            // Any other JSON value is `bad_field_type`, consumed whole so that the parse
            // goes on (an error here would leave the parser inside it: `malformed_json`).
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<Readings, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(not_an_object("an array"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Readings, E> {
                Ok(not_an_object("a string"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Readings, E> {
                Ok(not_an_object("a boolean"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Readings, E> {
                Ok(not_an_object("a number"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Readings, E> {
                Ok(not_an_object("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Readings, E> {
                Ok(not_an_object("a number"))
            }
            fn visit_unit<E>(self) -> Result<Readings, E> {
                Ok(not_an_object("null"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Readings, A::Error> {
                let mut out = BTreeMap::new();
                let mut bad: Option<Rejection> = None;
                while let Some(k) = m.next_key::<String>()? {
                    let v: StrictValue = m.next_value()?;
                    if bad.is_some() {
                        continue;
                    }
                    let n = match &v.0 {
                        Value::Number(n) => number::checked(format_args!("readings.{k}"), n),
                        _ => Err(Rejection::new(
                            Reason::BadFieldType,
                            format!("readings.{k} must be a number"),
                        )),
                    };
                    match n {
                        Err(r) => bad = Some(r),
                        Ok(n) => {
                            if out.insert(k, n).is_some() {
                                return Err(serde::de::Error::custom("duplicate key in readings"));
                            }
                        }
                    }
                }
                Ok(match bad {
                    Some(r) => Readings::Invalid(r),
                    None => Readings::Valid(out),
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn not_an_object(got: &str) -> Readings {
    Readings::Invalid(Rejection::new(
        Reason::BadFieldType,
        format!("readings must be an object of name -> number, not {got}"),
    ))
}

/// Parses, structures and validates one record, then computes its canonical bytes and leaf
/// hash. `now_ms` bounds event times from above.
pub fn process(payload: &[u8], now_ms: i64, limits: &Limits) -> Result<Accepted, Rejection> {
    let event = parse_event(payload, now_ms, limits)?;
    let canonical = event.canonical_bytes().map_err(|mut r| {
        r.event_id = Some(event.event_id.clone());
        r
    })?;
    let leaf_hash = merkle::leaf_hash(&canonical);
    Ok(Accepted {
        event,
        canonical,
        leaf_hash,
    })
}

/// Parses and validates one record into a canonical [`Event`].
pub fn parse_event(payload: &[u8], now_ms: i64, limits: &Limits) -> Result<Event, Rejection> {
    if payload.len() > limits.max_payload {
        return Err(Rejection::new(
            Reason::PayloadTooLarge,
            format!(
                "{} bytes exceeds the limit of {} bytes",
                payload.len(),
                limits.max_payload
            ),
        ));
    }
    // serde would also read a struct from a positional array: only objects are events.
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(payload) {
                Ok(_) => Rejection::new(
                    Reason::NotAnObject,
                    "the record is valid JSON but not an object",
                ),
                Err(e) => classify_serde_error(payload, &e),
            },
        );
    }
    // Text checked as UTF-8 once, in one pass, rather than string by string; bytes that
    // are not UTF-8 are read as bytes, for serde's error at the first bad string.
    let raw: Result<RawEvent, _> = match std::str::from_utf8(payload) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(payload),
    };
    let raw = raw.map_err(|e| {
        if let Some(r) = crate::epcis::refusal(payload) {
            return r;
        }
        // Another version may have other fields: say so rather than name the first difference.
        if e.classify() == serde_json::error::Category::Data
            && let Ok(VersionOnly {
                version: Some(Value::Number(v)),
            }) = serde_json::from_slice(payload)
            && v.as_u64() != Some(EVENT_VERSION.into())
        {
            return unsupported_version(v);
        }
        classify_serde_error(payload, &e)
    })?;
    // The id moves into the event, or into the rejection: never copied.
    let mut raw = raw;
    let event_id = std::mem::take(&mut raw.event_id);
    match structure(&event_id, raw, now_ms, limits) {
        Ok(mut event) => {
            event.event_id = event_id;
            Ok(event)
        }
        Err(mut r) => {
            r.event_id = Some(event_id);
            Err(r)
        }
    }
}

fn classify_serde_error(payload: &[u8], e: &serde_json::Error) -> Rejection {
    use serde_json::error::Category;
    let msg = e.to_string();
    if e.classify() == Category::Syntax && msg.starts_with("number out of range") {
        // serde_json stops at a literal beyond the double range (`1e400`) without saying
        // where in the event it is: find it just before the error position.
        let text = match std::str::from_utf8(payload) {
            Ok(t) => t,
            Err(u) => std::str::from_utf8(payload.get(..u.valid_up_to()).unwrap_or_default())
                .unwrap_or_default(),
        };
        let at = byte_offset(text, e.line(), e.column());
        return number::beyond_double_range(text, at)
            .unwrap_or_else(|| Rejection::new(Reason::NumberOutOfRange, msg));
    }
    let reason = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => Reason::MalformedJson,
        Category::Data => {
            if msg.contains("expected struct RawEvent") {
                Reason::NotAnObject
            } else if msg.starts_with("unknown field") {
                Reason::UnknownField
            } else if msg.starts_with("missing field") {
                Reason::MissingField
            } else if msg.starts_with("duplicate") {
                Reason::MalformedJson
            } else {
                Reason::BadFieldType
            }
        }
    };
    if reason == Reason::MalformedJson && std::str::from_utf8(payload).is_err() {
        return Rejection::new(reason, format!("not UTF-8 JSON: {msg}"));
    }
    Rejection::new(reason, msg)
}

/// The byte offset of serde_json's 1-based `line` and byte `column` in `text`.
fn byte_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2).map(|(i, _)| i + 1)?
    };
    Some(start + column)
}

fn text(field: &str, s: &str) -> Result<(), Rejection> {
    match text_fault(s) {
        None => Ok(()),
        Some(fault) => Err(Rejection::new(
            Reason::BadValue,
            match fault {
                TextFault::Empty => format!("{field} is empty"),
                TextFault::Long => format!("{field} is longer than {MAX_TEXT} characters"),
                TextFault::Control => format!("{field} contains control characters"),
            },
        )),
    }
}

/// What is wrong with a text field, checked in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextFault {
    Empty,
    Long,
    Control,
}

/// [`text_fault_chars`] with a byte-wise path for ASCII text (nearly every field): ASCII
/// white space is `\t`..`\r` and the space, ASCII control characters those below the space
/// and DEL.
fn text_fault(s: &str) -> Option<TextFault> {
    if !s.is_ascii() {
        return text_fault_chars(s);
    }
    let b = s.as_bytes();
    if b.iter().all(|c| matches!(c, b' ' | b'\t'..=b'\r')) {
        Some(TextFault::Empty)
    } else if b.len() > MAX_TEXT {
        Some(TextFault::Long)
    } else if b
        .iter()
        .fold(false, |any, &c| any | (c < b' ') | (c == 0x7f))
    {
        Some(TextFault::Control)
    } else {
        None
    }
}

fn text_fault_chars(s: &str) -> Option<TextFault> {
    if s.trim().is_empty() {
        Some(TextFault::Empty)
    } else if s.chars().count() > MAX_TEXT {
        Some(TextFault::Long)
    } else if s.chars().any(char::is_control) {
        Some(TextFault::Control)
    } else {
        None
    }
}

fn opt_text(field: &str, s: &Option<String>) -> Result<(), Rejection> {
    match s {
        Some(s) => text(field, s),
        None => Ok(()),
    }
}

/// `inputs[3]`-style field names, formatted only when an error needs them.
struct Indexed(&'static str, usize);

impl std::fmt::Display for Indexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

pub(crate) fn trace_code(field: impl std::fmt::Display, s: &str) -> Result<String, Rejection> {
    tracecode::parse_trace_code(s)
        .map(|c| c.into_canonical())
        .map_err(|e| {
            let reason = match e {
                TraceCodeError::BadCheckDigit { .. } => Reason::BadGtinCheckDigit,
                TraceCodeError::Malformed { .. } => Reason::MalformedTraceCode,
            };
            Rejection::new(reason, format!("{field}: {e}"))
        })
}

fn participant(field: &'static str, p: &Participant) -> Result<(), Rejection> {
    let (id, name) = if field == "participant" {
        ("participant.id", "participant.name")
    } else {
        ("counterparty.id", "counterparty.name")
    };
    text(id, &p.id)?;
    opt_text(name, &p.name)?;
    if !ROLES.contains(&p.role.as_str()) {
        return Err(Rejection::new(
            Reason::BadValue,
            format!(
                "{field}.role {:?} is not one of {}",
                p.role,
                ROLES.join(", ")
            ),
        ));
    }
    Ok(())
}

fn date(field: &str, s: &Option<String>) -> Result<(), Rejection> {
    if let Some(s) = s {
        if s.len() != 10 {
            return Err(Rejection::new(
                Reason::BadValue,
                format!("{field} {s:?} is not a YYYY-MM-DD date"),
            ));
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| {
            Rejection::new(
                Reason::BadValue,
                format!("{field} {s:?} is not a YYYY-MM-DD date: {e}"),
            )
        })?;
    }
    Ok(())
}

/// Free attributes: a JSON object without duplicate keys whose numbers a double holds.
fn attributes(raw: &RawValue) -> Result<Value, Rejection> {
    let text = raw.get();
    if let Some(r) = number::inexact_literal(text, "attributes") {
        return Err(r);
    }
    match canonical::parse_strict(text.as_bytes()) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Rejection::new(
            Reason::BadFieldType,
            "attributes must be a JSON object",
        )),
        Err(veritrace_verify::Error::DuplicateKey { key }) => Err(Rejection::new(
            Reason::MalformedJson,
            format!("attributes has the key {key:?} twice"),
        )),
        Err(e) => Err(Rejection::new(
            Reason::MalformedJson,
            format!("attributes: {e}"),
        )),
    }
}

/// An attachment size: a whole number of bytes, at most 2^53.
fn size(i: usize, n: &Number) -> Result<u64, Rejection> {
    let field = format!("attachments[{i}].size");
    let f = number::checked(&field, n)?;
    if f < 0.0 {
        return Err(Rejection::new(
            Reason::NumberOutOfRange,
            format!("{field} {n} must be >= 0"),
        ));
    }
    n.as_u64().ok_or_else(|| {
        Rejection::new(
            Reason::BadFieldType,
            format!("{field} {n} must be a whole number of bytes"),
        )
    })
}

/// 1-128 characters of `A-Z a-z 0-9 . _ : ~ / -`.
fn valid_event_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:~/-".contains(&b))
}

/// Most events one error declaration retracts.
pub const MAX_RETRACTS: usize = 1_000;

fn missing(field: &str, ty: EventType) -> Rejection {
    Rejection::new(
        Reason::MissingField,
        format!("missing field `{field}` (required for {})", ty.as_str()),
    )
}

/// The event of `raw`, whose id (`event_id`, taken out of it) the caller puts in.
fn structure(
    event_id: &str,
    mut raw: RawEvent,
    now_ms: i64,
    limits: &Limits,
) -> Result<Event, Rejection> {
    if let Some(v) = raw.version
        && v != u64::from(EVENT_VERSION)
    {
        return Err(unsupported_version(v));
    }
    // Event id.
    if !valid_event_id(event_id) {
        return Err(Rejection::new(
            Reason::BadEventId,
            format!(
                "event_id must be 1-128 characters of A-Z a-z 0-9 . _ : ~ / - (got {} bytes)",
                event_id.len()
            ),
        ));
    }
    let ty = EventType::parse(&raw.event_type)
        .or_else(|| crate::types::lookup(&raw.event_type))
        .ok_or_else(|| {
            let shown: String = raw.event_type.chars().take(64).collect();
            Rejection::new(
                Reason::UnknownEventType,
                format!("event_type {shown:?} is not a known type"),
            )
        })?;

    // Time: RFC 3339 with offset, normalised to UTC milliseconds.
    let common = crate::rfc3339_common_ms(&raw.event_time);
    let ms = match common {
        Some(ms) => ms,
        None => DateTime::parse_from_rfc3339(&raw.event_time)
            .map_err(|e| {
                Rejection::new(
                    Reason::BadTimestamp,
                    format!("event_time is not RFC 3339 with an offset: {e}"),
                )
            })?
            .timestamp_millis(),
    };
    if ms < MIN_TIME_MS || ms > now_ms.saturating_add(limits.max_future_ms) {
        return Err(Rejection::new(
            Reason::BadTimestamp,
            format!(
                "event_time {} is outside 2000-01-01 .. now + {} h",
                raw.event_time,
                limits.max_future_ms / 3_600_000
            ),
        ));
    }
    // Sent in the stored form already (UTC, three fraction digits): kept as it came.
    let stored_form = |t: &str| t.len() == 24 && t.as_bytes()[19] == b'.' && t.ends_with('Z');
    let mut event_time = std::mem::take(&mut raw.event_time);
    if common.is_none() || !stored_form(&event_time) {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms)
            .ok_or_else(|| Rejection::new(Reason::BadTimestamp, "event_time out of range"))?;
        crate::utc_ms_text_into(&utc, &mut event_time);
    }

    // A business type: the version in force at the event's time, and what it requires.
    let custom = match ty {
        EventType::Custom(i) => Some(crate::types::version_at(i, ms)?),
        _ => None,
    };
    if let Some(v) = &custom {
        for f in &v.def.required {
            if !raw.has(f) {
                return Err(Rejection::new(
                    Reason::MissingField,
                    format!(
                        "missing field `{f}` (required for {} version {})",
                        ty.as_str(),
                        v.number
                    ),
                ));
            }
        }
    }
    let kind = custom.as_ref().and_then(|v| v.like).unwrap_or(ty);

    let Obj(raw_participant) = raw.participant;
    let counterparty = raw.counterparty.map(|Obj(c)| c);
    participant("participant", &raw_participant)?;
    if let Some(c) = &counterparty {
        participant("counterparty", c)?;
    }

    // Trace codes.
    let code = raw
        .trace_code
        .as_deref()
        .map(|c| trace_code("trace_code", c))
        .transpose()?;
    let inputs = raw
        .inputs
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| trace_code(Indexed("inputs", i), c))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = raw
        .outputs
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| trace_code(Indexed("outputs", i), c))
        .collect::<Result<Vec<_>, _>>()?;

    if let Some(v) = &custom {
        if let Some(c) = &code {
            v.check_kind("trace_code", c)?;
        }
        for (i, c) in inputs.iter().enumerate() {
            v.check_kind(&format!("inputs[{i}]"), c)?;
        }
        for (i, c) in outputs.iter().enumerate() {
            v.check_kind(&format!("outputs[{i}]"), c)?;
        }
    }

    // Per-type requirements (a business type: those of the type it is like).
    use EventType::*;
    match kind {
        Production | QualityCheck | WarehouseIn | WarehouseOut | Transport | Retail | Sale
        | Assembly | Disassembly | CodeIssued | Recall | Decommissioning
            if code.is_none() =>
        {
            return Err(missing("trace_code", ty));
        }
        _ => {}
    }
    if matches!(kind, Assembly | Transformation) && inputs.is_empty() {
        return Err(missing("inputs", ty));
    }
    if kind == Transformation && outputs.is_empty() {
        return Err(missing("outputs", ty));
    }
    let retracts = raw.retracts.unwrap_or_default();
    match (ty, retracts.is_empty()) {
        (ErrorDeclaration, true) => return Err(missing("retracts", ty)),
        (ErrorDeclaration, false) => {
            if retracts.len() > MAX_RETRACTS {
                return Err(Rejection::new(
                    Reason::BadValue,
                    format!(
                        "retracts names {} events; at most {MAX_RETRACTS}",
                        retracts.len()
                    ),
                ));
            }
            for (i, r) in retracts.iter().enumerate() {
                if !valid_event_id(r) {
                    return Err(Rejection::new(
                        Reason::BadValue,
                        format!("retracts[{i}] is not an event id"),
                    ));
                }
                if r == event_id {
                    return Err(Rejection::new(
                        Reason::BadValue,
                        "an error declaration cannot retract itself",
                    ));
                }
            }
        }
        (_, false) => {
            return Err(Rejection::new(
                Reason::BadValue,
                format!(
                    "only an error_declaration retracts events, not a {}",
                    ty.as_str()
                ),
            ));
        }
        (_, true) => {}
    }
    if kind == TypeDefinition && raw.attributes.is_none() {
        return Err(missing("attributes", ty));
    }
    if kind == QualityCheck && raw.result.is_none() {
        return Err(missing("result", ty));
    }
    if matches!(kind, Telemetry | Maintenance) && raw.device_id.is_none() {
        return Err(missing("device_id", ty));
    }
    if kind == Telemetry && raw.readings.is_none() {
        return Err(missing("readings", ty));
    }
    if let Some(r) = &raw.result
        && !RESULTS.contains(&r.as_str())
    {
        return Err(Rejection::new(
            Reason::BadValue,
            format!("result {r:?} is not one of pass, fail, conditional"),
        ));
    }
    if let Some(c) = &code
        && inputs.contains(c)
    {
        return Err(Rejection::new(
            Reason::BadValue,
            format!("{c} is both the output and an input"),
        ));
    }

    opt_text("operator", &raw.operator)?;
    opt_text("site", &raw.site)?;
    opt_text("device_id", &raw.device_id)?;

    let mut object = raw.object.map(|Obj(o)| o);
    if let Some(o) = &mut object {
        if let Some(p) = &mut o.product_id {
            *p = tracecode::normalise_gtin(p).map_err(|e| {
                let reason = match e {
                    TraceCodeError::BadCheckDigit { .. } => Reason::BadGtinCheckDigit,
                    TraceCodeError::Malformed { .. } => Reason::BadValue,
                };
                Rejection::new(reason, format!("object.product_id: {e}"))
            })?;
        }
        for (f, v) in [
            ("object.batch_number", &o.batch_number),
            ("object.production_line", &o.production_line),
            ("object.model", &o.model),
            ("object.spec", &o.spec),
        ] {
            opt_text(f, v)?;
        }
        date("object.production_date", &o.production_date)?;
        date("object.expiry_date", &o.expiry_date)?;
    }
    let quantity = match raw.quantity {
        None => None,
        Some(Obj(q)) => {
            let value = number::checked("quantity.value", &q.value)?;
            if value < 0.0 {
                return Err(Rejection::new(
                    Reason::NumberOutOfRange,
                    format!("quantity.value {value} must be >= 0"),
                ));
            }
            text("quantity.unit", &q.unit)?;
            Some(Quantity {
                unit: q.unit,
                value,
            })
        }
    };
    let location = match &raw.location {
        None => None,
        Some(Obj(l)) => {
            let lat = number::checked("location.lat", &l.lat)?;
            let lon = number::checked("location.lon", &l.lon)?;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(Rejection::new(
                    Reason::LatLonOutOfRange,
                    format!("location ({lat}, {lon}) is outside lat -90..90, lon -180..180"),
                ));
            }
            Some(Location { lat, lon })
        }
    };
    let readings = match raw.readings {
        None => BTreeMap::new(),
        Some(Readings::Invalid(r)) => return Err(r),
        Some(Readings::Valid(map)) => {
            if map.is_empty() {
                return Err(Rejection::new(Reason::BadValue, "readings is empty"));
            }
            for k in map.keys() {
                text("readings key", k)?;
            }
            map
        }
    };
    let attributes = raw.attributes.as_deref().map(attributes).transpose()?;
    if let Some(v) = &custom {
        v.check_attributes(attributes.as_ref())?;
    }
    let mut attachments = Vec::new();
    for (i, Obj(a)) in raw.attachments.unwrap_or_default().into_iter().enumerate() {
        if a.name.trim().is_empty() || a.name.len() > MAX_TEXT {
            return Err(Rejection::new(
                Reason::BadAttachment,
                format!("attachments[{i}].name is empty or too long"),
            ));
        }
        if a.sha256.len() != 64 || !a.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rejection::new(
                Reason::BadAttachment,
                format!("attachments[{i}].sha256 is not 64 hex digits"),
            ));
        }
        let size = match &a.size {
            None => None,
            Some(n) => Some(size(i, n)?),
        };
        attachments.push(Attachment {
            media_type: a.media_type,
            name: a.name,
            sha256: a.sha256.to_ascii_lowercase(),
            size,
        });
    }

    Ok(Event {
        version: EVENT_VERSION,
        event_id: String::new(),
        event_type: ty,
        kind,
        event_time,
        event_time_ms: ms,
        participant: raw_participant,
        trace_code: code,
        inputs,
        outputs,
        object,
        quantity,
        operator: raw.operator,
        result: raw.result,
        retracts,
        signature: None,
        site: raw.site,
        device_id: raw.device_id,
        counterparty,
        location,
        readings,
        attributes,
        attachments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_795_000_000_000; // 2026-11-18

    fn ok(json: &str) -> Accepted {
        process(json.as_bytes(), NOW, &Limits::default())
            .unwrap_or_else(|r| panic!("rejected: {r}"))
    }

    fn reason(json: &[u8]) -> Reason {
        match process(json, NOW, &Limits::default()) {
            Ok(_) => panic!("accepted: {}", String::from_utf8_lossy(json)),
            Err(r) => r.reason,
        }
    }

    const QC: &str = r#"{"event_id":"e-1","event_type":"quality_check","event_time":"2026-11-01T08:15:02.125+08:00",
        "trace_code":"https://id.gs1.org/01/9506000134352/21/7QK3M9","participant":{"id":"p1","role":"inspector"},
        "result":"pass","location":{"lat":31.2304,"lon":121.4737},"readings":{"t":21},
        "attachments":[{"name":"r.pdf","sha256":"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"}]}"#;

    /// A time already in the stored form is kept as sent; every other form of the same
    /// instant is written in it.
    #[test]
    fn event_times_are_stored_in_one_form() {
        for sent in [
            "2026-11-01T00:15:02.125Z",
            "2026-11-01T00:15:02.125z",
            "2026-11-01t00:15:02.125Z",
            "2026-11-01 00:15:02.125Z",
            "2026-11-01T00:15:02.1259Z",
            "2026-11-01T08:15:02.125+08:00",
            "2026-10-31T23:45:02.125-00:30",
            "2026-11-01T00:15:02.125-00:00",
        ] {
            let a = ok(&QC.replace("2026-11-01T08:15:02.125+08:00", sent));
            assert_eq!(a.event.event_time, "2026-11-01T00:15:02.125Z", "{sent}");
        }
        let a = ok(&QC.replace("2026-11-01T08:15:02.125+08:00", "2026-11-01T00:15:02Z"));
        assert_eq!(a.event.event_time, "2026-11-01T00:15:02.000Z");
    }

    #[test]
    fn structures_and_canonicalises() {
        let a = ok(QC);
        assert_eq!(a.event.event_time, "2026-11-01T00:15:02.125Z");
        assert_eq!(
            a.event.trace_code.as_deref(),
            Some("(01)09506000134352(21)7QK3M9")
        );
        assert_eq!(a.event.gtin(), Some("09506000134352"));
        let text = String::from_utf8(a.canonical.clone()).expect("utf8");
        assert!(
            text.starts_with(r#"{"attachments":[{"name":"r.pdf","sha256":"9f86d0"#),
            "{text}"
        );
        assert!(text.contains(r#""readings":{"t":21}"#), "{text}");
        assert!(text.ends_with(r#""version":1}"#), "{text}");
        // The verifier re-canonicalises the JSON value and gets the same leaf.
        let v: Value = serde_json::from_slice(&a.canonical).expect("json");
        assert_eq!(
            merkle::leaf_hash(&canonical::to_vec(&v).expect("jcs")),
            a.leaf_hash
        );
    }

    #[test]
    fn each_reason_code() {
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(70_000));
        assert_eq!(reason(big.as_bytes()), Reason::PayloadTooLarge);
        assert_eq!(reason(b"{\"event_id\":"), Reason::MalformedJson);
        assert_eq!(reason(&[0xff, 0xfe, 0x00]), Reason::MalformedJson);
        assert_eq!(reason(b"[1,2]"), Reason::NotAnObject);
        assert_eq!(reason(b"\"str\""), Reason::NotAnObject);
        assert_eq!(
            reason(
                QC.replace("\"operator\"", "x")
                    .replace("\"result\":\"pass\"", "\"result\":\"pass\",\"colour\":1")
                    .as_bytes()
            ),
            Reason::UnknownField
        );
        assert_eq!(
            reason(QC.replace("\"result\":\"pass\",", "").as_bytes()),
            Reason::MissingField
        );
        assert_eq!(
            reason(QC.replace("\"event_id\":\"e-1\",", "").as_bytes()),
            Reason::MissingField
        );
        assert_eq!(
            reason(QC.replace("\"e-1\"", "7").as_bytes()),
            Reason::BadFieldType
        );
        assert_eq!(
            reason(QC.replace("\"e-1\"", "\"e 1\"").as_bytes()),
            Reason::BadEventId
        );
        assert_eq!(
            reason(QC.replace("quality_check", "qc").as_bytes()),
            Reason::UnknownEventType
        );
        assert_eq!(
            reason(
                QC.replace("2026-11-01T08:15:02.125+08:00", "2026-11-01 08:15")
                    .as_bytes()
            ),
            Reason::BadTimestamp
        );
        assert_eq!(
            reason(
                QC.replace("2026-11-01T08:15:02.125+08:00", "1999-11-01T08:15:02Z")
                    .as_bytes()
            ),
            Reason::BadTimestamp
        );
        assert_eq!(
            reason(
                QC.replace("2026-11-01T08:15:02.125+08:00", "2027-11-01T08:15:02Z")
                    .as_bytes()
            ),
            Reason::BadTimestamp
        );
        assert_eq!(
            reason(QC.replace("31.2304", "91.5").as_bytes()),
            Reason::LatLonOutOfRange
        );
        assert_eq!(
            reason(QC.replace("9506000134352", "9506000134353").as_bytes()),
            Reason::BadGtinCheckDigit
        );
        assert_eq!(
            reason(
                QC.replace("https://id.gs1.org/01/9506000134352/21/7QK3M9", "ABC")
                    .as_bytes()
            ),
            Reason::MalformedTraceCode
        );
        assert_eq!(
            reason(QC.replace("9F86D0", "XX86D0").as_bytes()),
            Reason::BadAttachment
        );
        assert_eq!(
            reason(QC.replace("inspector", "wizard").as_bytes()),
            Reason::BadValue
        );
        assert_eq!(
            reason(QC.replace("\"pass\"", "\"maybe\"").as_bytes()),
            Reason::BadValue
        );
        assert_eq!(
            reason(
                QC.replace("{\"t\":21}", "{\"t\":9007199254740993}")
                    .as_bytes()
            ),
            Reason::NumberOutOfRange
        );
        assert_eq!(
            reason(
                QC.replace(
                    "\"result\":\"pass\"",
                    "\"result\":\"pass\",\"result\":\"fail\""
                )
                .as_bytes()
            ),
            Reason::MalformedJson
        );
        assert_eq!(
            reason(QC.replace("{\"t\":21}", "{\"t\":21,\"t\":22}").as_bytes()),
            Reason::MalformedJson
        );
    }

    #[test]
    fn assembly_and_transformation_need_inputs_and_outputs() {
        let asm = r#"{"event_id":"a","event_type":"assembly","event_time":"2026-11-01T00:00:00Z","participant":{"id":"p","role":"assembler"},"trace_code":"(01)09506000134352(21)P1"}"#;
        assert_eq!(reason(asm.as_bytes()), Reason::MissingField);
        let ok_asm = asm.replace(
            "\"trace_code\"",
            "\"inputs\":[\"(01)09506000134352(10)L1\"],\"trace_code\"",
        );
        assert_eq!(
            ok(&ok_asm).event.inputs,
            vec!["(01)09506000134352(10)L1".to_string()]
        );
        let tf = r#"{"event_id":"t","event_type":"transformation","event_time":"2026-11-01T00:00:00Z","participant":{"id":"p","role":"manufacturer"},"inputs":["(01)09506000134352(10)L1"]}"#;
        assert_eq!(reason(tf.as_bytes()), Reason::MissingField);
    }

    #[test]
    fn error_declarations_name_what_they_retract_and_only_they_retract() {
        let decl = r#"{"event_id":"d","event_type":"error_declaration","event_time":"2026-11-01T00:00:00Z","participant":{"id":"p","role":"manufacturer"}}"#;
        assert_eq!(reason(decl.as_bytes()), Reason::MissingField);
        let with = |r: &str| {
            decl.replace(
                "\"participant\"",
                &format!("\"retracts\":{r},\"participant\""),
            )
        };
        let a = ok(&with(r#"["a1","a2"]"#));
        assert_eq!(a.event.retracts, vec!["a1", "a2"]);
        assert!(
            String::from_utf8_lossy(&a.canonical).contains(r#""retracts":["a1","a2"]"#),
            "the leaf commits to what it retracts"
        );
        assert_eq!(reason(with("[]").as_bytes()), Reason::MissingField);
        assert_eq!(reason(with(r#"["d"]"#).as_bytes()), Reason::BadValue);
        assert_eq!(
            reason(with(r#"["no spaces"]"#).as_bytes()),
            Reason::BadValue
        );
        let many: Vec<String> = (0..=MAX_RETRACTS).map(|i| format!("\"e{i}\"")).collect();
        assert_eq!(
            reason(with(&format!("[{}]", many.join(","))).as_bytes()),
            Reason::BadValue
        );
        let prod = r#"{"event_id":"x","event_type":"production","event_time":"2026-11-01T00:00:00Z","participant":{"id":"p","role":"manufacturer"},"trace_code":"(01)09506000134352(21)P1","retracts":["a1"]}"#;
        assert_eq!(reason(prod.as_bytes()), Reason::BadValue);
    }

    fn printable(detail: &str) -> bool {
        !detail.chars().any(char::is_control) && detail.len() <= crate::reason::MAX_DETAIL_BYTES
    }

    proptest! {
        /// The byte-wise check of ASCII text finds what the check by characters finds.
        #[test]
        fn ascii_text_is_judged_as_by_its_characters(s in "[\\x00-\\x7f]{0,300}|[ \\t\\n\\x0b\\x0c\\r\\x1f\\x7fa]{0,5}") {
            prop_assert_eq!(text_fault(&s), text_fault_chars(&s));
        }

        /// Arbitrary bytes never panic the processor; they are accepted or rejected.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Err(r) = process(&bytes, NOW, &Limits::default()) {
                prop_assert!(printable(&r.detail), "{:?}", r.detail);
            }
        }

        /// Text echoed into details (an unknown type, an unknown field name, a reading's
        /// name, an attribute key) never panics and never leaves the detail unprintable.
        #[test]
        fn echoed_text_leaves_details_printable(s in "\\PC{0,300}|[\u{0}-\u{7f}\u{80}-\u{10ffff}]{0,400}") {
            let quoted = serde_json::to_string(&s).expect("a string serialises");
            for json in [
                QC.replace("\"quality_check\"", &quoted),
                QC.replace("\"result\"", &quoted),
                QC.replace("{\"t\":21}", &format!("{{{quoted}:true}}")),
                QC.replace("\"result\":\"pass\"", &format!("\"result\":\"pass\",\"attributes\":{{{quoted}:1e999}}")),
            ] {
                if let Err(r) = process(json.as_bytes(), NOW, &Limits::default()) {
                    prop_assert!(printable(&r.detail), "{:?}", r.detail);
                }
            }
        }

        /// Mutations of a valid event never panic, and anything accepted re-canonicalises
        /// to the leaf it was given and is accepted again, unchanged, as input.
        #[test]
        fn mutated_events_never_panic(pos in 0usize..600, byte in any::<u8>(), cut in 0usize..600) {
            let mut b = QC.as_bytes().to_vec();
            let p = pos % b.len();
            b[p] = byte;
            b.truncate(cut.max(1) + b.len() / 2);
            if let Ok(a) = process(&b, NOW, &Limits::default()) {
                let v: Value = serde_json::from_slice(&a.canonical).expect("canonical is JSON");
                prop_assert_eq!(merkle::leaf_hash(&canonical::to_vec(&v).expect("jcs")), a.leaf_hash);
                let again = process(&a.canonical, NOW, &Limits::default());
                prop_assert_eq!(again.map(|b| b.canonical), Ok(a.canonical));
            }
        }
    }
}
