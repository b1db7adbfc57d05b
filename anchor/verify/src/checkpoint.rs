//! Checkpoints of a transparency log and the signed notes that carry them, in the formats
//! the tools of Certificate Transparency, Go's checksum database, Sigstore and Tessera speak:
//! C2SP `tlog-checkpoint` and `signed-note` (Ed25519 signatures, signature type `0x01`).
//!
//! A checkpoint is three lines and optional extension lines, each ending in a newline:
//!
//! ```text
//! example.com/log          origin: the log's unique name
//! 4096                     size: leaves in the tree, decimal
//! 3Lf...s=                 root: the RFC 6962 tree hash, standard base64
//! ```
//!
//! A signed note is the text, an empty line, and one line per signature:
//! `— NAME BASE64(KEY_HASH || SIGNATURE)` (U+2014 em dash), where `KEY_HASH` is the first 4
//! bytes of `SHA-256(NAME || "\n" || 0x01 || PUBLIC_KEY)` and the Ed25519 signature covers
//! the text bytes. A verifier key is written `NAME+HEX(KEY_HASH)+BASE64(0x01 || PUBLIC_KEY)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::{Digest, Error, Result};

/// Signature type of Ed25519 in C2SP signed-note.
const ED25519: u8 = 0x01;

/// Signature type of a C2SP tlog-cosignature/v1 (Ed25519) cosigner.
const COSIGNATURE_V1: u8 = 0x04;

/// What a note key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A plain Ed25519 note signature over the text (a log's own signature).
    Ed25519,
    /// A C2SP tlog-cosignature/v1: a witness's Ed25519 signature over
    /// `"cosignature/v1\ntime " T "\n"` and the text, `T` its Unix time in seconds, which
    /// the signature line carries as 8 big-endian bytes before the signature.
    CosignatureV1,
}

impl KeyKind {
    fn byte(self) -> u8 {
        match self {
            KeyKind::Ed25519 => ED25519,
            KeyKind::CosignatureV1 => COSIGNATURE_V1,
        }
    }
}

/// The bytes a tlog-cosignature/v1 cosigner signs for `text` at `time`.
pub fn cosigned_message(text: &str, time: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time}\n").into_bytes();
    m.extend_from_slice(text.as_bytes());
    m
}

/// Most signature lines a note may carry (C2SP: verifiers may refuse more than 100).
pub const MAX_SIGNATURES: usize = 100;

/// Largest note read, in bytes (a checkpoint is a few hundred).
pub const MAX_NOTE_BYTES: usize = 64 * 1024;

fn bad(detail: impl Into<String>) -> Error {
    Error::Note(detail.into())
}

/// A log checkpoint (C2SP tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique name (no spaces, no `+`, not empty).
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// The RFC 6962 root of the first `size` leaves.
    pub root: Digest,
    /// Extension lines, in order (without their newlines).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The checkpoint's text, each line ending in a newline.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root.0)
        );
        for e in &self.extensions {
            t.push_str(e);
            t.push('\n');
        }
        t
    }

    /// Parses a checkpoint's text strictly: the origin a valid key name, the size decimal
    /// without a sign or leading zeros, the root 32 bytes of standard base64, extension
    /// lines not empty, and a newline after every line.
    pub fn parse(text: &str) -> Result<Self> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(bad("a checkpoint ends with a newline"));
        };
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if !valid_name(origin) {
            return Err(bad(format!(
                "checkpoint origin {origin:?} is not a valid name"
            )));
        }
        let size_text = lines
            .next()
            .ok_or_else(|| bad("the checkpoint has no size line"))?;
        let size = parse_size(size_text)?;
        let root_text = lines
            .next()
            .ok_or_else(|| bad("the checkpoint has no root line"))?;
        let root = STANDARD
            .decode(root_text)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Digest)
            .ok_or_else(|| {
                bad(format!(
                    "checkpoint root {root_text:?} is not 32 bytes of base64"
                ))
            })?;
        let mut extensions = Vec::new();
        for e in lines {
            if e.is_empty() {
                return Err(bad("a checkpoint extension line is empty"));
            }
            extensions.push(e.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

fn parse_size(s: &str) -> Result<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical
        .then(|| s.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| bad(format!("checkpoint size {s:?} is not a decimal number")))
}

/// A key name: not empty, no Unicode spaces, no `+` (C2SP signed-note).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signer's key name.
    pub name: String,
    /// The key hash (which key of that name).
    pub key_hash: [u8; 4],
    /// The signature bytes (64 for Ed25519).
    pub signature: Vec<u8>,
}

