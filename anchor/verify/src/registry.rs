//! The identity registry: which key belonged to which device or participant, and when.
//!
//! The registry is itself a sequence of signed records in the log (issue 14):
//! `participant.registered` (signed by the operator's root key), then `device.registered`,
//! `device.key_rotated` and `device.revoked` (each signed by the owning participant's admin
//! key). Its state at any time is derived from those records alone, by [`Registry::apply`]
//! in log order, so an auditor who holds the records (and their proofs) computes the same
//! answer to "which key could sign for this device at that time" as the node did. Pure:
//! no I/O, builds for wasm32.
//!
//! Times are seconds since the Unix epoch, the unit of the CWT `iat` claim.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::signature::{PublicKey, SigError, Signed};

/// One registry record (the JSON payload of a signed envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", deny_unknown_fields)]
pub enum Record {
    /// A company joins: its id, role and admin key. Signed by the operator's root key.
    #[serde(rename = "participant.registered")]
    ParticipantRegistered {
        /// The participant's id.
        participant_id: String,
        /// Its name.
        name: String,
        /// `manufacturer`, `supplier`, `logistics`, `retailer`, `regulator`, ...
        role: String,
        /// The admin key (`ALG:HEX`) that signs its devices' records.
        admin_key: String,
        /// When (seconds since the epoch).
        at: i64,
    },
    /// A device of a participant, with its key. Signed by the participant's admin key.
    #[serde(rename = "device.registered")]
    DeviceRegistered {
        /// The device's id (the `iss` of its statements).
        device_id: String,
        /// The owning participant.
        participant_id: String,
        /// What it is (`sensor`, `plc_gateway`, `scanner`, `erp_connector`, ...).
        kind: String,
        /// Its key (`ALG:HEX`).
        key: String,
        /// When.
        at: i64,
    },
    /// A device's new key; statements signed from `at` on must use it, earlier ones keep
    /// verifying with the old one. Signed by the participant's admin key.
    #[serde(rename = "device.key_rotated")]
    DeviceKeyRotated {
        /// The device.
        device_id: String,
        /// Its new key (`ALG:HEX`).
        key: String,
        /// When.
        at: i64,
    },
    /// A device may sign nothing from `at` on. Signed by the participant's admin key.
    #[serde(rename = "device.revoked")]
    DeviceRevoked {
        /// The device.
        device_id: String,
        /// Why.
        reason: String,
        /// When.
        at: i64,
    },
    /// A participant lets another see the events about some trace codes in which the
    /// granting participant takes part (a recall, an audit). Signed by the grantor's admin
    /// key.
    #[serde(rename = "visibility.granted")]
    VisibilityGranted {
        /// The grant's id (unique in the log), named by its revocation.
        grant_id: String,
        /// Who shares.
        grantor: String,
        /// Who may see.
        grantee: String,
        /// The trace codes shared.
        trace_codes: Vec<String>,
        /// Why (free text: `recall 2026-114`, `annual audit`).
        #[serde(default)]
        reason: String,
        /// When.
        at: i64,
        /// When it ends by itself (seconds since the epoch, after `at`); none: when revoked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
    },
    /// A grant ends. Signed by the grantor's admin key.
    #[serde(rename = "visibility.revoked")]
    VisibilityRevoked {
        /// The grant.
        grant_id: String,
        /// When.
        at: i64,
    },
}

/// Most trace codes one grant may name.
pub const MAX_GRANT_CODES: usize = 10_000;

impl Record {
    /// When the record takes effect (seconds since the epoch).
    pub fn at(&self) -> i64 {
        match self {
            Record::ParticipantRegistered { at, .. }
            | Record::DeviceRegistered { at, .. }
            | Record::DeviceKeyRotated { at, .. }
            | Record::DeviceRevoked { at, .. }
            | Record::VisibilityGranted { at, .. }
            | Record::VisibilityRevoked { at, .. } => *at,
        }
    }
}

