//! Business types of a deployment's own ([`EventType::Custom`]), declared in the config.
//!
//! Each type has versions, each in force from a time on: the fields it requires, the trace
//! code kinds it takes, a JSON Schema (draft 7) of its `attributes`, and optionally a
//! built-in type it is *like* (whose requirements and trace-graph meaning it takes: a
//! `frame_welding` like `assembly` links its inputs into its output). A record is checked
//! against the version in force at its `event_time`, so a later version never makes an
//! earlier event invalid. Each version has a digest over its definition (schema included);
//! `veritrace types records` writes the versions as `type_definition` events, so the log
//! holds which definition was in force when.
//!
//! The types are installed once per process ([`install`]); the names live as long as it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::EventType;
use crate::reason::{Reason, Rejection};
use crate::tracecode::TraceCodeKind;

/// Top-level fields a version may require.
pub const REQUIRABLE: [&str; 14] = [
    "trace_code",
    "inputs",
    "outputs",
    "object",
    "quantity",
    "operator",
    "result",
    "site",
    "device_id",
    "counterparty",
    "location",
    "readings",
    "attributes",
    "attachments",
];

/// One version of a business type, as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VersionDef {
    /// In force from (RFC 3339).
    pub from: String,
    /// The built-in type whose requirements and trace-graph meaning it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub like: Option<String>,
    /// Top-level fields it requires ([`REQUIRABLE`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
    /// The trace code kinds it takes (`sgtin`, `lgtin`, `sscc`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace_codes: Vec<String>,
    /// JSON Schema of `attributes` (the document itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Value>,
}

/// One version, compiled.
#[derive(Debug)]
pub struct Version {
    /// 1, 2, ... in time order.
    pub number: u32,
    /// In force from (epoch ms).
    pub from_ms: i64,
    /// The definition.
    pub def: VersionDef,
    /// `like`, parsed.
    pub like: Option<EventType>,
    kinds: Vec<TraceCodeKind>,
    schema: Option<jsonschema::Validator>,
    /// SHA-256 (hex) of the definition's canonical JSON.
    pub digest: String,
}

/// A business type: its name, description and versions (oldest first).
#[derive(Debug)]
pub struct BusinessType {
    /// Its `event_type` name.
    pub name: &'static str,
    /// What it records.
    pub description: String,
    /// Its versions, oldest first.
    pub versions: Vec<Arc<Version>>,
}

/// The business types of a deployment.
#[derive(Debug, Default)]
pub struct BusinessTypes {
    types: Vec<BusinessType>,
}

static INSTALLED: RwLock<Option<Arc<BusinessTypes>>> = RwLock::new(None);

fn installed() -> Option<Arc<BusinessTypes>> {
    INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Makes `types` the business types of this process (replacing any before).
pub fn install(types: BusinessTypes) {
    *INSTALLED.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(types));
}

/// The installed business types (empty when none are).
pub fn current() -> Arc<BusinessTypes> {
    installed().unwrap_or_default()
}

/// The business type called `name`, as an event type.
pub(crate) fn lookup(name: &str) -> Option<EventType> {
    let t = installed()?;
    t.types
        .iter()
        .position(|b| b.name == name)
        .and_then(|i| u16::try_from(i).ok())
        .map(EventType::Custom)
}

/// The name of business type `i` (`"custom"` if none is installed there).
pub(crate) fn name(i: u16) -> &'static str {
    installed()
        .and_then(|t| t.types.get(usize::from(i)).map(|b| b.name))
        .unwrap_or("custom")
}

/// The version of business type `i` in force at `ms`.
pub(crate) fn version_at(i: u16, ms: i64) -> Result<Arc<Version>, Rejection> {
    let t = installed().ok_or_else(|| {
        Rejection::new(Reason::UnknownEventType, "no business types are configured")
    })?;
    let b = t
        .types
        .get(usize::from(i))
        .ok_or_else(|| Rejection::new(Reason::UnknownEventType, "unknown business type"))?;
    b.versions
        .iter()
        .rev()
        .find(|v| v.from_ms <= ms)
        .cloned()
        .ok_or_else(|| {
            Rejection::new(
                Reason::UnknownEventType,
                format!(
                    "{} has no version in force at that event_time (its first is from {})",
                    b.name,
                    b.versions.first().map_or("-", |v| v.def.from.as_str())
                ),
            )
        })
}

