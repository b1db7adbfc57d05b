//! Signed statements in the pipeline: who said it.
//!
//! A record is a plain JSON event, a COSE_Sign1 envelope or a compact JWS whose payload is
//! the JSON event ([`veritrace_verify::signature::sniff`] tells them apart). The signature
//! policy of the stream and event type decides what happens:
//!
//! | policy | unsigned | signed |
//! |---|---|---|
//! | `off` | accepted | unwrapped, signature neither checked nor recorded |
//! | `record` (default) | accepted | checked; recorded in the leaf when valid, rejected when not |
//! | `enforce` | rejected (`unsigned`) | checked; recorded in the leaf when valid, rejected when not |
//!
//! A signature that is present is never stored unchecked, so a forged one cannot pass for
//! a real one: under `record` and `enforce` alike it is checked against the identity
//! registry ([`veritrace_verify::registry`]) at its `iat`, within a time window
//! (`stale_signature`), against the event (`sub` must be its trace code, else
//! `claims_mismatch`; the signer's participant must take part in it, else
//! `signer_not_authorized`).
//!
//! The registry itself is records in the log: signed `participant.registered`,
//! `device.registered`, `device.key_rotated` and `device.revoked` records on the
//! [`REGISTRY_STREAM`], each sealed and anchored as an event of type `registry`
//! ([`RegistryStage`]). Processors of event streams read it from the data directory
//! ([`RegistryCache`]) and follow it as it grows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arrow_array::{Array, BinaryArray};
use base64::Engine as _;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use veritrace_anchor::DataDir;
use veritrace_verify::registry::{Record, Registry, RegistryError};
use veritrace_verify::signature::{PublicKey, Signed, parse_envelope, sniff};
use veritrace_verify::{bundle_sig, merkle};

use crate::event::{
    Accepted, Event, EventType, Limits, Participant, SignatureInfo, parse_event, trace_code,
};
use crate::reason::{Reason, Rejection};
use crate::{Error, Result};

/// The stream that carries the identity registry's records (partition 0 only).
pub const REGISTRY_STREAM: &str = "registry";

/// What the pipeline does with signatures (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Signatures are ignored: envelopes are unwrapped, nothing is checked or recorded.
    Off,
    /// Signatures are checked and recorded when present; unsigned events are accepted.
    #[default]
    Record,
    /// Every event must be signed by a registered, authorized key.
    Enforce,
}

impl Policy {
    /// `off`, `record` or `enforce`.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Off => "off",
            Policy::Record => "record",
            Policy::Enforce => "enforce",
        }
    }
}

/// The signature policy of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// For event types not named below.
    pub default: Policy,
    /// Per event type (`production`, `telemetry`, ...).
    pub event_types: BTreeMap<String, Policy>,
    /// A signature older than this (its `iat` before now minus this) is `stale_signature`.
    pub max_age: Duration,
    /// A signature dated further ahead than this is `stale_signature` (clock skew).
    pub max_future: Duration,
}

impl Default for SignaturePolicy {
    fn default() -> Self {
        SignaturePolicy {
            default: Policy::Record,
            event_types: BTreeMap::new(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_future: Duration::from_secs(300),
        }
    }
}

impl SignaturePolicy {
    /// The policy for one event type.
    pub fn for_type(&self, t: EventType) -> Policy {
        self.event_types
            .get(t.as_str())
            .copied()
            .unwrap_or(self.default)
    }

    /// The strictest policy any event type of the stream has (`off` only when all are).
    pub fn strictest(&self) -> Policy {
        self.event_types
            .values()
            .copied()
            .fold(self.default, |a, b| match (a, b) {
                (Policy::Enforce, _) | (_, Policy::Enforce) => Policy::Enforce,
                (Policy::Record, _) | (_, Policy::Record) => Policy::Record,
                _ => Policy::Off,
            })
    }
}

/// The signature settings of a process: the operator's root key and the policy of each
/// stream (streams not named use `default`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureSettings {
    /// The operator's root key, which registers participants; without it there is no
    /// registry and signed events are `unknown_signer`.
    pub root: Option<PublicKey>,
    /// Which fields are private, per event type ([`crate::privacy`]).
    pub privacy: Arc<crate::privacy::Privacy>,
    /// The policy of streams not named in `streams`.
    pub default: SignaturePolicy,
    /// Per stream (a Kafka topic or the embedded pipeline's stream name).
    pub streams: BTreeMap<String, SignaturePolicy>,
}

impl SignatureSettings {
    /// The policy of one stream.
    pub fn policy(&self, stream: &str) -> &SignaturePolicy {
        self.streams.get(stream).unwrap_or(&self.default)
    }

    /// The registry of `dir`, loaded once for every partition of the process.
    pub fn registry(&self, dir: &DataDir) -> Result<Option<Arc<RegistryCache>>> {
        self.root
            .as_ref()
            .map(|root| RegistryCache::open(dir, root.clone()))
            .transpose()
    }

    /// The signature stage of one stream over a loaded registry.
    pub fn stage(&self, stream: &str, registry: Option<Arc<RegistryCache>>) -> Signatures {
        Signatures {
            policy: self.policy(stream).clone(),
            registry,
            preverified: Default::default(),
            privacy: self.privacy.clone(),
        }
    }
}

/// The signature stage of an event stream: its policy and the registry it checks against.
#[derive(Debug, Clone, Default)]
pub struct Signatures {
    /// The policy.
    pub policy: SignaturePolicy,
    /// The identity registry; `None` when no operator root key is configured (then every
    /// signed event is `unknown_signer` unless the policy is `off`).
    pub registry: Option<Arc<RegistryCache>>,
    /// Envelopes (by digest) whose Ed25519 signatures [`Signatures::preverify`] checked
    /// together with others; [`Signatures::open`] does not check them again.
    preverified: std::collections::HashMap<[u8; 32], [u8; 32]>,
    /// Which fields are private.
    pub privacy: Arc<crate::privacy::Privacy>,
}