/// Why a record or a statement's signer was refused. `code` is stable (reason codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct RegistryError {
    /// `bad_record`, `record_not_authorized`, `unknown_signer`, `signer_revoked`,
    /// `bad_signature`, `unsupported_alg`, `bad_key`, `malformed_envelope`.
    pub code: &'static str,
    /// What was wrong.
    pub detail: String,
}

fn err(code: &'static str, detail: impl Into<String>) -> RegistryError {
    RegistryError {
        code,
        detail: detail.into(),
    }
}

impl From<SigError> for RegistryError {
    fn from(e: SigError) -> Self {
        RegistryError {
            code: e.code,
            detail: e.detail,
        }
    }
}

/// A participant as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its admin key.
    pub admin_key: PublicKey,
    /// When it was registered.
    pub since: i64,
}

/// A key a device held from `from` until `until` (exclusive; `None`: still).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPeriod {
    /// The key.
    pub key: PublicKey,
    /// From (inclusive).
    pub from: i64,
    /// Until (exclusive), when rotated or revoked.
    pub until: Option<i64>,
}

/// A device as registered, with every key it ever held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The owning participant.
    pub participant_id: String,
    /// What it is.
    pub kind: String,
    /// Its keys, oldest first.
    pub keys: Vec<KeyPeriod>,
    /// When it was revoked, if it was.
    pub revoked: Option<i64>,
}

/// Visibility one participant gave another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who shares.
    pub grantor: String,
    /// Who may see.
    pub grantee: String,
    /// The trace codes, as the grant names them.
    pub trace_codes: Vec<String>,
    /// Since when.
    pub since: i64,
    /// When it ends by itself, if it does.
    pub until: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked: Option<i64>,
}

impl Grant {
    /// Whether the grant lets its grantee see at `now` (seconds since the epoch): not
    /// revoked, and not past its end.
    pub fn in_force(&self, now: i64) -> bool {
        self.revoked.is_none() && self.until.is_none_or(|u| now < u)
    }
}

/// Who signed a statement, once [`Registry::authorize`] accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The device (or participant) id.
    pub id: String,
    /// Its participant.
    pub participant_id: String,
    /// The key id of the key that verified.
    pub key_id: String,
}

/// The registry state, derived from records in log order.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PublicKey,
    participants: BTreeMap<String, Participant>,
    devices: BTreeMap<String, Device>,
    grants: BTreeMap<String, Grant>,
}

impl Registry {
    /// An empty registry whose participants the operator's `root` key registers.
    pub fn new(root: PublicKey) -> Self {
        Registry {
            root,
            participants: BTreeMap::new(),
            devices: BTreeMap::new(),
            grants: BTreeMap::new(),
        }
    }

    /// The operator's root key, which registers participants.
    pub fn root(&self) -> &PublicKey {
        &self.root
    }

    /// The participants.
    pub fn participants(&self) -> &BTreeMap<String, Participant> {
        &self.participants
    }

    /// The devices.
    pub fn devices(&self) -> &BTreeMap<String, Device> {
        &self.devices
    }

    /// The visibility grants by id, revoked ones included.
    pub fn grants(&self) -> &BTreeMap<String, Grant> {
        &self.grants
    }