/// A signed note: text and signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, ending in a newline.
    pub text: String,
    /// Its signatures, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note: the text (ending in a newline), an empty line, then at least
    /// one and at most [`MAX_SIGNATURES`] signature lines.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(bad(format!(
                "a note of {} bytes is over the {MAX_NOTE_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let all = std::str::from_utf8(bytes).map_err(|_| bad("a note is UTF-8 text"))?;
        // The signatures start after the last blank line.
        let Some(split) = all.rfind("\n\n") else {
            return Err(bad("a note has an empty line before its signatures"));
        };
        let (text, sigs) = (&all[..=split], &all[split + 2..]);
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(bad("a note's text has control characters"));
        }
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(bad("a note's last signature line ends with a newline"));
        };
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(bad(format!("a note has over {MAX_SIGNATURES} signatures")));
            }
            let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
                bad(format!(
                    "signature line {line:?} does not start with an em dash"
                ))
            })?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad(format!("signature line {line:?} has no signature")))?;
            if !valid_name(name) {
                return Err(bad(format!("signature key name {name:?} is not valid")));
            }
            let raw = STANDARD
                .decode(b64)
                .map_err(|_| bad(format!("the signature of {name} is not base64")))?;
            if raw.len() < 5 {
                return Err(bad(format!("the signature of {name} is too short")));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_hash: [raw[0], raw[1], raw[2], raw[3]],
                signature: raw[4..].to_vec(),
            });
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text: text, empty line, signature lines.
    pub fn to_text(&self) -> String {
        let mut t = self.text.clone();
        t.push('\n');
        for s in &self.signatures {
            let mut raw = s.key_hash.to_vec();
            raw.extend_from_slice(&s.signature);
            t.push_str(&format!("\u{2014} {} {}\n", s.name, STANDARD.encode(raw)));
        }
        t
    }

    /// Checks the signature of `key` on the note: a line with its name and key hash whose
    /// Ed25519 signature over the text (a cosigner's: over its cosigned message) verifies.
    /// Returns the cosignature's time (0 for a plain signature).
    pub fn verify(&self, key: &NoteKey) -> Result<u64> {
        let hash = key.key_hash();
        let line = self
            .signatures
            .iter()
            .find(|s| s.name == key.name && s.key_hash == hash)
            .ok_or_else(|| {
                bad(format!(
                    "the note has no signature by {} (key hash {})",
                    key.name,
                    hex::encode(hash)
                ))
            })?;
        let (time, sig, msg) = match key.kind {
            KeyKind::Ed25519 => (0, line.signature.as_slice(), self.text.as_bytes().to_vec()),
            KeyKind::CosignatureV1 => {
                let Some((t, sig)) = line.signature.split_first_chunk::<8>() else {
                    return Err(bad(format!("the cosignature of {} has no time", key.name)));
                };
                let time = u64::from_be_bytes(*t);
                (time, sig, cosigned_message(&self.text, time))
            }
        };
        let sig = ed25519_dalek::Signature::from_slice(sig)
            .map_err(|_| bad(format!("the signature of {} is not 64 bytes", key.name)))?;
        key.key
            .verify_strict(&msg, &sig)
            .map_err(|_| bad(format!("the signature of {} does not verify", key.name)))?;
        Ok(time)
    }

    /// Adds a tlog-cosignature/v1 line by `name` with `key`, at `time`.
    pub fn cosign(&mut self, name: &str, key: &SigningKey, time: u64) -> Result<()> {
        let k = NoteKey::cosigner(name, key.verifying_key())?;
        let mut signature = time.to_be_bytes().to_vec();
        signature.extend_from_slice(&key.sign(&cosigned_message(&self.text, time)).to_bytes());
        self.signatures
            .retain(|s| !(s.name == name && s.key_hash == k.key_hash()));
        if self.signatures.len() == MAX_SIGNATURES {
            return Err(bad(format!(
                "a note has at most {MAX_SIGNATURES} signatures"
            )));
        }
        self.signatures.push(NoteSignature {
            name: name.to_owned(),
            key_hash: k.key_hash(),
            signature,
        });
        Ok(())
    }

    /// How many of `witnesses` (cosigner keys) cosigned the note, and why each other did not.
    pub fn cosigned_by(&self, witnesses: &[NoteKey]) -> (Vec<(String, u64)>, Vec<String>) {
        let mut good = Vec::new();
        let mut missing = Vec::new();
        for w in witnesses {
            match self.verify(w) {
                Ok(t) => good.push((w.name.clone(), t)),
                Err(e) => missing.push(e.to_string()),
            }
        }
        (good, missing)
    }
}