/// Checks a signature as [`Signed::verify`] does, with ring's assembly P-256 for ES256
/// (the verify crate keeps the pure-Rust p256, which builds for wasm32; both accept exactly
/// the ECDSA P-256/SHA-256 signatures `r || s` with `r` and `s` in `[1, n - 1]`).
fn verify_fast(
    signed: &Signed,
    key: &PublicKey,
) -> std::result::Result<(), veritrace_verify::signature::SigError> {
    match key {
        PublicKey::P256(k) if signed.alg == veritrace_verify::signature::Alg::Es256 => {
            let point = k.to_encoded_point(false);
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                point.as_bytes(),
            )
            .verify(&signed.to_be_signed, &signed.signature)
            .map_err(|_| veritrace_verify::signature::SigError {
                code: "bad_signature",
                detail: "the ES256 signature does not verify with the signer's key".into(),
            })
        }
        _ => signed.verify(key),
    }
}

/// Ed25519 signatures verified together at most (the batch equation grows with it; past
/// 64 the gain per signature is small).
const BATCH: usize = 64;

/// An accepted event and, when it came signed, the envelope as received.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The event.
    pub accepted: Accepted,
    /// The envelope bytes (kept in the `envelope` column; the leaf commits to their digest).
    /// For an event of a bundle, the bundle's envelope.
    pub envelope: Option<Vec<u8>>,
    /// For an event of a bundle: its index, audit path and bytes as sent
    /// ([`bundle_sig::encode_member`], kept in the `bundle_member` column).
    pub member: Option<Vec<u8>>,
    /// Its private fields' values and salts ([`crate::privacy`]), kept apart from the log.
    pub private: Vec<crate::privacy::PrivateValue>,
}

fn reason_of(e: &RegistryError) -> Reason {
    match e.code {
        "unknown_signer" => Reason::UnknownSigner,
        "signer_revoked" => Reason::SignerRevoked,
        "unsupported_alg" => Reason::UnsupportedAlg,
        "malformed_envelope" => Reason::MalformedEnvelope,
        "bad_record" => Reason::BadRecord,
        "record_not_authorized" => Reason::RecordNotAuthorized,
        _ => Reason::BadSignature,
    }
}

fn rejection(e: &RegistryError) -> Rejection {
    Rejection::new(reason_of(e), &e.detail)
}

/// Unwraps an envelope, bounding its size first (an envelope may be up to twice the
/// payload limit: base64url and headers; its payload is held to the limit itself).
fn unwrap_envelope(payload: &[u8], limits: &Limits) -> Result<Option<Signed>, Rejection> {
    let Some(kind) = sniff(payload) else {
        return Ok(None);
    };
    if payload.len() > limits.max_payload.saturating_mul(2) {
        return Err(Rejection::new(
            Reason::PayloadTooLarge,
            format!(
                "the {} envelope is {} bytes, over twice the limit of {} bytes",
                kind.as_str(),
                payload.len(),
                limits.max_payload
            ),
        ));
    }
    parse_envelope(payload, kind).map(Some).map_err(|e| {
        let mut r = rejection(&e.into());
        r.event_id = jws_event_id(payload);
        r
    })
}

/// The event id inside a JWS that could not be verified (unsupported algorithm, bad
/// header), so its rejection names the event. Best effort: `None` when unreadable.
fn jws_event_id(jws: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        event_id: String,
    }
    let payload = jws.trim_ascii().split(|&b| b == b'.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let id: Id = serde_json::from_slice(&bytes).ok()?;
    (id.event_id.len() <= 128).then_some(id.event_id)
}

fn info(
    signed: &Signed,
    iat: i64,
    signer: String,
    participant: String,
    key_id: String,
) -> SignatureInfo {
    SignatureInfo {
        alg: signed.alg.name().to_owned(),
        bundle_index: None,
        bundle_size: None,
        envelope: signed.envelope.as_str().to_owned(),
        envelope_sha256: signed.digest.to_hex(),
        iat,
        key_id,
        signer,
        signer_participant: participant,
    }
}

pub(crate) fn finish(event: Event, envelope: Option<Vec<u8>>) -> Result<Opened, Rejection> {
    let canonical = event.canonical_bytes().map_err(|mut r| {
        r.event_id = Some(event.event_id.clone());
        r
    })?;
    let leaf_hash = merkle::leaf_hash(&canonical);
    Ok(Opened {
        accepted: Accepted {
            event,
            canonical,
            leaf_hash,
        },
        envelope,
        member: None,
        private: Vec::new(),
    })
}

/// `iat` must be within `[now - max_age, now + max_future]`.
fn check_time(iat: Option<i64>, now_ms: i64, policy: &SignaturePolicy) -> Result<i64, Rejection> {
    let iat = iat.ok_or_else(|| {
        Rejection::new(
            Reason::MalformedEnvelope,
            "the envelope has no signing time (iat)",
        )
    })?;
    let now = now_ms.div_euclid(1000);
    let age = i64::try_from(policy.max_age.as_secs()).unwrap_or(i64::MAX);
    let ahead = i64::try_from(policy.max_future.as_secs()).unwrap_or(i64::MAX);
    if iat > now.saturating_add(ahead) {
        return Err(Rejection::new(
            Reason::StaleSignature,
            format!("signed at {iat}, more than {ahead} s after now ({now})"),
        ));
    }
    if iat < now.saturating_sub(age) {
        return Err(Rejection::new(
            Reason::StaleSignature,
            format!("signed at {iat}, more than {age} s before now ({now})"),
        ));
    }
    Ok(iat)
}