    /// Applies one signed record: checks who signed it (the root key for participants, the
    /// owning participant's admin key for devices) and that it fits the state (no second
    /// registration, no rotation of an unknown or revoked device, times that do not go
    /// back); the state is unchanged when it does not.
    pub fn apply(&mut self, envelope: &Signed) -> Result<Record, RegistryError> {
        let record: Record = serde_json::from_slice(&envelope.payload)
            .map_err(|e| err("bad_record", format!("not a registry record: {e}")))?;
        match &record {
            Record::ParticipantRegistered {
                participant_id,
                name,
                role,
                admin_key,
                at,
            } => {
                envelope.verify(&self.root).map_err(|e| {
                    err(
                        "record_not_authorized",
                        format!("participant records are signed by the operator's root key: {e}"),
                    )
                })?;
                if self.participants.contains_key(participant_id) {
                    return Err(err(
                        "bad_record",
                        format!("participant {participant_id} is registered already"),
                    ));
                }
                let admin_key = PublicKey::parse(admin_key)?;
                self.participants.insert(
                    participant_id.clone(),
                    Participant {
                        name: name.clone(),
                        role: role.clone(),
                        admin_key,
                        since: *at,
                    },
                );
            }
            Record::DeviceRegistered {
                device_id,
                participant_id,
                kind,
                key,
                at,
            } => {
                self.check_admin(envelope, participant_id)?;
                if self.devices.contains_key(device_id) {
                    return Err(err(
                        "bad_record",
                        format!("device {device_id} is registered already"),
                    ));
                }
                let key = PublicKey::parse(key)?;
                self.devices.insert(
                    device_id.clone(),
                    Device {
                        participant_id: participant_id.clone(),
                        kind: kind.clone(),
                        keys: vec![KeyPeriod {
                            key,
                            from: *at,
                            until: None,
                        }],
                        revoked: None,
                    },
                );
            }
            Record::DeviceKeyRotated { device_id, key, at } => {
                let owner = self.live_device(device_id, *at)?.participant_id.clone();
                self.check_admin(envelope, &owner)?;
                let key = PublicKey::parse(key)?;
                let d = self.device_mut(device_id)?;
                if let Some(last) = d.keys.last_mut() {
                    last.until = Some(*at);
                }
                d.keys.push(KeyPeriod {
                    key,
                    from: *at,
                    until: None,
                });
            }
            Record::DeviceRevoked { device_id, at, .. } => {
                let owner = self.live_device(device_id, *at)?.participant_id.clone();
                self.check_admin(envelope, &owner)?;
                let d = self.device_mut(device_id)?;
                if let Some(last) = d.keys.last_mut() {
                    last.until = Some(*at);
                }
                d.revoked = Some(*at);
            }
            Record::VisibilityGranted {
                grant_id,
                grantor,
                grantee,
                trace_codes,
                at,
                until,
                ..
            } => {
                self.check_admin(envelope, grantor)?;
                if until.is_some_and(|u| u <= *at) {
                    return Err(err(
                        "bad_record",
                        format!(
                            "the grant ends ({}) before it starts ({at})",
                            until.unwrap_or_default()
                        ),
                    ));
                }
                if !self.participants.contains_key(grantee) {
                    return Err(err(
                        "bad_record",
                        format!("grantee {grantee} is not a registered participant"),
                    ));
                }
                if grantee == grantor {
                    return Err(err("bad_record", "a participant sees its own events"));
                }
                if trace_codes.is_empty()
                    || trace_codes.len() > MAX_GRANT_CODES
                    || trace_codes.iter().any(|c| c.is_empty() || c.len() > 512)
                {
                    return Err(err(
                        "bad_record",
                        format!(
                            "a grant names 1 to {MAX_GRANT_CODES} trace codes of 1 to 512 bytes"
                        ),
                    ));
                }
                if grant_id.is_empty() || self.grants.contains_key(grant_id) {
                    return Err(err(
                        "bad_record",
                        format!("grant id {grant_id:?} is empty or used already"),
                    ));
                }
                self.grants.insert(
                    grant_id.clone(),
                    Grant {
                        grantor: grantor.clone(),
                        grantee: grantee.clone(),
                        trace_codes: trace_codes.clone(),
                        since: *at,
                        until: *until,
                        revoked: None,
                    },
                );
            }
            Record::VisibilityRevoked { grant_id, at } => {
                let g = self
                    .grants
                    .get(grant_id)
                    .ok_or_else(|| err("bad_record", format!("no grant {grant_id}")))?;
                if g.revoked.is_some() || *at < g.since {
                    return Err(err(
                        "bad_record",
                        format!("grant {grant_id} is revoked already or was made after {at}"),
                    ));
                }
                let grantor = g.grantor.clone();
                self.check_admin(envelope, &grantor)?;
                if let Some(g) = self.grants.get_mut(grant_id) {
                    g.revoked = Some(*at);
                }
            }
        }
        Ok(record)
    }