impl Version {
    /// Checks the trace code `code` (canonical) is of a kind this version takes.
    pub(crate) fn check_kind(&self, field: &str, code: &str) -> Result<(), Rejection> {
        if self.kinds.is_empty() {
            return Ok(());
        }
        let kind = crate::tracecode::parse_trace_code(code)
            .map(|c| c.kind())
            .map_err(|e| Rejection::new(Reason::MalformedTraceCode, format!("{field}: {e}")))?;
        if self.kinds.contains(&kind) {
            return Ok(());
        }
        Err(Rejection::new(
            Reason::BadValue,
            format!(
                "{field} is an {}; this type takes {}",
                kind.as_str(),
                self.def.trace_codes.join(", ")
            ),
        ))
    }

    /// Checks `attributes` against the version's schema.
    pub(crate) fn check_attributes(&self, attributes: Option<&Value>) -> Result<(), Rejection> {
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let empty = Value::Object(serde_json::Map::new());
        let doc = attributes.unwrap_or(&empty);
        let failures: Vec<String> = schema
            .iter_errors(doc)
            .take(3)
            .map(|e| {
                let at = e.instance_path().to_string();
                let mut what = e.to_string();
                if what.chars().count() > 120 {
                    what = what.chars().take(120).collect::<String>() + "...";
                }
                format!(
                    "attributes{} : {what}",
                    if at.is_empty() { "" } else { at.as_str() }
                )
            })
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        Err(Rejection::new(
            Reason::SchemaViolation,
            format!("version {}: {}", self.number, failures.join("; ")),
        ))
    }
}