impl Signatures {
    /// Unwraps, parses, validates and (by policy) checks one record of an event stream.
    pub fn open(&self, payload: &[u8], now_ms: i64, limits: &Limits) -> Result<Opened, Rejection> {
        let signed = if self.policy.strictest() == Policy::Off && sniff(payload).is_none() {
            None
        } else {
            unwrap_envelope(payload, limits)?
        };
        let Some(mut signed) = signed else {
            let event = parse_event(payload, now_ms, limits)?;
            if self.policy.for_type(event.event_type) == Policy::Enforce {
                let mut r = Rejection::new(
                    Reason::Unsigned,
                    format!(
                        "{} events must be signed (COSE_Sign1 or JWS) on this stream",
                        event.event_type.as_str()
                    ),
                );
                r.event_id = Some(event.event_id);
                return Err(r);
            }
            return self.finish_private(event);
        };
        let mut event = parse_event(&signed.payload, now_ms, limits)?;
        if self.policy.for_type(event.event_type) == Policy::Off {
            return self.finish_private(event);
        }
        match self
            .check(&signed, &event, now_ms)
            .and_then(|sig| self.privacy.refuse_in_clear(&event).map(|()| sig))
        {
            Ok(sig) => event.signature = Some(sig),
            Err(mut r) => {
                r.event_id = Some(event.event_id);
                return Err(r);
            }
        }
        let envelope = signed.stored.take().unwrap_or_else(|| payload.to_vec());
        let mut opened = finish(event, Some(envelope))?;
        if !signed.disclosures.is_empty() {
            opened.private = crate::privacy::disclosed(&opened.accepted, &signed.disclosures)?;
        }
        Ok(opened)
    }

    /// [`finish`] for an event that keeps no envelope: its private fields become
    /// commitments first.
    fn finish_private(&self, mut event: Event) -> Result<Opened, Rejection> {
        if self.privacy.is_empty() {
            return finish(event, None);
        }
        let private = self.privacy.apply(&mut event).map_err(|mut r| {
            r.event_id = Some(event.event_id.clone());
            r
        })?;
        let mut o = finish(event, None)?;
        o.private = private;
        Ok(o)
    }

    /// A bundle record (`{"bundle": ENVELOPE, "events": [...]}`, see
    /// [`veritrace_verify::bundle_sig`]): one signature checked for all its events, each
    /// then validated and checked against the signer like a single statement. A bundle
    /// whose envelope fails is rejected whole; otherwise each event has its own outcome (a
    /// bad reading does not take its neighbours with it). `None`: the record is not shaped
    /// as a bundle.
    pub fn open_bundle(
        &self,
        payload: &[u8],
        now_ms: i64,
        limits: &Limits,
    ) -> Option<Result<Vec<Result<Opened, BundleReject>>, Rejection>> {
        if !bundle_sig::is_bundle(payload) {
            return None;
        }
        Some(self.bundle(payload, now_ms, limits))
    }

    fn bundle(
        &self,
        payload: &[u8],
        now_ms: i64,
        limits: &Limits,
    ) -> Result<Vec<Result<Opened, BundleReject>>, Rejection> {
        let max = limits.max_payload.saturating_mul(MAX_BUNDLE_EVENTS);
        if payload.len() > max {
            return Err(Rejection::new(
                Reason::PayloadTooLarge,
                format!("the bundle is {} bytes, over {max}", payload.len()),
            ));
        }
        let record = bundle_sig::split_bundle(payload).map_err(|e| {
            Rejection::new(
                Reason::MalformedEnvelope,
                format!("not a bundle record: {e}"),
            )
        })?;
        if record.events.is_empty() || record.events.len() > MAX_BUNDLE_EVENTS {
            return Err(Rejection::new(
                Reason::MalformedEnvelope,
                format!(
                    "a bundle holds 1 to {MAX_BUNDLE_EVENTS} events, this one {}",
                    record.events.len()
                ),
            ));
        }
        let (env_bytes, kind) =
            bundle_sig::envelope_bytes(&record.bundle).map_err(|e| rejection(&e.into()))?;
        let signed = parse_envelope(&env_bytes, kind).map_err(|e| rejection(&e.into()))?;
        let manifest: bundle_sig::Manifest =
            serde_json::from_slice(&signed.payload).map_err(|e| {
                Rejection::new(
                    Reason::MalformedEnvelope,
                    format!("the bundle envelope does not sign a bundle manifest: {e}"),
                )
            })?;
        let raws = record.events;
        let tree = bundle_sig::bundle_tree(&raws);
        if manifest.size != raws.len() as u64 || tree.root() != manifest.bundle_root {
            return Err(Rejection::new(
                Reason::ClaimsMismatch,
                format!(
                    "the bundle signs {} events with root {}, the record holds {} with root {}",
                    manifest.size,
                    manifest.bundle_root,
                    raws.len(),
                    tree.root()
                ),
            ));
        }
        let iat = check_time(signed.claims.iat, now_ms, &self.policy)?;
        let signer = self.signer_of(&signed)?;
        // The same for every event of the bundle but its index.
        let mut shared = info(
            &signed,
            iat,
            signer.id.clone(),
            signer.participant_id.clone(),
            signer.key_id.clone(),
        );
        shared.bundle_size = Some(raws.len() as u64);
        let mut out = Vec::with_capacity(raws.len());
        for (i, raw) in raws.iter().enumerate() {
            let one = || -> Result<Opened, Rejection> {
                let mut event = parse_event(raw, now_ms, limits)?;
                if self.policy.for_type(event.event_type) == Policy::Off {
                    return self.finish_private(event);
                }
                takes_part(&signer, &event)
                    .and_then(|()| self.privacy.refuse_in_clear(&event))
                    .map_err(|mut r| {
                        r.event_id = Some(event.event_id.clone());
                        r
                    })?;
                let mut sig = shared.clone();
                sig.bundle_index = Some(i as u64);
                event.signature = Some(sig);
                let path = tree.audit_path(i).unwrap_or_default();
                let mut opened = finish(event, Some(env_bytes.clone()))?;
                opened.member = Some(bundle_sig::encode_member(i as u64, &path, raw));
                Ok(opened)
            };
            out.push(one().map_err(|mut r| {
                r.detail = format!("bundle event {i}: {}", r.detail);
                BundleReject {
                    rejection: r,
                    event: raw.to_vec(),
                }
            }));
        }
        Ok(out)
    }