    fn check_admin(&self, envelope: &Signed, participant_id: &str) -> Result<(), RegistryError> {
        let p = self.participants.get(participant_id).ok_or_else(|| {
            err(
                "record_not_authorized",
                format!("participant {participant_id} is not registered"),
            )
        })?;
        envelope.verify(&p.admin_key).map_err(|e| {
            err(
                "record_not_authorized",
                format!("device records of {participant_id} are signed by its admin key: {e}"),
            )
        })
    }

    /// A registered, unrevoked device whose last change is not after `at`.
    fn live_device(&self, device_id: &str, at: i64) -> Result<&Device, RegistryError> {
        let d = self.devices.get(device_id).ok_or_else(|| {
            err(
                "bad_record",
                format!("device {device_id} is not registered"),
            )
        })?;
        if let Some(r) = d.revoked {
            return Err(err(
                "bad_record",
                format!("device {device_id} was revoked at {r}"),
            ));
        }
        if d.keys.last().is_some_and(|k| at < k.from) {
            return Err(err(
                "bad_record",
                format!("device {device_id}: a record at {at} cannot precede its last key change"),
            ));
        }
        Ok(d)
    }

    fn device_mut(&mut self, device_id: &str) -> Result<&mut Device, RegistryError> {
        self.devices.get_mut(device_id).ok_or_else(|| {
            err(
                "bad_record",
                format!("device {device_id} is not registered"),
            )
        })
    }

    /// Who signed `statement`: its `iss` must be a registered device (or participant, with
    /// its admin key) whose key at the statement's `iat` verifies the signature. A
    /// statement signed at or after its device's revocation is `signer_revoked`; one whose
    /// key was rotated away before `iat` fails as `bad_signature` (that key no longer
    /// speaks for the device).
    pub fn authorize(&self, statement: &Signed) -> Result<Signer, RegistryError> {
        let (signer, key) = self.resolve(statement)?;
        statement.verify(key)?;
        Ok(signer)
    }

    /// Everything [`Registry::authorize`] checks except the signature itself: who the
    /// statement names, whether that signer may sign at its `iat`, and the key that must
    /// verify it (for callers that verify many signatures at once, as Ed25519 batch
    /// verification does).
    pub fn resolve(&self, statement: &Signed) -> Result<(Signer, &PublicKey), RegistryError> {
        let iss = statement
            .claims
            .iss
            .as_deref()
            .ok_or_else(|| err("unknown_signer", "the statement names no issuer (iss)"))?;
        let iat = statement.claims.iat.ok_or_else(|| {
            err(
                "malformed_envelope",
                "the statement has no signing time (iat)",
            )
        })?;
        if let Some(d) = self.devices.get(iss) {
            if d.revoked.is_some_and(|r| iat >= r) {
                return Err(err(
                    "signer_revoked",
                    format!("device {iss} was revoked before {iat}"),
                ));
            }
            let period = d
                .keys
                .iter()
                .find(|k| k.from <= iat && k.until.is_none_or(|u| iat < u))
                .ok_or_else(|| {
                    err(
                        "unknown_signer",
                        format!("device {iss} had no key at {iat} (registered later)"),
                    )
                })?;
            return Ok((
                Signer {
                    id: iss.to_owned(),
                    participant_id: d.participant_id.clone(),
                    key_id: period.key.key_id(),
                },
                &period.key,
            ));
        }
        if let Some(p) = self.participants.get(iss) {
            if iat < p.since {
                return Err(err(
                    "unknown_signer",
                    format!("participant {iss} was registered after {iat}"),
                ));
            }
            return Ok((
                Signer {
                    id: iss.to_owned(),
                    participant_id: iss.to_owned(),
                    key_id: p.admin_key.key_id(),
                },
                &p.admin_key,
            ));
        }
        Err(err(
            "unknown_signer",
            format!("{iss} is neither a registered device nor a participant"),
        ))
    }

