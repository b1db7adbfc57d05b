//! GS1 identifiers in EPCIS: EPC URNs (`urn:epc:id:`, `urn:epc:class:`, `urn:epc:idpat:`)
//! and GS1 Digital Link URIs, brought to one canonical Digital Link
//! (`https://id.gs1.org/{AI}/{key}[/{AI}/{qualifier}]`), as the CBV 2.0 event hash writes
//! them: GTINs with 14 digits, check digits computed, the query string dropped, and only the
//! finest key kept (a lot followed by a serial keeps the serial).

use crate::tracecode::gs1_check_digit;

/// The canonical Digital Link of an EPC URN or a Digital Link URI; `None` when `s` is
/// neither (or is malformed).
pub fn canonical_digital_link(s: &str) -> Option<String> {
    if let Some(rest) = s.strip_prefix("urn:epc:id:") {
        return from_id_urn(rest);
    }
    if let Some(rest) = s.strip_prefix("urn:epc:class:lgtin:") {
        let [cp, ir, lot] = parts::<3>(rest)?;
        return Some(format!(
            "{}/01/{}/10/{}",
            BASE,
            gtin14(&cp, &ir)?,
            enc(&lot)
        ));
    }
    if let Some(rest) = s.strip_prefix("urn:epc:idpat:") {
        return from_idpat(rest);
    }
    if s.starts_with("https://") || s.starts_with("http://") {
        return from_digital_link(s);
    }
    None
}

const BASE: &str = "https://id.gs1.org";

