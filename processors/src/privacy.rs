//! Private fields (see [`veritrace_verify::private`]): configured per event type, their
//! values enter the leaf as salted commitments, and the values with their salts are kept in
//! `private/<batch>.json` beside the batch, so a proof can disclose them one by one and
//! `veritrace erase` can delete them while every proof keeps verifying.
//!
//! Applied to events that do not keep a signed envelope. A signed envelope holds what its
//! signer signed, so a signer commits its private fields itself (`veritrace sign --private`)
//! and sends the disclosures beside the signature (SD-JWT style, see
//! [`veritrace_verify::signature`]): they are checked against the signed commitments and
//! kept here like any private value, never in the log. A signed event that holds a field
//! its type makes private in clear is refused (`private_field_in_clear`): its value could
//! never be erased.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use veritrace_anchor::DataDir;
use veritrace_verify::private::{COMMIT_PREFIX, Disclosure, check, commit, is_private_path};

use crate::event::{Event, EventType};
use crate::reason::{Reason, Rejection};

/// Which fields are private, per event type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privacy {
    /// Event type name -> private fields.
    fields: BTreeMap<&'static str, Vec<String>>,
}

/// One private value and its salt, kept apart from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateValue {
    /// The event.
    pub event_id: String,
    /// The field.
    pub path: String,
    /// The value.
    pub value: Value,
    /// The salt (hex, 16 bytes).
    pub salt: String,
}

/// The private values of one batch (`private/<batch_id>.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateFile {
    /// Always 1.
    pub version: u32,
    /// The batch.
    pub batch_id: String,
    /// Its private values still held (erased ones are gone).
    pub values: Vec<PrivateValue>,
}

impl Privacy {
    /// From `event type -> [field, ...]`; names an unknown type or a field that cannot be
    /// private in the error.
    pub fn new(fields: &BTreeMap<String, Vec<String>>) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for (ty, paths) in fields {
            let t = EventType::ALL
                .into_iter()
                .find(|t| t.as_str() == ty)
                .or_else(|| crate::types::lookup(ty))
                .ok_or_else(|| format!("unknown event type {ty:?}"))?
                .as_str();
            for p in paths {
                if !is_private_path(p) {
                    return Err(format!(
                        "{ty}: {p:?} cannot be private (operator, site, participant.name, counterparty.name, attributes.KEY)"
                    ));
                }
            }
            out.insert(t, paths.clone());
        }
        Ok(Privacy { fields: out })
    }

    /// Whether no field is private.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Replaces the private fields of `event` by commitments; returns their values and
    /// salts (empty when the type has none or the event lacks them).
    pub fn apply(&self, event: &mut Event) -> Result<Vec<PrivateValue>, Rejection> {
        let Some(paths) = self.fields.get(event.event_type.as_str()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for path in paths {
            let mut text_slot: Option<&mut Option<String>> = None;
            match path.as_str() {
                "operator" => text_slot = Some(&mut event.operator),
                "site" => text_slot = Some(&mut event.site),
                "participant.name" => text_slot = Some(&mut event.participant.name),
                "counterparty.name" => {
                    text_slot = event.counterparty.as_mut().map(|c| &mut c.name);
                }
                _ => {}
            }
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|e| {
                Rejection::new(Reason::BadRecord, format!("no randomness for a salt: {e}"))
            })?;
            let commit_err = |e: String| Rejection::new(Reason::BadRecord, e);
            if let Some(t) = text_slot {
                let Some(v) = t.take() else { continue };
                let value = Value::String(v);
                *t = Some(commit(&salt, &value).map_err(commit_err)?);
                out.push(PrivateValue {
                    event_id: event.event_id.clone(),
                    path: path.clone(),
                    value,
                    salt: hex::encode(salt),
                });
                continue;
            }
            let Some(key) = path.strip_prefix("attributes.") else {
                continue;
            };
            let slot = event
                .attributes
                .as_mut()
                .and_then(|a| a.as_object_mut())
                .and_then(|o| o.get_mut(key));
            let Some(v) = slot else { continue };
            let value = v.take();
            *v = Value::String(commit(&salt, &value).map_err(commit_err)?);
            out.push(PrivateValue {
                event_id: event.event_id.clone(),
                path: path.clone(),
                value,
                salt: hex::encode(salt),
            });
        }
        Ok(out)
    }
}