    /// Applies every record in order; stops at the first refused one, naming its position.
    pub fn replay<'a>(
        root: PublicKey,
        records: impl IntoIterator<Item = &'a Signed>,
    ) -> Result<Self, (usize, RegistryError)> {
        let mut r = Registry::new(root);
        for (i, s) in records.into_iter().enumerate() {
            r.apply(s).map_err(|e| (i, e))?;
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{Alg, Claims, SigningKey, parse_cose, parse_jws, sign_cose, sign_jws};

    fn key(alg: Alg, seed: u8) -> SigningKey {
        SigningKey::from_bytes(alg, &[seed; 32]).expect("key")
    }

    fn signed_record(signer: &SigningKey, record: &Record) -> Signed {
        let payload = serde_json::to_vec(record).expect("json");
        let claims = Claims {
            iss: None,
            sub: None,
            iat: Some(record.at()),
        };
        parse_cose(&sign_cose(
            signer,
            &signer.public().key_id(),
            &claims,
            &payload,
        ))
        .expect("cose")
    }

    fn statement(signer: &SigningKey, iss: &str, iat: i64) -> Signed {
        let claims = Claims {
            iss: Some(iss.into()),
            sub: Some("(01)06945501102041(10)L1".into()),
            iat: Some(iat),
        };
        parse_jws(&sign_jws(signer, "k", &claims, br#"{"event_id":"e1"}"#)).expect("jws")
    }

    struct World {
        root: SigningKey,
        admin: SigningKey,
        old: SigningKey,
        new: SigningKey,
        registry: Registry,
    }

    fn world() -> World {
        let root = key(Alg::Es256, 1);
        let admin = key(Alg::Es256, 2);
        let old = key(Alg::EdDsa, 3);
        let new = key(Alg::Es256, 4);
        let mut registry = Registry::new(root.public());
        registry
            .apply(&signed_record(
                &root,
                &Record::ParticipantRegistered {
                    participant_id: "plant-hu-02".into(),
                    name: "E-Bike Frames Kft.".into(),
                    role: "manufacturer".into(),
                    admin_key: admin.public().to_text(),
                    at: 100,
                },
            ))
            .expect("participant");
        registry
            .apply(&signed_record(
                &admin,
                &Record::DeviceRegistered {
                    device_id: "press-07".into(),
                    participant_id: "plant-hu-02".into(),
                    kind: "plc_gateway".into(),
                    key: old.public().to_text(),
                    at: 200,
                },
            ))
            .expect("device");
        World {
            root,
            admin,
            old,
            new,
            registry,
        }
    }

    #[test]
    fn a_rotated_key_speaks_for_its_period_and_a_revoked_device_for_none_after() {
        let mut w = world();
        let ok = w
            .registry
            .authorize(&statement(&w.old, "press-07", 250))
            .expect("old key");
        assert_eq!(ok.participant_id, "plant-hu-02");
        assert_eq!(ok.key_id, w.old.public().key_id());
        w.registry
            .apply(&signed_record(
                &w.admin,
                &Record::DeviceKeyRotated {
                    device_id: "press-07".into(),
                    key: w.new.public().to_text(),
                    at: 300,
                },
            ))
            .expect("rotate");
        // Before the rotation the old key still verifies; after it only the new one.
        w.registry
            .authorize(&statement(&w.old, "press-07", 299))
            .expect("old key, before rotation");
        assert_eq!(
            w.registry
                .authorize(&statement(&w.old, "press-07", 300))
                .expect_err("old key after rotation")
                .code,
            "bad_signature"
        );
        w.registry
            .authorize(&statement(&w.new, "press-07", 301))
            .expect("new key");
        w.registry
            .apply(&signed_record(
                &w.admin,
                &Record::DeviceRevoked {
                    device_id: "press-07".into(),
                    reason: "stolen".into(),
                    at: 400,
                },
            ))
            .expect("revoke");
        assert_eq!(
            w.registry
                .authorize(&statement(&w.new, "press-07", 400))
                .expect_err("revoked")
                .code,
            "signer_revoked"
        );
        w.registry
            .authorize(&statement(&w.new, "press-07", 399))
            .expect("signed before the revocation");
        assert_eq!(
            w.registry
                .authorize(&statement(&w.old, "press-07", 150))
                .expect_err("before registration")
                .code,
            "unknown_signer"
        );
        assert_eq!(
            w.registry
                .authorize(&statement(&w.new, "forklift-1", 350))
                .expect_err("unknown")
                .code,
            "unknown_signer"
        );
        // The participant itself signs with its admin key.
        w.registry
            .authorize(&statement(&w.admin, "plant-hu-02", 500))
            .expect("participant statement");
    }

    #[test]
    fn records_are_accepted_only_from_their_authority_and_in_order() {
        let mut w = world();
        let stranger = key(Alg::EdDsa, 9);
        // A participant registered by anyone but the root key.
        let e = w
            .registry
            .apply(&signed_record(
                &stranger,
                &Record::ParticipantRegistered {
                    participant_id: "evil".into(),
                    name: "x".into(),
                    role: "supplier".into(),
                    admin_key: stranger.public().to_text(),
                    at: 500,
                },
            ))
            .expect_err("not root");
        assert_eq!(e.code, "record_not_authorized");
        // A device record of plant-hu-02 signed by another key (even the root's).
        for signer in [&stranger, &w.root] {
            let e = w
                .registry
                .apply(&signed_record(
                    signer,
                    &Record::DeviceKeyRotated {
                        device_id: "press-07".into(),
                        key: stranger.public().to_text(),
                        at: 500,
                    },
                ))
                .expect_err("not the admin");
            assert_eq!(e.code, "record_not_authorized");
        }
        // Registered twice, rotated back in time, rotated after revocation: refused.
        let again = Record::DeviceRegistered {
            device_id: "press-07".into(),
            participant_id: "plant-hu-02".into(),
            kind: "plc_gateway".into(),
            key: stranger.public().to_text(),
            at: 600,
        };
        assert_eq!(
            w.registry
                .apply(&signed_record(&w.admin, &again))
                .expect_err("twice")
                .code,
            "bad_record"
        );
        let back = Record::DeviceKeyRotated {
            device_id: "press-07".into(),
            key: w.new.public().to_text(),
            at: 150,
        };
        assert_eq!(
            w.registry
                .apply(&signed_record(&w.admin, &back))
                .expect_err("back")
                .code,
            "bad_record"
        );
        w.registry
            .apply(&signed_record(
                &w.admin,
                &Record::DeviceRevoked {
                    device_id: "press-07".into(),
                    reason: "scrapped".into(),
                    at: 700,
                },
            ))
            .expect("revoke");
        let late = Record::DeviceKeyRotated {
            device_id: "press-07".into(),
            key: w.new.public().to_text(),
            at: 800,
        };
        assert_eq!(
            w.registry
                .apply(&signed_record(&w.admin, &late))
                .expect_err("late")
                .code,
            "bad_record"
        );
        // Not a record at all.
        let junk = parse_cose(&sign_cose(
            &w.admin,
            "k",
            &Claims::default(),
            b"{\"record\":\"x\"}",
        ))
        .expect("cose");
        assert_eq!(
            w.registry.apply(&junk).expect_err("junk").code,
            "bad_record"
        );
        // The state is what the accepted records say, replayed from scratch too.
        assert_eq!(w.registry.devices()["press-07"].revoked, Some(700));
        assert_eq!(w.registry.participants().len(), 1);
    }

    #[test]
    fn replay_names_the_first_refused_record() {
        let root = key(Alg::Es256, 1);
        let admin = key(Alg::Es256, 2);
        let records = [
            signed_record(
                &root,
                &Record::ParticipantRegistered {
                    participant_id: "p".into(),
                    name: "P".into(),
                    role: "supplier".into(),
                    admin_key: admin.public().to_text(),
                    at: 1,
                },
            ),
            signed_record(
                &root,
                &Record::DeviceRegistered {
                    device_id: "d".into(),
                    participant_id: "p".into(),
                    kind: "sensor".into(),
                    key: admin.public().to_text(),
                    at: 2,
                },
            ),
        ];
        let (i, e) = Registry::replay(root.public(), &records).expect_err("second is wrong");
        assert_eq!((i, e.code), (1, "record_not_authorized"));
        assert!(Registry::replay(root.public(), &records[..1]).is_ok());
    }
}