    fn signer_of(&self, signed: &Signed) -> Result<veritrace_verify::registry::Signer, Rejection> {
        let cache = self.registry.as_ref().ok_or_else(|| {
            Rejection::new(
                Reason::UnknownSigner,
                "no identity registry: [signatures] root-key is not configured",
            )
        })?;
        let batch_key = self.preverified.get(&signed.digest.0);
        let authorize = |r: &Registry| {
            let (signer, key) = r.resolve(signed)?;
            // Verified in a batch with the very key the registry names now (a rotation
            // loaded since would name another: then it is verified again here).
            let verified =
                matches!((batch_key, key), (Some(b), PublicKey::Ed25519(k)) if k.as_bytes() == b);
            if !verified {
                verify_fast(signed, key)?;
            }
            Ok::<_, RegistryError>(signer)
        };
        match authorize(&cache.current()) {
            // A device registered moments ago: look at the log once more.
            Err(e) if e.code == "unknown_signer" => authorize(&cache.reload()),
            other => other,
        }
        .map_err(|e| rejection(&e))
    }

    /// Verifies the Ed25519 signatures of single-statement records together (batch
    /// verification: about 2.8 times the rate of one by one), so that [`Signatures::open`]
    /// of each then skips its signature check; bundles whose envelope leads the record
    /// join too. A batch that fails marks none of its records; they are then verified one
    /// by one, and the bad ones rejected as ever. Weak (small-order) keys and ES256 are
    /// left to `open`.
    pub fn preverify<'a>(&mut self, payloads: impl IntoIterator<Item = &'a [u8]>, limits: &Limits) {
        self.preverified.clear();
        if self.policy.strictest() == Policy::Off {
            return;
        }
        let Some(cache) = &self.registry else {
            return;
        };
        let registry = cache.current();
        let mut batch: Vec<(Signed, ed25519_dalek::VerifyingKey)> = Vec::with_capacity(BATCH);
        for payload in payloads {
            let signed = if bundle_sig::is_bundle(payload) {
                // A bundle's one signature joins the batch when its envelope leads the
                // record, as devices write it; [`Signatures::open_bundle`] checks the rest.
                let Some(Ok((bytes, kind))) =
                    bundle_sig::leading_envelope(payload).map(bundle_sig::envelope_bytes)
                else {
                    continue;
                };
                let Ok(signed) = parse_envelope(&bytes, kind) else {
                    continue;
                };
                signed
            } else {
                let Ok(Some(signed)) = unwrap_envelope(payload, limits) else {
                    continue;
                };
                signed
            };
            let Ok((_, PublicKey::Ed25519(key))) = registry.resolve(&signed) else {
                continue;
            };
            if signed.alg != veritrace_verify::signature::Alg::EdDsa || key.is_weak() {
                continue;
            }
            let key = *key;
            batch.push((signed, key));
            if batch.len() == BATCH {
                self.verify_batch(&mut batch);
            }
        }
        self.verify_batch(&mut batch);
    }

    fn verify_batch(&mut self, batch: &mut Vec<(Signed, ed25519_dalek::VerifyingKey)>) {
        if batch.len() >= 2 {
            let mut messages = Vec::with_capacity(batch.len());
            let mut sigs = Vec::with_capacity(batch.len());
            let mut keys = Vec::with_capacity(batch.len());
            for (signed, key) in batch.iter() {
                let Ok(sig) = ed25519_dalek::Signature::from_slice(&signed.signature) else {
                    continue;
                };
                messages.push(signed.to_be_signed.as_slice());
                sigs.push(sig);
                keys.push(*key);
            }
            if messages.len() == batch.len()
                && ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok()
            {
                self.preverified.extend(
                    batch
                        .iter()
                        .map(|(signed, key)| (signed.digest.0, key.to_bytes())),
                );
            }
        }
        batch.clear();
    }

    fn check(
        &self,
        signed: &Signed,
        event: &Event,
        now_ms: i64,
    ) -> Result<SignatureInfo, Rejection> {
        let iat = check_time(signed.claims.iat, now_ms, &self.policy)?;
        if let Some(sub) = &signed.claims.sub {
            let sub_code = trace_code("sub", sub).ok();
            if sub_code.is_none() || sub_code.as_deref() != event.trace_code.as_deref() {
                return Err(Rejection::new(
                    Reason::ClaimsMismatch,
                    format!(
                        "the signed subject (sub) {sub:?} is not the event's trace code {:?}",
                        event.trace_code.as_deref().unwrap_or("(none)")
                    ),
                ));
            }
        }
        let signer = self.signer_of(signed)?;
        takes_part(&signer, event)?;
        Ok(info(
            signed,
            iat,
            signer.id,
            signer.participant_id,
            signer.key_id,
        ))
    }
}

/// One event of a bundle that was rejected: why, and its bytes as sent (what the rejected
/// table keeps for it).
#[derive(Debug, Clone)]
pub struct BundleReject {
    /// Why.
    pub rejection: Rejection,
    /// The event as sent in the bundle.
    pub event: Vec<u8>,
}

/// Most events one bundle may hold.
pub const MAX_BUNDLE_EVENTS: usize = 10_000;

/// The signer's participant must take part in the event (as its participant or
/// counterparty).
fn takes_part(signer: &veritrace_verify::registry::Signer, event: &Event) -> Result<(), Rejection> {
    let ok = signer.participant_id == event.participant.id
        || event
            .counterparty
            .as_ref()
            .is_some_and(|c| c.id == signer.participant_id);
    if ok {
        return Ok(());
    }
    Err(Rejection::new(
        Reason::SignerNotAuthorized,
        format!(
            "{} belongs to participant {}, which takes no part in this event (participant {})",
            signer.id, signer.participant_id, event.participant.id
        ),
    ))
}

/// The registry as the log holds it, for processors of event streams: loaded from the
/// registry stream's sealed batches and reloaded when the stream grows (checked at most
/// every 250 ms, and at once when a signer is unknown).
#[derive(Debug)]
pub struct RegistryCache {
    dir: DataDir,
    root: PublicKey,
    state: Mutex<CacheState>,
}

#[derive(Debug)]
struct CacheState {
    registry: Arc<Registry>,
    stamp: Option<(u64, SystemTime)>,
    checked: Instant,
}

const RECHECK: Duration = Duration::from_millis(250);