/// An Ed25519 note verifier key: a name, a public key, and what it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteKey {
    /// The key name (for a log: its origin; for a witness: its name).
    pub name: String,
    /// The public key.
    pub key: VerifyingKey,
    /// Plain signatures or tlog-cosignature/v1.
    pub kind: KeyKind,
}

impl NoteKey {
    /// `name`'s key, for plain signatures.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self> {
        Self::of_kind(name, key, KeyKind::Ed25519)
    }

    /// `name`'s cosigner key (C2SP tlog-cosignature/v1).
    pub fn cosigner(name: &str, key: VerifyingKey) -> Result<Self> {
        Self::of_kind(name, key, KeyKind::CosignatureV1)
    }

    fn of_kind(name: &str, key: VerifyingKey, kind: KeyKind) -> Result<Self> {
        if !valid_name(name) {
            return Err(bad(format!("key name {name:?} is not valid")));
        }
        Ok(NoteKey {
            name: name.to_owned(),
            key,
            kind,
        })
    }

    /// The first four bytes of `SHA-256(name || "\n" || type || public key)`, the type
    /// `0x01` for a plain signature and `0x04` for a cosigner.
    pub fn key_hash(&self) -> [u8; 4] {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update(b"\n");
        h.update([self.kind.byte()]);
        h.update(self.key.as_bytes());
        let d = h.finalize();
        [d[0], d[1], d[2], d[3]]
    }

    /// The verifier key text: `NAME+HEX(KEY_HASH)+BASE64(TYPE || PUBLIC_KEY)`.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![self.kind.byte()];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_hash()),
            STANDARD.encode(raw)
        )
    }

    /// Parses a verifier key text, checking its key hash.
    pub fn parse_vkey(vkey: &str) -> Result<Self> {
        // A name has no '+'; the key's base64 may.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!("{vkey:?} is not NAME+HASH+KEY")));
        };
        let raw = STANDARD
            .decode(key)
            .map_err(|_| bad(format!("the key of {vkey:?} is not base64")))?;
        let (kind, pk) = match raw.split_first() {
            Some((&ED25519, pk)) => (KeyKind::Ed25519, pk),
            Some((&COSIGNATURE_V1, pk)) => (KeyKind::CosignatureV1, pk),
            _ => {
                return Err(bad(format!(
                    "{vkey:?} is not an Ed25519 key (type 0x01) or a cosigner key (type 0x04)"
                )));
            }
        };
        let pk = <[u8; 32]>::try_from(pk)
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| bad(format!("the key of {vkey:?} is not an Ed25519 public key")))?;
        let k = NoteKey::of_kind(name, pk, kind)?;
        if hex::encode(k.key_hash()) != hash {
            return Err(bad(format!(
                "the key hash of {vkey:?} does not match its name and key"
            )));
        }
        Ok(k)
    }
}

/// Signs `text` (ending in a newline) as `name` with `key`: the signed note's text.
pub fn sign(text: &str, name: &str, key: &SigningKey) -> Result<String> {
    if !text.ends_with('\n') {
        return Err(bad("a note's text ends with a newline"));
    }
    if text.contains("\n\n") || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad(
            "a note's text has no empty lines and no control characters",
        ));
    }
    let k = NoteKey::new(name, key.verifying_key())?;
    let note = Note {
        text: text.to_owned(),
        signatures: vec![NoteSignature {
            name: name.to_owned(),
            key_hash: k.key_hash(),
            signature: key.sign(text.as_bytes()).to_bytes().to_vec(),
        }],
    };
    Ok(note.to_text())
}