/// Percent-decodes an EPC URN component.
fn dec(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but letters, digits, `-._~` and `'`.
fn enc(s: &str) -> String {
    let s = dec(s);
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~'".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Exactly `N` dot-separated parts.
fn parts<const N: usize>(s: &str) -> Option<[String; N]> {
    let v: Vec<String> = s.split('.').map(str::to_owned).collect();
    v.try_into().ok()
}

fn digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// `s` followed by its check digit (`s` all digits).
fn with_check(s: &str) -> Option<String> {
    gs1_check_digit(s).map(|c| format!("{s}{c}"))
}

/// The GTIN-14 of an SGTIN's company prefix and item reference (indicator digit first).
fn gtin14(cp: &str, ir: &str) -> Option<String> {
    if !digits(cp) || !digits(ir) || ir.is_empty() || cp.len() + ir.len() != 13 {
        return None;
    }
    with_check(&format!("{}{cp}{}", &ir[..1], &ir[1..]))
}

fn from_id_urn(rest: &str) -> Option<String> {
    let (scheme, body) = rest.split_once(':')?;
    let key = |cp: &str, r: &str, len: usize| -> Option<String> {
        let s = format!("{cp}{r}");
        (digits(&s) && s.len() == len).then(|| with_check(&s))?
    };
    Some(match scheme {
        "sgtin" => {
            let [cp, ir, ser] = parts::<3>(body)?;
            format!("{BASE}/01/{}/21/{}", gtin14(&cp, &ir)?, enc(&ser))
        }
        "sscc" => {
            let [cp, sr] = parts::<2>(body)?;
            if sr.is_empty() || !digits(&sr) {
                return None;
            }
            let s = format!("{}{cp}{}", &sr[..1], &sr[1..]);
            (digits(&s) && s.len() == 17).then_some(())?;
            format!("{BASE}/00/{}", with_check(&s)?)
        }
        "sgln" => {
            let [cp, lr, ext] = parts::<3>(body)?;
            let gln = key(&cp, &lr, 12)?;
            if ext == "0" || ext.is_empty() {
                format!("{BASE}/414/{gln}")
            } else {
                format!("{BASE}/414/{gln}/254/{}", enc(&ext))
            }
        }
        "grai" => {
            let [cp, at, ser] = parts::<3>(body)?;
            format!("{BASE}/8003/0{}{}", key(&cp, &at, 12)?, enc(&ser))
        }
        "giai" => {
            let [cp, iar] = parts::<2>(body)?;
            digits(&cp).then_some(())?;
            format!("{BASE}/8004/{cp}{}", enc(&iar))
        }
        "gsrn" | "gsrnp" => {
            let [cp, sr] = parts::<2>(body)?;
            let ai = if scheme == "gsrn" { "8018" } else { "8017" };
            format!("{BASE}/{ai}/{}", key(&cp, &sr, 17)?)
        }
        "gdti" | "sgcn" => {
            let [cp, dt, ser] = parts::<3>(body)?;
            let ai = if scheme == "gdti" { "253" } else { "255" };
            format!("{BASE}/{ai}/{}{}", key(&cp, &dt, 12)?, enc(&ser))
        }
        "cpi" => {
            let [cp, r, ser] = parts::<3>(body)?;
            digits(&cp).then_some(())?;
            format!("{BASE}/8010/{cp}{}/8011/{}", enc(&r), enc(&ser))
        }
        "ginc" => {
            let [cp, r] = parts::<2>(body)?;
            digits(&cp).then_some(())?;
            format!("{BASE}/401/{cp}{}", enc(&r))
        }
        "gsin" => {
            let [cp, r] = parts::<2>(body)?;
            format!("{BASE}/402/{}", key(&cp, &r, 16)?)
        }
        "itip" => {
            let [cp, ir, piece, total, ser] = parts::<5>(body)?;
            (digits(&piece) && digits(&total) && piece.len() == 2 && total.len() == 2)
                .then_some(())?;
            format!(
                "{BASE}/8006/{}{piece}{total}/21/{}",
                gtin14(&cp, &ir)?,
                enc(&ser)
            )
        }
        "upui" => {
            let [cp, ir, tpx] = parts::<3>(body)?;
            format!("{BASE}/01/{}/235/{}", gtin14(&cp, &ir)?, enc(&tpx))
        }
        "pgln" => {
            let [cp, pr] = parts::<2>(body)?;
            format!("{BASE}/417/{}", key(&cp, &pr, 12)?)
        }
        _ => return None,
    })
}

/// A class-level pattern (the serial part `*`): the key without its serial.
fn from_idpat(rest: &str) -> Option<String> {
    let (scheme, body) = rest.split_once(':')?;
    let body = body.strip_suffix(".*")?;
    let check = |cp: &str, r: &str| {
        let s = format!("{cp}{r}");
        (digits(&s) && s.len() == 12).then(|| with_check(&s))?
    };
    Some(match scheme {
        "sgtin" => {
            let [cp, ir] = parts::<2>(body)?;
            format!("{BASE}/01/{}", gtin14(&cp, &ir)?)
        }
        "grai" => {
            let [cp, at] = parts::<2>(body)?;
            format!("{BASE}/8003/0{}", check(&cp, &at)?)
        }
        "gdti" | "sgcn" => {
            let [cp, dt] = parts::<2>(body)?;
            let ai = if scheme == "gdti" { "253" } else { "255" };
            format!("{BASE}/{ai}/{}", check(&cp, &dt)?)
        }
        "cpi" => {
            let [cp, r] = parts::<2>(body)?;
            digits(&cp).then_some(())?;
            format!("{BASE}/8010/{cp}{}", enc(&r))
        }
        "itip" => {
            let [cp, ir, piece, total] = parts::<4>(body)?;
            (digits(&piece) && digits(&total) && piece.len() == 2 && total.len() == 2)
                .then_some(())?;
            format!("{BASE}/8006/{}{piece}{total}", gtin14(&cp, &ir)?)
        }
        _ => return None,
    })
}

/// Digital Link path aliases of the application identifiers.
fn ai_of(seg: &str) -> &str {
    match seg {
        "gtin" => "01",
        "sscc" => "00",
        "gln" => "414",
        "glnx" => "254",
        "party" => "417",
        "gdti" => "253",
        "gcn" => "255",
        "ginc" => "401",
        "gsin" => "402",
        "grai" => "8003",
        "giai" => "8004",
        "itip" => "8006",
        "cpid" => "8010",
        "cpsn" => "8011",
        "gsrnp" => "8017",
        "gsrn" => "8018",
        "lot" => "10",
        "ser" => "21",
        "tpx" => "235",
        "cpv" => "22",
        other => other,
    }
}

/// Primary keys and the qualifier each keeps (finest first).
fn qualifiers(ai: &str) -> &'static [&'static str] {
    match ai {
        "01" => &["21", "235", "10"],
        "414" => &["254"],
        "8006" => &["21", "10"],
        "8010" => &["8011"],
        "00" | "253" | "255" | "401" | "402" | "417" | "8003" | "8004" | "8017" | "8018" => &[],
        _ => &[""],
    }
}

fn from_digital_link(s: &str) -> Option<String> {
    let after_scheme = s.split_once("://")?.1;
    let path = after_scheme.split_once('/').map_or("", |(_, p)| p);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|x| !x.is_empty()).collect();
    // The primary key is the first AI segment with a value after it (a Digital Link may
    // have a path prefix before it).
    let start = (0..segs.len().saturating_sub(1)).find(|&i| {
        let ai = ai_of(segs[i]);
        qualifiers(ai) != [""] && valid_key(ai, &dec(segs[i + 1]))
    })?;
    let ai = ai_of(segs[start]);
    let mut value = dec(segs[start + 1]);
    if ai == "01" {
        value = format!("{value:0>14}");
    }
    let mut out = format!("{BASE}/{ai}/{}", enc(&value));
    let pairs: Vec<(&str, String)> = segs[start + 2..]
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (ai_of(c[0]), dec(c[1])))
        .collect();
    for q in qualifiers(ai) {
        if let Some((q, v)) = pairs.iter().find(|(k, _)| k == q) {
            out.push_str(&format!("/{q}/{}", enc(v)));
            break;
        }
    }
    Some(out)
}

