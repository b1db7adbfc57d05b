//! Private fields: values that enter the leaf as salted commitments, so a proof can disclose
//! them one by one, or not at all, and erasing them (a data-protection request, a trade
//! secret at the end of a contract) leaves every proof verifying.
//!
//! A private field's value in the canonical event is the text `vtc1:` followed by the hex
//! SHA-256 of a 16-byte random salt and the value's canonical JSON (RFC 8785). The value and
//! the salt are kept apart from the log; a [`Disclosure`] carries both, and
//! [`check`] recomputes the commitment. Fields that can be private: `operator`, `site`,
//! `participant.name`, `counterparty.name` and any `attributes.<key>`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The prefix of a commitment in a canonical event.
pub const COMMIT_PREFIX: &str = "vtc1:";

/// One private field disclosed: its value and the salt of its commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disclosure {
    /// The field (`attributes.price`, `counterparty.name`, ...).
    pub path: String,
    /// Its value.
    pub value: Value,
    /// The salt, hex (32 digits).
    pub salt: String,
}

/// Whether `path` names a field that can be private.
pub fn is_private_path(path: &str) -> bool {
    matches!(
        path,
        "operator" | "site" | "participant.name" | "counterparty.name"
    ) || path
        .strip_prefix("attributes.")
        .is_some_and(|k| !k.is_empty() && !k.contains('.'))
}

/// The commitment text of `value` under `salt`.
pub fn commit(salt: &[u8], value: &Value) -> Result<String, String> {
    let bytes = crate::canonical::to_vec(value).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    h.update(salt);
    h.update(&bytes);
    Ok(format!("{COMMIT_PREFIX}{}", hex::encode(h.finalize())))
}

fn at<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = event;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    Some(v)
}

/// The private fields of a canonical event and their commitments.
pub fn commitments(event: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut take = |path: String, v: Option<&Value>| {
        if let Some(c) = v
            .and_then(Value::as_str)
            .filter(|c| c.starts_with(COMMIT_PREFIX))
        {
            out.push((path, c.to_owned()));
        }
    };
    for p in ["operator", "site", "participant.name", "counterparty.name"] {
        take(p.to_owned(), at(event, p));
    }
    if let Some(attrs) = event.get("attributes").and_then(Value::as_object) {
        for (k, v) in attrs {
            take(format!("attributes.{k}"), Some(v));
        }
    }
    out
}

/// Checks a disclosure against the event's commitment at its path.
pub fn check(event: &Value, d: &Disclosure) -> Result<(), String> {
    let committed = at(event, &d.path)
        .and_then(Value::as_str)
        .filter(|c| c.starts_with(COMMIT_PREFIX))
        .ok_or_else(|| format!("the event has no commitment at {}", d.path))?;
    let salt = hex::decode(&d.salt).map_err(|_| format!("{}: the salt is not hex", d.path))?;
    if salt.len() != 16 {
        return Err(format!("{}: the salt is not 16 bytes", d.path));
    }
    let computed = commit(&salt, &d.value)?;
    if computed != committed {
        return Err(format!(
            "{}: the disclosed value does not match its commitment (committed {committed}, computed {computed})",
            d.path
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn disclosures_match_their_commitments_and_nothing_else() {
        let salt = [7u8; 16];
        let c = commit(&salt, &json!(1299.5)).expect("commit");
        let event =
            json!({"event_id": "e", "attributes": {"price": c, "n": 1}, "operator": "plain"});
        assert_eq!(
            commitments(&event),
            vec![("attributes.price".to_owned(), c.clone())]
        );
        let d = Disclosure {
            path: "attributes.price".into(),
            value: json!(1299.5),
            salt: hex::encode(salt),
        };
        assert!(check(&event, &d).is_ok());
        let lie = Disclosure {
            value: json!(999),
            ..d.clone()
        };
        assert!(
            check(&event, &lie)
                .expect_err("a lie")
                .contains("does not match")
        );
        let other_salt = Disclosure {
            salt: hex::encode([8u8; 16]),
            ..d.clone()
        };
        assert!(check(&event, &other_salt).is_err());
        let not_private = Disclosure {
            path: "operator".into(),
            ..d
        };
        assert!(check(&event, &not_private).is_err());
        assert!(is_private_path("attributes.price") && is_private_path("counterparty.name"));
        assert!(!is_private_path("event_id") && !is_private_path("attributes.a.b"));
    }
}