/// A name a business type may have: 1-64 of `a-z 0-9 _`, starting with a letter.
fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.as_bytes()[0].is_ascii_lowercase()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl BusinessTypes {
    /// Compiles declared types: name -> (description, versions). Refuses a name that is
    /// taken or malformed, a version without a time or out of order, an unknown `like`,
    /// requirement or kind, and a schema that does not compile.
    pub fn new(decls: &BTreeMap<String, (String, Vec<VersionDef>)>) -> Result<Self, String> {
        let mut types = Vec::new();
        for (name, (description, versions)) in decls {
            if !valid_name(name) {
                return Err(format!(
                    "type {name:?}: a name is 1-64 of a-z 0-9 _ and starts with a letter"
                ));
            }
            if EventType::parse(name).is_some() || ["registry", "audit"].contains(&name.as_str()) {
                return Err(format!("type {name:?}: a built-in type has that name"));
            }
            if versions.is_empty() {
                return Err(format!("type {name:?}: no versions"));
            }
            let mut out: Vec<Arc<Version>> = Vec::new();
            for (i, def) in versions.iter().enumerate() {
                let at = |m: String| format!("type {name:?} version {}: {m}", i + 1);
                let from_ms = chrono::DateTime::parse_from_rfc3339(&def.from)
                    .map_err(|e| at(format!("from {:?} is not RFC 3339: {e}", def.from)))?
                    .timestamp_millis();
                if out.last().is_some_and(|p| p.from_ms >= from_ms) {
                    return Err(at("versions must be in time order".into()));
                }
                let like = match &def.like {
                    None => None,
                    Some(l) => Some(
                        EventType::parse(l)
                            .filter(|t| !matches!(t, EventType::ErrorDeclaration))
                            .ok_or_else(|| at(format!("like {l:?} is not a built-in type")))?,
                    ),
                };
                for r in &def.required {
                    if !REQUIRABLE.contains(&r.as_str()) {
                        return Err(at(format!(
                            "required {r:?} is not one of {}",
                            REQUIRABLE.join(", ")
                        )));
                    }
                }
                let kinds = def
                    .trace_codes
                    .iter()
                    .map(|k| match k.as_str() {
                        "sgtin" => Ok(TraceCodeKind::Sgtin),
                        "lgtin" => Ok(TraceCodeKind::Lgtin),
                        "sscc" => Ok(TraceCodeKind::Sscc),
                        other => Err(at(format!(
                            "trace code kind {other:?} is not sgtin, lgtin or sscc"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let schema = match &def.attributes {
                    None => None,
                    Some(s) => Some(
                        jsonschema::options()
                            .with_draft(jsonschema::Draft::Draft7)
                            .should_validate_formats(true)
                            .build(s)
                            .map_err(|e| at(format!("the attributes schema: {e}")))?,
                    ),
                };
                let canonical = veritrace_verify::canonical::to_vec(def)
                    .map_err(|e| at(format!("the definition has no canonical form: {e}")))?;
                let digest = {
                    use sha2::Digest as _;
                    veritrace_verify::Digest(sha2::Sha256::digest(&canonical).into()).to_hex()
                };
                out.push(Arc::new(Version {
                    number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    from_ms,
                    def: def.clone(),
                    like,
                    kinds,
                    schema,
                    digest,
                }));
            }
            types.push(BusinessType {
                // Lives as long as the process: event types are `&'static str`.
                name: Box::leak(name.clone().into_boxed_str()),
                description: description.clone(),
                versions: out,
            });
        }
        if types.len() > usize::from(u16::MAX) {
            return Err("too many business types".into());
        }
        Ok(BusinessTypes { types })
    }

    /// The types, in name order.
    pub fn types(&self) -> &[BusinessType] {
        &self.types
    }

    /// True when a type is called `name`.
    pub fn has(&self, name: &str) -> bool {
        self.types.iter().any(|t| t.name == name)
    }
}

impl BusinessType {
    /// Its versions as `type_definition` events recorded by `participant` (`{id, role}`)
    /// at `now` (RFC 3339): ids `type:{name}:v{n}:{digest prefix}`, so the same version
    /// recorded twice is one event, and a changed definition is a new one.
    pub fn records(&self, participant: &Value, now: &str) -> Vec<Value> {
        self.versions
            .iter()
            .map(|v| {
                serde_json::json!({
                    "event_id": format!("type:{}:v{}:{}", self.name, v.number, &v.digest[..16]),
                    "event_type": "type_definition",
                    "event_time": now,
                    "participant": participant,
                    "attributes": {
                        "type": self.name,
                        "description": self.description,
                        "version": v.number,
                        "from": v.def.from,
                        "digest": v.digest,
                        "definition": v.def,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(from: &str, v: Value) -> VersionDef {
        let mut d: VersionDef = serde_json::from_value(v).expect("def");
        d.from = from.into();
        d
    }

    #[test]
    fn declarations_are_checked_when_compiled() {
        let one = |name: &str, v: Vec<VersionDef>| {
            BusinessTypes::new(&BTreeMap::from([(name.to_owned(), (String::new(), v))]))
        };
        let ok = def("2026-01-01T00:00:00Z", json!({"from": ""}));
        assert!(one("heat_treatment", vec![ok.clone()]).is_ok());
        assert!(one("assembly", vec![ok.clone()]).is_err(), "built-in name");
        assert!(one("Heat", vec![ok.clone()]).is_err(), "upper case");
        assert!(one("heat", vec![]).is_err(), "no versions");
        let late = def("2025-01-01T00:00:00Z", json!({"from": ""}));
        assert!(one("heat", vec![ok.clone(), late]).is_err(), "out of order");
        for bad in [
            json!({"from": "", "like": "nothing"}),
            json!({"from": "", "required": ["colour"]}),
            json!({"from": "", "trace-codes": ["grai"]}),
            json!({"from": "", "attributes": {"type": 7}}),
        ] {
            let d = def("2026-01-01T00:00:00Z", bad.clone());
            assert!(one("heat", vec![d]).is_err(), "{bad}");
        }
        assert!(one("heat", vec![def("yesterday", json!({"from": ""}))]).is_err());
    }
}