/// The key's shape is right for its AI (digits, length, check digit where it has one).
fn valid_key(ai: &str, v: &str) -> bool {
    let checked = |len: &[usize]| {
        digits(v)
            && len.contains(&v.len())
            && gs1_check_digit(&v[..v.len() - 1]).is_some_and(|c| v.ends_with(char::from(b'0' + c)))
    };
    match ai {
        "01" => checked(&[8, 12, 13, 14]),
        "00" => checked(&[18]),
        "414" | "417" => checked(&[13]),
        "8017" | "8018" => checked(&[18]),
        "402" => checked(&[17]),
        "253" | "255" => v.get(..13).is_some_and(digits),
        "8003" => v.get(..14).is_some_and(digits),
        "8006" => v.len() == 18 && digits(v),
        "401" | "8004" | "8010" => !v.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urns_and_links_become_one_canonical_digital_link() {
        for (input, want) in [
            (
                "urn:epc:id:sgtin:4012345.011111.9876",
                "https://id.gs1.org/01/04012345111118/21/9876",
            ),
            (
                "urn:epc:id:sscc:4012345.3111111111",
                "https://id.gs1.org/00/340123451111111111",
            ),
            (
                "urn:epc:id:sgln:4012345.00005.0",
                "https://id.gs1.org/414/4012345000054",
            ),
            (
                "urn:epc:id:upui:1234567.098765.51qIgY)%3C%26Jp3*j7'SDB",
                "https://id.gs1.org/01/01234567987651/235/51qIgY%29%3C%26Jp3%2Aj7'SDB",
            ),
            (
                "urn:epc:id:gdti:987659999999..9",
                "https://id.gs1.org/253/98765999999929",
            ),
            (
                "https://example.com/gtin/09780345418913/21/765tz?abc=211121",
                "https://id.gs1.org/01/09780345418913/21/765tz",
            ),
            (
                "urn:epc:idpat:sgtin:4012345.012345.*",
                "https://id.gs1.org/01/04012345123456",
            ),
        ] {
            assert_eq!(
                canonical_digital_link(input).as_deref(),
                Some(want),
                "{input}"
            );
        }
        for not in [
            "https://accreditation-council.example.org/certificate/ABC12345",
            "http://www.opengis.net/def/crs/EPSG/0/27700",
            "urn:epcglobal:cbv:bt:5200001000008:4711",
            "urn:epc:id:sgtin:4012345.011111",
        ] {
            assert_eq!(canonical_digital_link(not), None, "{not}");
        }
    }
}