impl RegistryCache {
    /// Loads the registry of `dir`, whose participants `root` registers.
    pub fn open(dir: &DataDir, root: PublicKey) -> Result<Arc<Self>> {
        let stamp = manifest_stamp(dir);
        let registry = load_registry(dir, &root)?;
        Ok(Arc::new(RegistryCache {
            dir: dir.clone(),
            root,
            state: Mutex::new(CacheState {
                registry: Arc::new(registry),
                stamp,
                checked: Instant::now(),
            }),
        }))
    }

    /// The operator's root key.
    pub fn root(&self) -> &PublicKey {
        &self.root
    }

    /// The registry now (reloaded first if the log grew and it was not checked lately).
    pub fn current(&self) -> Arc<Registry> {
        self.refresh(false)
    }

    /// The registry, reloaded now if the log grew.
    pub fn reload(&self) -> Arc<Registry> {
        self.refresh(true)
    }

    fn refresh(&self, now: bool) -> Arc<Registry> {
        let mut s = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if now || s.checked.elapsed() >= RECHECK {
            s.checked = Instant::now();
            let stamp = manifest_stamp(&self.dir);
            if stamp != s.stamp {
                match load_registry(&self.dir, &self.root) {
                    Ok(r) => {
                        s.registry = Arc::new(r);
                        s.stamp = stamp;
                    }
                    // Keep the last good state; the next check tries again.
                    Err(e) => tracing::error!(error = %e, "reloading the identity registry failed"),
                }
            }
        }
        Arc::clone(&s.registry)
    }
}

fn manifest_stamp(dir: &DataDir) -> Option<(u64, SystemTime)> {
    if dir.is_remote() {
        // The entry count stands for the length; every read of an object store lists anyway.
        let logs = dir.list_logs(&dir.batches_dir()).ok()?;
        let m = dir.manifest_file(REGISTRY_STREAM, 0);
        let n = logs.into_iter().find(|(p, _)| *p == m)?.1;
        return Some((n, SystemTime::UNIX_EPOCH));
    }
    let m = std::fs::metadata(dir.manifest_file(REGISTRY_STREAM, 0)).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// The signed registry records of `dir`, in log order (batch by batch, leaf by leaf).
pub fn registry_envelopes(dir: &DataDir) -> Result<Vec<(String, Vec<u8>)>> {
    let manifest: Vec<veritrace_anchor::BatchHeader> =
        dir.read_jsonl(&dir.manifest_file(REGISTRY_STREAM, 0))?;
    // Files we wrote are checked when read: each against the digest its batch recorded.
    let digests = veritrace_anchor::integrity::read_batch_files(
        dir,
        &dir.batch_files_log(REGISTRY_STREAM, 0),
    )?;
    let mut out = Vec::new();
    for h in manifest.iter().filter(|h| h.size > 0) {
        let path = dir.events_file(&h.batch_id);
        let recorded = digests
            .get(&h.batch_id)
            .and_then(|b| b.files.iter().find(|f| path.ends_with(&f.file)));
        match recorded {
            None => {
                return Err(Error::Corrupt {
                    path,
                    detail: format!(
                        "batch {} has no recorded digest for its events file",
                        h.batch_id
                    ),
                });
            }
            Some(d) => {
                if let Some(problem) = veritrace_anchor::integrity::verify_file(dir, d)? {
                    return Err(Error::Corrupt {
                        path,
                        detail: format!("registry batch {}: {problem}", h.batch_id),
                    });
                }
            }
        }
        let rows = read_envelopes(dir, &path)?;
        if rows.len() as u64 != h.size {
            return Err(Error::Corrupt {
                path,
                detail: format!(
                    "batch {} sealed {} registry records, the file holds {}",
                    h.batch_id,
                    h.size,
                    rows.len()
                ),
            });
        }
        out.extend(rows);
    }
    Ok(out)
}

fn read_envelopes(dir: &DataDir, path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let corrupt = |detail: String| Error::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let f = dir.source(path)?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| corrupt(e.to_string()))?;
    let schema = b.parquet_schema();
    let cols: Vec<usize> = ["event_id", "envelope"]
        .iter()
        .map(|n| {
            schema
                .columns()
                .iter()
                .position(|c| c.name() == *n)
                .ok_or_else(|| corrupt(format!("no {n} column")))
        })
        .collect::<Result<_>>()?;
    let mask = ProjectionMask::leaves(schema, cols);
    let reader = b
        .with_projection(mask)
        .build()
        .map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(e.to_string()))?;
        let ids = batch
            .column_by_name("event_id")
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::StringArray>())
            .ok_or_else(|| corrupt("event_id is not text".into()))?;
        let env = batch
            .column_by_name("envelope")
            .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
            .ok_or_else(|| corrupt("envelope is not binary".into()))?;
        for i in 0..batch.num_rows() {
            if env.is_null(i) {
                return Err(corrupt(format!(
                    "registry record {} has no envelope",
                    ids.value(i)
                )));
            }
            out.push((ids.value(i).to_owned(), env.value(i).to_vec()));
        }
    }
    Ok(out)
}

/// Replays the registry records of `dir` (see [`registry_envelopes`]). A record that does
/// not replay is damage (the registry stage sealed only records that applied) and is
/// reported with its id.
pub fn load_registry(dir: &DataDir, root: &PublicKey) -> Result<Registry> {
    let mut registry = Registry::new(root.clone());
    let path = dir.manifest_file(REGISTRY_STREAM, 0);
    for (id, bytes) in registry_envelopes(dir)? {
        let signed = sniff(&bytes)
            .ok_or_else(|| "not a COSE or JWS envelope".to_owned())
            .and_then(|k| parse_envelope(&bytes, k).map_err(|e| e.to_string()))
            .and_then(|s| registry.apply(&s).map_err(|e| e.to_string()));
        if let Err(detail) = signed {
            return Err(Error::Corrupt {
                path,
                detail: format!("registry record {id} does not replay: {detail}"),
            });
        }
    }
    Ok(registry)
}