impl Privacy {
    /// `Err(private_field_in_clear)` when `event` holds a field its type makes private as
    /// a value instead of a commitment.
    pub fn refuse_in_clear(&self, event: &Event) -> Result<(), Rejection> {
        let Some(paths) = self.fields.get(event.event_type.as_str()) else {
            return Ok(());
        };
        let committed = |v: &str| v.starts_with(COMMIT_PREFIX);
        for path in paths {
            let clear = match path.as_str() {
                "operator" => event.operator.as_deref().is_some_and(|v| !committed(v)),
                "site" => event.site.as_deref().is_some_and(|v| !committed(v)),
                "participant.name" => event
                    .participant
                    .name
                    .as_deref()
                    .is_some_and(|v| !committed(v)),
                "counterparty.name" => event
                    .counterparty
                    .as_ref()
                    .and_then(|c| c.name.as_deref())
                    .is_some_and(|v| !committed(v)),
                p => p.strip_prefix("attributes.").is_some_and(|key| {
                    event
                        .attributes
                        .as_ref()
                        .and_then(|a| a.get(key))
                        .is_some_and(|v| !v.as_str().is_some_and(committed))
                }),
            };
            if clear {
                return Err(Rejection::new(
                    Reason::PrivateFieldInClear,
                    format!(
                        "{path} is private for {} events: a signed event must hold its commitment and disclose the value beside the signature (veritrace sign --private {path})",
                        event.event_type.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The private values a signer disclosed beside its signature, each checked against the
/// commitment the signed event holds (`bad_disclosure` otherwise, and for a field named
/// twice).
pub fn disclosed(
    accepted: &crate::event::Accepted,
    disclosures: &[Disclosure],
) -> Result<Vec<PrivateValue>, Rejection> {
    let refuse = |detail: String| {
        let mut r = Rejection::new(Reason::BadDisclosure, detail);
        r.event_id = Some(accepted.event.event_id.clone());
        r
    };
    let event: Value = serde_json::from_slice(&accepted.canonical)
        .map_err(|e| refuse(format!("the canonical event does not parse: {e}")))?;
    let mut out: Vec<PrivateValue> = Vec::with_capacity(disclosures.len());
    for d in disclosures {
        if out.iter().any(|v| v.path == d.path) {
            return Err(refuse(format!("{} is disclosed twice", d.path)));
        }
        check(&event, d).map_err(refuse)?;
        out.push(PrivateValue {
            event_id: accepted.event.event_id.clone(),
            path: d.path.clone(),
            value: d.value.clone(),
            salt: d.salt.to_ascii_lowercase(),
        });
    }
    Ok(out)
}

/// Writes the private values of a batch (before its manifest line: a batch that is
/// committed has its file, unless it had none).
pub fn write_batch(dir: &DataDir, batch_id: &str, values: &[PrivateValue]) -> crate::Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let file = PrivateFile {
        version: 1,
        batch_id: batch_id.to_owned(),
        values: values.to_vec(),
    };
    write(dir, &dir.private_file(batch_id), &file)
}

fn write(dir: &DataDir, path: &Path, file: &PrivateFile) -> crate::Result<()> {
    if dir.is_remote() {
        let bytes = serde_json::to_vec(file).map_err(|e| crate::Error::Invalid(e.to_string()))?;
        dir.write_replace(path, bytes)?;
        return Ok(());
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|source| veritrace_anchor::Error::Io {
            op: "create directory",
            path: d.to_owned(),
            source,
        })?;
    }
    let bytes = serde_json::to_vec(file).map_err(|e| crate::Error::Invalid(e.to_string()))?;
    veritrace_anchor::write_atomic(path, |f| {
        use std::io::Write;
        f.write_all(&bytes)
            .map_err(|source| veritrace_anchor::Error::Io {
                op: "write",
                path: path.to_owned(),
                source,
            })
    })?;
    Ok(())
}

/// The private values held for a batch (none when it had none or all were erased).
pub fn read_batch(dir: &DataDir, batch_id: &str) -> crate::Result<PrivateFile> {
    let path = dir.private_file(batch_id);
    match dir.read_file(&path)? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| {
            crate::Error::Anchor(veritrace_anchor::Error::Corrupt {
                path: path.clone(),
                detail: format!("not a private values file: {e}"),
            })
        }),
        None => Ok(PrivateFile {
            version: 1,
            batch_id: batch_id.to_owned(),
            values: Vec::new(),
        }),
    }
}

/// Deletes the values (and salts) of `event_id` in `batch_id`, all of them or the fields
/// named; returns the fields erased. The commitments stay in the log, so every proof still
/// verifies, with the field shown as committed and not disclosed.
pub fn erase(
    dir: &DataDir,
    batch_id: &str,
    event_id: &str,
    fields: &[String],
) -> crate::Result<Vec<String>> {
    let mut file = read_batch(dir, batch_id)?;
    let mut erased = Vec::new();
    file.values.retain(|v| {
        let hit = v.event_id == event_id && (fields.is_empty() || fields.contains(&v.path));
        if hit {
            erased.push(v.path.clone());
        }
        !hit
    });
    if !erased.is_empty() {
        write(dir, &dir.private_file(batch_id), &file)?;
    }
    Ok(erased)
}
