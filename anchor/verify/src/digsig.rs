//! Codes that prove themselves: a serialised GTIN (AI 01 + AI 21) with a digital
//! signature of the brand in AI 8030 (GS1 DigSig), checked offline with the brand's public
//! key.
//!
//! What is signed is the element string `(01){GTIN-14}(21){serial}` in its bracketed
//! human-readable form, as UTF-8; the signature (ES256 `r || s`, or EdDSA) is written in AI
//! 8030 as unpadded base64url, 86 characters (AI 8030 takes up to 90 of that set). A code is
//! carried as a GS1 Digital Link (`https://id.gs1.org/01/{gtin}/21/{serial}?8030={sig}`)
//! or as an element string (`(01)...(21)...(8030)...`) for 2D barcodes.
//!
//! GS1's Digital Signatures Technical Implementation Guideline (2024) describes DigSig
//! (ISO/IEC 20248) in full, with certificates naming the signer and the data description;
//! this is the bare form of it: the key is named by the brand's configuration (a key per
//! GTIN company prefix), not by a certificate in the code. No GS1 test vectors were
//! available to check the byte-level form against.

use base64::Engine as _;

use crate::signature::{PublicKey, SigningKey};

/// Longest serial (AI 21: up to 20 characters of GS1's character set 82).
pub const MAX_SERIAL: usize = 20;

/// A serialised GTIN and the signature it carries (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The GTIN, 14 digits (check digit included).
    pub gtin: String,
    /// The serial number.
    pub serial: String,
    /// The AI 8030 value, as written.
    pub signature: Option<String>,
}

/// Why a code was not read or not authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct CodeError {
    /// `malformed_code`, `unsigned`, `bad_signature`.
    pub code: &'static str,
    /// What was wrong.
    pub detail: String,
}

fn err(code: &'static str, detail: impl Into<String>) -> CodeError {
    CodeError {
        code,
        detail: detail.into(),
    }
}

/// GS1 character set 82 (AI 21 serials): what a serial may hold.
fn cset82(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!\"%&'()*+,-./:;<=>?_".contains(c)
}

/// True when `g` is 14 digits with a correct GS1 check digit.
fn gtin_ok(g: &str) -> bool {
    if g.len() != 14 || !g.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let d: Vec<u32> = g.bytes().map(|b| u32::from(b - b'0')).collect();
    let sum: u32 = d[..13]
        .iter()
        .rev()
        .enumerate()
        .map(|(i, v)| if i % 2 == 0 { v * 3 } else { *v })
        .sum();
    (10 - sum % 10) % 10 == d[13]
}

impl Code {
    /// A code from its parts, checked.
    pub fn new(gtin: &str, serial: &str, signature: Option<String>) -> Result<Code, CodeError> {
        let gtin = if gtin.len() < 14 && gtin.bytes().all(|b| b.is_ascii_digit()) {
            format!("{gtin:0>14}")
        } else {
            gtin.to_owned()
        };
        if !gtin_ok(&gtin) {
            return Err(err(
                "malformed_code",
                format!("{gtin:?} is not a GTIN with a correct check digit"),
            ));
        }
        if serial.is_empty() || serial.chars().count() > MAX_SERIAL || !serial.chars().all(cset82) {
            return Err(err(
                "malformed_code",
                "a serial is 1-20 characters of GS1 character set 82",
            ));
        }
        if let Some(s) = &signature
            && (s.is_empty()
                || s.len() > 90
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(err(
                "malformed_code",
                "AI 8030 is up to 90 characters of A-Z a-z 0-9 - _",
            ));
        }
        Ok(Code {
            gtin,
            serial: serial.to_owned(),
            signature,
        })
    }