/// Appends signed registry records to `dir`'s registry stream and seals them as one batch
/// (the registry stream's partition lock is held meanwhile). Each outcome says whether its
/// record was accepted; refused ones are kept in the rejected table with their reason.
pub fn append_registry(
    dir: &DataDir,
    root: &PublicKey,
    policy: &SignaturePolicy,
    batch: crate::BatchPolicy,
    envelopes: &[Vec<u8>],
) -> Result<(Vec<crate::Outcome>, Option<veritrace_anchor::BatchHeader>)> {
    // One writer of the registry stream at a time (another registry command, a gateway).
    let lock_path = dir.partition_lock_file(REGISTRY_STREAM, 0);
    let holder = format!("veritrace registry (pid {})", std::process::id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let _lock = loop {
        if let Some(l) = dir.try_lock(&lock_path, &holder)? {
            break l;
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Invalid(format!(
                "the registry stream is written by another process ({}) for 30 s",
                dir.lock_holder(&lock_path)
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stage = RegistryStage::open(dir, root.clone(), policy.clone())?;
    let mut proc =
        crate::PartitionProcessor::open(dir, REGISTRY_STREAM, 0, batch)?.with_registry(stage);
    let first = proc.resume_offset().unwrap_or(0);
    let mut outcomes = Vec::with_capacity(envelopes.len());
    for (offset, e) in (first..).zip(envelopes) {
        outcomes.push(proc.push(offset, None, e, crate::now_ms())?);
    }
    let header = proc.seal(crate::now_ms())?;
    Ok((outcomes, header))
}

/// The registry stream's stage: each record is a signed registry record, applied to the
/// registry state (which checks who signed it) and turned into an event of type `registry`
/// that is sealed and anchored like any other, its envelope kept beside it.
#[derive(Debug, Clone)]
pub struct RegistryStage {
    registry: Registry,
    policy: SignaturePolicy,
}

impl RegistryStage {
    /// The stage over `dir`'s registry as sealed so far.
    pub fn open(dir: &DataDir, root: PublicKey, policy: SignaturePolicy) -> Result<Self> {
        Ok(RegistryStage {
            registry: load_registry(dir, &root)?,
            policy,
        })
    }

    /// The state after the records accepted so far.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Checks and applies one record; `is_duplicate` says whether an id was accepted
    /// already (a resent record is refused before it could change the state twice).
    pub fn open_record(
        &mut self,
        payload: &[u8],
        now_ms: i64,
        limits: &Limits,
        is_duplicate: &dyn Fn(&str) -> bool,
    ) -> Result<Opened, Rejection> {
        let signed = unwrap_envelope(payload, limits)?.ok_or_else(|| {
            Rejection::new(
                Reason::Unsigned,
                "registry records must be signed (COSE_Sign1 or JWS)",
            )
        })?;
        let id = format!("registry:{}", &signed.digest.to_hex()[..32]);
        let tag = |mut r: Rejection| {
            r.event_id = Some(id.clone());
            r
        };
        if is_duplicate(&id) {
            return Err(tag(Rejection::new(
                Reason::DuplicateEventId,
                format!("registry record {id} was already accepted"),
            )));
        }
        if signed.payload.len() > limits.max_payload {
            return Err(tag(Rejection::new(
                Reason::PayloadTooLarge,
                format!("the record is {} bytes", signed.payload.len()),
            )));
        }
        let record: Record = serde_json::from_slice(&signed.payload).map_err(|e| {
            tag(Rejection::new(
                Reason::BadRecord,
                format!("not a registry record: {e}"),
            ))
        })?;
        let at = record.at();
        // Not before 2000-01-01, not ahead of the clock.
        let ahead = i64::try_from(self.policy.max_future.as_secs()).unwrap_or(i64::MAX);
        if at < 946_684_800 || at > now_ms.div_euclid(1000).saturating_add(ahead) {
            return Err(tag(Rejection::new(
                Reason::BadRecord,
                format!("at {at} is before 2000 or ahead of the clock"),
            )));
        }
        // Who signs: the root key for participants, the owner's admin key for devices.
        let (signer, participant) = match &record {
            Record::ParticipantRegistered {
                participant_id,
                name,
                role,
                ..
            } => (
                (
                    "operator".to_owned(),
                    "operator".to_owned(),
                    self.registry_root_kid(),
                ),
                Participant {
                    id: participant_id.clone(),
                    name: Some(name.clone()),
                    role: role.clone(),
                },
            ),
            Record::DeviceRegistered { participant_id, .. } => self.owner(participant_id),
            Record::DeviceKeyRotated { device_id, .. }
            | Record::DeviceRevoked { device_id, .. } => {
                let owner = self
                    .registry
                    .devices()
                    .get(device_id)
                    .map(|d| d.participant_id.clone())
                    .unwrap_or_default();
                self.owner(&owner)
            }
            Record::VisibilityGranted { grantor, .. } => self.owner(grantor),
            Record::VisibilityRevoked { grant_id, .. } => {
                let grantor = self
                    .registry
                    .grants()
                    .get(grant_id)
                    .map(|g| g.grantor.clone())
                    .unwrap_or_default();
                self.owner(&grantor)
            }
        };
        self.registry
            .apply(&signed)
            .map_err(|e| tag(rejection(&e)))?;
        let device_id = match &record {
            Record::ParticipantRegistered { .. } => None,
            Record::DeviceRegistered { device_id, .. }
            | Record::DeviceKeyRotated { device_id, .. }
            | Record::DeviceRevoked { device_id, .. } => Some(device_id.clone()),
            Record::VisibilityGranted { .. } | Record::VisibilityRevoked { .. } => None,
        };
        // The grantee takes part in a grant (it sees the grants it received).
        let counterparty = match &record {
            Record::VisibilityGranted { grantee, .. } => {
                let p = self.registry.participants().get(grantee);
                Some(Participant {
                    id: grantee.clone(),
                    name: p.map(|p| p.name.clone()),
                    role: p.map(|p| p.role.clone()).unwrap_or_default(),
                })
            }
            _ => None,
        };
        let time = chrono::DateTime::from_timestamp(at, 0).unwrap_or_default();
        let event = Event {
            attachments: Vec::new(),
            attributes: serde_json::to_value(&record).ok(),
            counterparty,
            device_id,
            event_id: id,
            event_time: time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event_time_ms: at.saturating_mul(1000),
            event_type: EventType::Registry,
            kind: EventType::Registry,
            inputs: Vec::new(),
            location: None,
            object: None,
            operator: None,
            outputs: Vec::new(),
            participant,
            quantity: None,
            readings: BTreeMap::new(),
            result: None,
            retracts: Vec::new(),
            signature: Some(info(&signed, at, signer.0, signer.1, signer.2)),
            site: None,
            trace_code: None,
            version: crate::event::EVENT_VERSION,
        };
        finish(event, Some(payload.to_vec()))
    }

    fn registry_root_kid(&self) -> String {
        self.registry.root().key_id()
    }

    /// The signer (the participant's admin key) and the participant of a device record.
    fn owner(&self, participant_id: &str) -> ((String, String, String), Participant) {
        let p = self.registry.participants().get(participant_id);
        (
            (
                participant_id.to_owned(),
                participant_id.to_owned(),
                p.map(|p| p.admin_key.key_id()).unwrap_or_default(),
            ),
            Participant {
                id: participant_id.to_owned(),
                name: p.map(|p| p.name.clone()),
                role: p.map(|p| p.role.clone()).unwrap_or_default(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use veritrace_verify::signature::{Alg, Claims, SigningKey, sign_jws};

    use super::*;

    fn key(alg: Alg, seed: u8) -> SigningKey {
        SigningKey::from_bytes(alg, &[seed; 32]).expect("key")
    }

    fn record(k: &SigningKey, r: &Record) -> Vec<u8> {
        let claims = Claims {
            iss: None,
            sub: None,
            iat: Some(r.at()),
        };
        sign_jws(
            k,
            &k.public().key_id(),
            &claims,
            &serde_json::to_vec(r).expect("json"),
        )
        .into_bytes()
    }

    /// A registry with participant P1 and its device d1 (`d1` key), under `enforce`.
    fn stage(dir: &DataDir, d1: &SigningKey, now: i64) -> Signatures {
        let root = key(Alg::EdDsa, 1);
        let admin = key(Alg::EdDsa, 2);
        let policy = SignaturePolicy {
            default: Policy::Enforce,
            ..SignaturePolicy::default()
        };
        let records = [
            record(
                &root,
                &Record::ParticipantRegistered {
                    participant_id: "P1".into(),
                    name: "P1".into(),
                    role: "manufacturer".into(),
                    admin_key: admin.public().to_text(),
                    at: now - 3600,
                },
            ),
            record(
                &admin,
                &Record::DeviceRegistered {
                    device_id: "d1".into(),
                    participant_id: "P1".into(),
                    kind: "sensor".into(),
                    key: d1.public().to_text(),
                    at: now - 3600,
                },
            ),
        ];
        append_registry(
            dir,
            &root.public(),
            &policy,
            crate::BatchPolicy::default(),
            &records,
        )
        .expect("registry");
        let settings = SignatureSettings {
            root: Some(root.public()),
            default: policy,
            streams: BTreeMap::new(),
            privacy: Default::default(),
        };
        settings.stage("events", settings.registry(dir).expect("cache"))
    }

    fn signed(k: &SigningKey, id: &str, iat: i64) -> Vec<u8> {
        let event = format!(
            r#"{{"event_id":"{id}","event_type":"production","event_time":"2026-11-01T00:00:00Z","participant":{{"id":"P1","role":"manufacturer"}},"trace_code":"(01)06945501102041(10)LOT1"}}"#
        );
        let claims = Claims {
            iss: Some("d1".into()),
            sub: None,
            iat: Some(iat),
        };
        sign_jws(k, "d1", &claims, event.as_bytes()).into_bytes()
    }

    /// Bundle `b` of `n` production events of P1 (ids `b{b}-{i}`), signed by `k` as d1.
    fn bundle(k: &SigningKey, b: u64, n: usize, iat: i64) -> Vec<u8> {
        let events: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"event_id":"b{b}-{i}","event_type":"production","event_time":"2026-11-01T00:00:00Z","participant":{{"id":"P1","role":"manufacturer"}},"trace_code":"(01)06945501102041(10)LOT{b}"}}"#
                )
                .into_bytes()
            })
            .collect();
        let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        bundle_sig::sign_bundle(
            k,
            "d1",
            "d1",
            iat,
            &refs,
            veritrace_verify::signature::Envelope::Cose,
        )
    }

    /// A fresh data directory, the clock (ms, s) and d1's key.
    fn fixture() -> (tempfile::TempDir, DataDir, i64, i64, SigningKey) {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = DataDir::create(tmp.path()).expect("dir");
        let now_ms = crate::now_ms();
        (tmp, dir, now_ms, now_ms / 1000, key(Alg::EdDsa, 3))
    }

    #[test]
    fn ring_and_the_verify_crate_agree_on_es256() {
        let k = key(Alg::Es256, 5);
        let other = key(Alg::Es256, 6);
        let claims = Claims {
            iss: Some("d".into()),
            sub: None,
            iat: Some(1),
        };
        for i in 0..50u8 {
            let jws = sign_jws(&k, "d", &claims, &[b'{', i, b'}']);
            let signed =
                parse_envelope(jws.as_bytes(), sniff(jws.as_bytes()).expect("jws")).expect("parse");
            assert!(verify_fast(&signed, &k.public()).is_ok());
            assert!(signed.verify(&k.public()).is_ok());
            assert!(verify_fast(&signed, &other.public()).is_err());
            let mut bad = signed.clone();
            bad.signature[usize::from(i) % 64] ^= 1;
            assert_eq!(
                verify_fast(&bad, &k.public()).is_ok(),
                bad.verify(&k.public()).is_ok()
            );
            assert!(verify_fast(&bad, &k.public()).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bundle_records_never_panic(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            events in proptest::collection::vec("[ -~]{0,40}", 0..4),
        ) {
            let s = Signatures {
                policy: SignaturePolicy { default: Policy::Enforce, ..SignaturePolicy::default() },
                ..Signatures::default()
            };
            let mut raw = b"{\"bundle\":".to_vec();
            raw.extend_from_slice(&tail);
            let _ = s.open_bundle(&raw, 0, &Limits::default());
            let shaped = format!(r#"{{"bundle":"eyJ.a.b","events":[{}]}}"#, events.join(","));
            let _ = s.open_bundle(shaped.as_bytes(), 0, &Limits::default());
        }
    }

    #[test]
    fn bundle_signatures_join_the_batch_and_a_forged_bundle_is_still_caught() {
        let (_tmp, dir, now_ms, now, d1) = fixture();
        let mut s = stage(&dir, &d1, now);
        let limits = Limits::default();
        let good: Vec<Vec<u8>> = (0..4).map(|b| bundle(&d1, b, 3, now)).collect();
        s.preverify(good.iter().map(Vec::as_slice), &limits);
        assert_eq!(
            s.preverified.len(),
            4,
            "every bundle's signature in the batch"
        );
        for g in &good {
            let events = s.open_bundle(g, now_ms, &limits).expect("a bundle");
            let events = events.expect("accepted");
            assert!(events.iter().all(Result::is_ok), "{events:?}");
        }

        let forger = key(Alg::EdDsa, 9);
        let mut mixed = good.clone();
        mixed.insert(2, bundle(&forger, 9, 3, now));
        s.preverify(mixed.iter().map(Vec::as_slice), &limits);
        assert!(s.preverified.is_empty(), "a failed batch marks nothing");
        let outcomes: Vec<_> = mixed
            .iter()
            .map(|m| s.open_bundle(m, now_ms, &limits).expect("a bundle"))
            .collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 4);
        let bad = outcomes[2].as_ref().expect_err("forgery");
        assert_eq!(bad.reason, Reason::BadSignature, "{bad:?}");
    }

    #[test]
    fn an_event_of_a_bundle_that_is_not_json_is_rejected_alone() {
        let (_tmp, dir, now_ms, now, d1) = fixture();
        let s = stage(&dir, &d1, now);
        let good = br#"{"event_id":"j1","event_type":"production","event_time":"2026-11-01T00:00:00Z","participant":{"id":"P1","role":"manufacturer"},"trace_code":"(01)06945501102041(10)LOT1"}"#;
        let events: [&[u8]; 3] = [good, b"tru", b"[1]"];
        let record = bundle_sig::sign_bundle(
            &d1,
            "d1",
            "d1",
            now,
            &events,
            veritrace_verify::signature::Envelope::Jws,
        );
        let out = s
            .open_bundle(&record, now_ms, &Limits::default())
            .expect("a bundle")
            .expect("its signature holds");
        assert!(out[0].is_ok(), "{:?}", out[0]);
        let reasons: Vec<(Reason, Vec<u8>)> = out[1..]
            .iter()
            .map(|o| {
                let r = o.as_ref().expect_err("not an event");
                (r.rejection.reason, r.event.clone())
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                (Reason::MalformedJson, b"tru".to_vec()),
                (Reason::NotAnObject, b"[1]".to_vec())
            ]
        );
    }

    #[test]
    fn a_batch_of_bundles_is_sealed_by_its_rows_not_its_records() {
        // A batch policy counted records: 10,000 bundle records of 10,000 events each
        // made one batch of 100 M rows in memory.
        let (_tmp, dir, now_ms, now, d1) = fixture();
        let policy = crate::BatchPolicy {
            max_records: 100,
            ..crate::BatchPolicy::default()
        };
        let mut p = crate::PartitionProcessor::open(&dir, "events", 0, policy)
            .expect("open")
            .with_signatures(stage(&dir, &d1, now));
        let mut sizes = Vec::new();
        for b in 0..5 {
            let record = bundle(&d1, b, 60, now);
            let out = p.push(b, None, &record, now_ms).expect("push");
            assert!(
                matches!(out, crate::Outcome::Bundle { accepted: 60, .. }),
                "{out:?}"
            );
            assert_eq!(p.is_full(), p.open_rows() >= 100);
            if p.is_full() {
                sizes.push(p.seal(now_ms).expect("seal").expect("header").size);
            }
        }
        sizes.extend(p.seal(now_ms).expect("seal").map(|h| h.size));
        // A bundle is never split: a batch ends after the bundle that fills it.
        assert_eq!(sizes, vec![120, 120, 60]);
    }

    #[test]
    fn batch_verified_signatures_are_accepted_and_a_forgery_in_the_batch_is_still_caught() {
        let (_tmp, dir, now_ms, now, d1) = fixture();
        let mut s = stage(&dir, &d1, now);
        let limits = Limits::default();

        let good: Vec<Vec<u8>> = (0..10)
            .map(|i| signed(&d1, &format!("e{i}"), now))
            .collect();
        s.preverify(good.iter().map(Vec::as_slice), &limits);
        assert_eq!(s.preverified.len(), 10, "one batch of ten, all marked");
        for g in &good {
            let o = s.open(g, now_ms, &limits).expect("accepted");
            assert_eq!(o.accepted.event.signature.expect("signed").signer, "d1");
        }

        // A forgery (another key signing as d1) among good ones: the batch fails, nothing
        // is marked, and one-by-one checks accept the good and reject the forgery.
        let forger = key(Alg::EdDsa, 9);
        let mut mixed = good.clone();
        mixed.insert(4, signed(&forger, "forged", now));
        s.preverify(mixed.iter().map(Vec::as_slice), &limits);
        assert!(s.preverified.is_empty(), "a failed batch marks nothing");
        let outcomes: Vec<_> = mixed.iter().map(|m| s.open(m, now_ms, &limits)).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 10);
        let bad = outcomes[4].as_ref().expect_err("forgery");
        assert_eq!(bad.reason, Reason::BadSignature, "{bad:?}");

        // A record marked as verified with a key other than the one the registry names
        // (a rotation loaded in between) is verified again with the registry's key.
        let forged = signed(&forger, "forged-2", now);
        let kind = sniff(&forged).expect("jws");
        let digest = parse_envelope(&forged, kind).expect("parse").digest.0;
        s.preverified
            .insert(digest, forger.public().to_bytes().try_into().expect("32"));
        let r = s
            .open(&forged, now_ms, &limits)
            .expect_err("verified again");
        assert_eq!(r.reason, Reason::BadSignature, "{r:?}");
    }
}