/// Parses a signed checkpoint and checks `key`'s signature on it (the key's name must be
/// the checkpoint's origin).
pub fn open_checkpoint(bytes: &[u8], key: &NoteKey) -> Result<Checkpoint> {
    if key.kind != KeyKind::Ed25519 {
        return Err(bad(format!(
            "{} is a cosigner's key, not a log's",
            key.name
        )));
    }
    let note = Note::parse(bytes)?;
    note.verify(key)?;
    let c = Checkpoint::parse(&note.text)?;
    if c.origin != key.name {
        return Err(bad(format!(
            "the checkpoint's origin {} is not the key's name {}",
            c.origin, key.name
        )));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Go's golang.org/x/mod/sumdb/note test key and note.
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const SKEY_SEED: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn go_key() -> SigningKey {
        let raw = STANDARD.decode(SKEY_SEED).expect("b64");
        SigningKey::from_bytes(&<[u8; 32]>::try_from(&raw[1..]).expect("seed"))
    }

    #[test]
    fn signs_and_verifies_exactly_as_go_does() {
        let signed = sign(TEXT, "PeterNeumann", &go_key()).expect("sign");
        assert_eq!(signed, format!("{TEXT}\n{SIG}"));
        let key = NoteKey::parse_vkey(VKEY).expect("vkey");
        assert_eq!(key.to_vkey(), VKEY);
        let note = Note::parse(signed.as_bytes()).expect("parse");
        note.verify(&key).expect("verify");
        assert_eq!(note.to_text(), signed);
        // The independent implementation agrees.
        let theirs = signed_note::StandardVerifier::new(VKEY).expect("theirs");
        let list = signed_note::VerifierList::new(vec![Box::new(theirs)]);
        let parsed = signed_note::Note::from_bytes(signed.as_bytes()).expect("their parse");
        parsed.verify(&list).expect("their verify");
    }

    #[test]
    fn a_changed_text_name_or_key_does_not_verify() {
        let key = NoteKey::parse_vkey(VKEY).expect("vkey");
        let signed = sign(TEXT, "PeterNeumann", &go_key()).expect("sign");
        let changed = signed.replacen("cryptography", "cryptographY", 1);
        assert!(
            Note::parse(changed.as_bytes())
                .expect("parse")
                .verify(&key)
                .is_err()
        );
        let other = NoteKey::new(
            "PeterNeumann",
            SigningKey::from_bytes(&[7; 32]).verifying_key(),
        )
        .expect("key");
        assert!(
            Note::parse(signed.as_bytes())
                .expect("parse")
                .verify(&other)
                .is_err()
        );
        let renamed = NoteKey::new("Other", key.key).expect("key");
        assert!(
            Note::parse(signed.as_bytes())
                .expect("parse")
                .verify(&renamed)
                .is_err()
        );
        // A verifier key whose hash does not match is refused.
        assert!(NoteKey::parse_vkey(&VKEY.replace("c74f20a3", "c74f20a4")).is_err());
    }

    #[test]
    fn malformed_notes_are_refused_with_a_reason() {
        for bad in [
            "no blank line\n\u{2014} a AAAAAAAA\n".to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n- PeterNeumann x08go/ZJk=\n"),
            format!("{TEXT}\n\u{2014} PeterNeumann !!!\n"),
            format!("{TEXT}\n\u{2014} PeterNeumann AAAA\n"),
            format!("{TEXT}\n{}", SIG.trim_end()),
            format!("te\u{7}xt\n\n{SIG}"),
            format!("{TEXT}\n{}", SIG.repeat(MAX_SIGNATURES + 1)),
        ] {
            let e = Note::parse(bad.as_bytes()).expect_err(&bad);
            assert_eq!(e.code(), "bad_note", "{bad}");
        }
        assert!(Note::parse(&vec![b'a'; MAX_NOTE_BYTES + 1]).is_err());
    }

    #[test]
    fn checkpoints_round_trip_and_parse_strictly() {
        let c = Checkpoint {
            origin: "veritrace.example/log".into(),
            size: 4096,
            root: crate::merkle::leaf_hash(b"x"),
            extensions: vec!["epoch 7".into()],
        };
        let text = c.to_text();
        assert_eq!(Checkpoint::parse(&text).expect("parse"), c);
        let key = SigningKey::from_bytes(&[9; 32]);
        let signed = sign(&text, &c.origin, &key).expect("sign");
        let nk = NoteKey::new(&c.origin, key.verifying_key()).expect("key");
        assert_eq!(open_checkpoint(signed.as_bytes(), &nk).expect("open"), c);
        // The independent implementation reads the same checkpoint.
        let theirs = tlog_tiles::checkpoint::Checkpoint::from_bytes(text.as_bytes())
            .expect("their checkpoint");
        assert_eq!(
            (theirs.origin(), theirs.size()),
            ("veritrace.example/log", 4096)
        );
        assert_eq!(theirs.hash().0, c.root.0);
        for bad in [
            "origin\n4096\n".to_owned(),
            "origin\n04096\nAAAA\n".to_owned(),
            "origin\n-1\nAAAA\n".to_owned(),
            format!("origin\n1\n{}\n", STANDARD.encode([0u8; 31])),
            format!("origin\n1\n{}", STANDARD.encode([0u8; 32])),
            format!("origin\n1\n{}\n\n", STANDARD.encode([0u8; 32])),
            format!("two words\n1\n{}\n", STANDARD.encode([0u8; 32])),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        // Signed by the log's key under another name: refused.
        let signed = sign(&text, "someone.else", &key).expect("sign");
        let nk = NoteKey::new("someone.else", key.verifying_key()).expect("key");
        assert!(open_checkpoint(signed.as_bytes(), &nk).is_err());
    }

    #[test]
    fn witnesses_cosign_and_a_quorum_is_counted() {
        let log = go_key();
        let text = Checkpoint {
            origin: "PeterNeumann".into(),
            size: 7,
            root: Digest([3; 32]),
            extensions: Vec::new(),
        }
        .to_text();
        let signed = sign(&text, "PeterNeumann", &log).expect("sign");
        let mut note = Note::parse(signed.as_bytes()).expect("parse");
        let w: Vec<SigningKey> = (1..=3u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        let keys: Vec<NoteKey> = w
            .iter()
            .enumerate()
            .map(|(i, k)| {
                NoteKey::cosigner(&format!("witness.example/w{i}"), k.verifying_key()).expect("key")
            })
            .collect();
        note.cosign("witness.example/w0", &w[0], 1_700_000_000)
            .expect("cosign");
        note.cosign("witness.example/w2", &w[2], 1_700_000_005)
            .expect("cosign");
        let back = Note::parse(note.to_text().as_bytes()).expect("reparse");
        let (good, missing) = back.cosigned_by(&keys);
        assert_eq!(
            good,
            vec![
                ("witness.example/w0".to_owned(), 1_700_000_000),
                ("witness.example/w2".to_owned(), 1_700_000_005)
            ]
        );
        assert_eq!(missing.len(), 1);
        // The log's own signature still verifies, and its checkpoint opens.
        let log_key = NoteKey::new("PeterNeumann", log.verifying_key()).expect("key");
        assert_eq!(
            open_checkpoint(back.to_text().as_bytes(), &log_key)
                .expect("open")
                .size,
            7
        );
        // A cosigner key is not a log key, and the vkey keeps its kind.
        assert!(open_checkpoint(back.to_text().as_bytes(), &keys[0]).is_err());
        let vk = keys[0].to_vkey();
        assert_eq!(NoteKey::parse_vkey(&vk).expect("vkey"), keys[0]);
        assert_ne!(
            keys[0].key_hash(),
            NoteKey::new(&keys[0].name, keys[0].key)
                .expect("k")
                .key_hash()
        );
        // The time is signed: moving it breaks the cosignature.
        let mut moved = back.clone();
        let line = moved
            .signatures
            .iter_mut()
            .find(|s| s.name.ends_with("w0"))
            .expect("w0");
        line.signature[7] ^= 1;
        assert_eq!(moved.cosigned_by(&keys).0.len(), 1);
        // The message is the C2SP one.
        assert_eq!(
            cosigned_message("o\n1\nAA==\n", 5),
            b"cosignature/v1\ntime 5\no\n1\nAA==\n".to_vec()
        );
    }

    #[test]
    fn a_verifier_key_whose_base64_holds_a_plus_parses() {
        // Names never hold '+'; base64 often does (a key like this broke the parser once).
        let k = (0u8..=255)
            .map(|i| {
                NoteKey::new(
                    "example.com/log",
                    SigningKey::from_bytes(&[i; 32]).verifying_key(),
                )
                .expect("key")
            })
            .find(|k| {
                k.to_vkey()
                    .splitn(3, '+')
                    .nth(2)
                    .is_some_and(|b| b.contains('+'))
            })
            .expect("some key's base64 has a plus");
        assert_eq!(NoteKey::parse_vkey(&k.to_vkey()).expect("parses"), k);
    }
}