    /// Reads a Digital Link (`https://host/01/{gtin}/21/{serial}[?8030=sig]`, serial
    /// percent-encoded) or an element string (`(01)...(21)...[(8030)...]`).
    pub fn parse(text: &str) -> Result<Code, CodeError> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix('(') {
            // (01)G(21)S(8030)X: split on "(", each "AI)value".
            let mut gtin = None;
            let mut serial = None;
            let mut sig = None;
            for part in format!("({rest}").split('(').skip(1) {
                let (ai, value) = part
                    .split_once(')')
                    .ok_or_else(|| err("malformed_code", "an AI without its closing bracket"))?;
                match ai {
                    "01" => gtin = Some(value.to_owned()),
                    "21" => serial = Some(value.to_owned()),
                    "8030" => sig = Some(value.to_owned()),
                    other => {
                        return Err(err(
                            "malformed_code",
                            format!("AI ({other}) has no place in a signed serialised GTIN"),
                        ));
                    }
                }
            }
            let (Some(g), Some(s)) = (gtin, serial) else {
                return Err(err("malformed_code", "a code needs (01) and (21)"));
            };
            return Code::new(&g, &s, sig);
        }
        let (path, query) = text.split_once('?').unwrap_or((text, ""));
        let segs: Vec<&str> = path.split('/').collect();
        let at = segs
            .windows(4)
            .position(|w| w[0] == "01" && w[2] == "21")
            .ok_or_else(|| {
                err(
                    "malformed_code",
                    "neither a Digital Link with /01/{gtin}/21/{serial} nor an element string",
                )
            })?;
        let serial = percent_encoding::percent_decode_str(segs[at + 3])
            .decode_utf8()
            .map_err(|_| err("malformed_code", "the serial is not UTF-8"))?;
        let sig = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "8030")
            .map(|(_, v)| v.to_owned());
        Code::new(segs[at + 1], &serial, sig)
    }

    /// The signed message: the element string `(01){gtin}(21){serial}`.
    pub fn message(&self) -> String {
        format!("(01){}(21){}", self.gtin, self.serial)
    }

    /// The canonical trace code (what events name): the element string without AI 8030.
    pub fn trace_code(&self) -> String {
        self.message()
    }

    /// The code signed with `key` (AI 8030 set).
    pub fn signed(mut self, key: &SigningKey) -> Code {
        let sig = key.sign(self.message().as_bytes());
        self.signature = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig));
        self
    }

    /// Checks the AI 8030 signature with the brand's `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), CodeError> {
        let Some(s) = &self.signature else {
            return Err(err("unsigned", "the code carries no AI 8030 signature"));
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| err("bad_signature", "AI 8030 is not base64url"))?;
        key.verify(self.message().as_bytes(), &raw)
            .map_err(|e| err("bad_signature", e.detail))
    }

    /// The GS1 Digital Link on `host` (e.g. `https://id.gs1.org`), AI 8030 as a query.
    pub fn digital_link(&self, host: &str) -> String {
        let serial: String =
            percent_encoding::utf8_percent_encode(&self.serial, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        let mut s = format!(
            "{}/01/{}/21/{serial}",
            host.trim_end_matches('/'),
            self.gtin
        );
        if let Some(sig) = &self.signature {
            s.push_str("?8030=");
            s.push_str(sig);
        }
        s
    }

    /// The element string with AI 8030, for 2D barcodes.
    pub fn element_string(&self) -> String {
        match &self.signature {
            Some(sig) => format!("{}(8030){sig}", self.message()),
            None => self.message(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::Alg;

    #[test]
    fn a_signed_code_verifies_and_a_forged_or_guessed_one_does_not() {
        for alg in [Alg::Es256, Alg::EdDsa] {
            let key = SigningKey::from_bytes(alg, &[7u8; 32]).expect("key");
            let code = Code::new("9506000134352", "7QK3M9", None)
                .expect("code")
                .signed(&key);
            assert_eq!(code.gtin, "09506000134352");
            let sig = code.signature.clone().expect("signed");
            assert!(sig.len() <= 90, "{}", sig.len());
            code.verify(&key.public()).expect("genuine");
            // Both carriers read back to the same code.
            for text in [
                code.digital_link("https://id.gs1.org"),
                code.element_string(),
            ] {
                let back = Code::parse(&text).expect("parse");
                assert_eq!(back, code, "{text}");
                back.verify(&key.public()).expect("genuine");
            }
            // A guessed neighbour with a copied signature, another key, no signature.
            let mut guessed = code.clone();
            guessed.serial = "7QK3M8".into();
            assert_eq!(
                guessed.verify(&key.public()).expect_err("forged").code,
                "bad_signature"
            );
            let other = SigningKey::from_bytes(alg, &[9u8; 32]).expect("key");
            assert!(code.verify(&other.public()).is_err());
            let mut bare = code.clone();
            bare.signature = None;
            assert_eq!(
                bare.verify(&key.public()).expect_err("unsigned").code,
                "unsigned"
            );
        }
        assert!(
            Code::parse("(01)09506000134353(21)X").is_err(),
            "check digit"
        );
        assert!(
            Code::parse("(01)09506000134352(10)LOT").is_err(),
            "a lot is not a serial"
        );
        assert!(Code::parse("https://example.com/01/09506000134352").is_err());
        assert!(Code::new("09506000134352", "a b", None).is_err(), "space");
    }
}
