use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A SHA-256 digest. Serialised as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest, used as "no previous" in hash chains.
    pub const ZERO: Digest = Digest([0u8; 32]);

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        // A table, not `hex::encode`: that collects 64 chars one by one through an
        // iterator, and every signed event's leaf writes one of these.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Self, String> {
        if s.len() != 64 {
            return Err(format!(
                "expected 64 hex digits, found {} characters",
                s.len()
            ));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| e.to_string())?;
        Ok(Digest(out))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::from_hex(s)
    }
}

impl From<[u8; 32]> for Digest {
    fn from(b: [u8; 32]) -> Self {
        Digest(b)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// How a digest field of a document that is not 64 hex digits fails to deserialise: a
/// message naming the field, which [`bad_hash`] recognises so that the document's parser
/// reports [`crate::Error::BadHash`] rather than a malformed document. A value that is not
/// a string at all stays a type error (malformed).
const BAD_HASH: &str = "bad hash ";

fn one<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Digest, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    Digest::from_hex(&s)
        .map_err(|e| serde::de::Error::custom(format_args!("{BAD_HASH}{field}: {e}")))
}

fn list<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Vec<Digest>, D::Error> {
    let items = <Vec<std::borrow::Cow<'de, str>>>::deserialize(d)?;
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Digest::from_hex(s)
                .map_err(|e| serde::de::Error::custom(format_args!("{BAD_HASH}{field}[{i}]: {e}")))
        })
        .collect()
}

/// The field and the problem of a [`BAD_HASH`] message (`serde_json` may append a position).
pub(crate) fn bad_hash(msg: &str) -> Option<(String, String)> {
    let (field, detail) = msg.strip_prefix(BAD_HASH)?.split_once(": ")?;
    Some((field.to_owned(), detail.to_owned()))
}

/// `deserialize_with` functions for the digest fields of the documents, named as
/// PROOFS.md section 2.2 names them.
pub(crate) mod field {
    use super::{Deserializer, Digest, list, one};

    macro_rules! digest_fields {
        ($($name:ident: $ty:ty = $read:ident($field:literal);)*) => {$(
            pub(crate) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                $read(d, $field)
            }
        )*};
    }

    digest_fields! {
        leaf_hash: Digest = one("leaf.hash");
        leaf_audit_path: Vec<Digest> = list("leaf.audit_path");
        batch_root: Digest = one("batch.root");
        batch_prev_root: Digest = one("batch.prev_root");
        epoch_root: Digest = one("epoch.root");
        epoch_audit_path: Vec<Digest> = list("epoch.audit_path");
        ledger_root: Digest = one("ledger_entry.root");
        ledger_prev_entry_hash: Digest = one("ledger_entry.prev_entry_hash");
        bundle_path: Vec<Digest> = list("signed.bundle.path");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_round_trips() {
        for seed in 0..=255u8 {
            let d = Digest(std::array::from_fn(|i| {
                seed.wrapping_mul(31).wrapping_add(i as u8 * 7)
            }));
            let h = d.to_hex();
            assert_eq!(h, hex::encode(d.0));
            assert_eq!(Digest::from_hex(&h), Ok(d));
        }
    }
}
