//! # veritrace-verify-wasm: the auditor's verifier in the browser
//!
//! `veritrace serve` hosts `/verify`, a page that verifies proof bundles, trace and query
//! certificates, consistency proofs and COSE receipts in the browser with this module: the
//! same code as `veritrace-verify`, compiled to `wasm32-unknown-unknown`, no server round
//! trip. The page talks to it through a small C ABI (no glue generator):
//!
//! - `vt_alloc(len) -> ptr` and `vt_free(ptr, len)`: memory the page writes inputs into and
//!   frees results with;
//! - `vt_verify(doc, doc_len, opts, opts_len) -> u64`: the verdict as JSON, its address in
//!   the high 32 bits and its length in the low 32 bits ([`verify_json`]).
//!
//! The chain check (`--rpc`) is not in the module: a browser asks the chain itself.

use serde::Deserialize;
use veritrace_verify::report::verify_document;
use veritrace_verify::verify::Options;

/// What the page passes besides the document (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PageOptions {
    /// The document's file name, for the report.
    name: Option<String>,
    /// The node's local ledger file's text.
    ledger: Option<String>,
    /// The node's published Ed25519 public key (hex).
    key: Option<String>,
    /// Witnesses' cosigner verifier keys.
    witnesses: Vec<String>,
    /// How many of them must have cosigned.
    quorum: Option<usize>,
}

/// Verifies `doc` (a proof bundle, a trace or query certificate, a consistency proof, or a
/// COSE receipt) with `options` (JSON: `name`, `ledger`, `key`, `witnesses`, `quorum`) and
/// returns the verdict as JSON: `{"valid", "anchored", "text", "report"}`, or `{"error"}`
/// when the options are not understood.
pub fn verify_json(doc: &[u8], options: &[u8]) -> String {
    let o: PageOptions = if options.is_empty() {
        PageOptions::default()
    } else {
        match serde_json::from_slice(options) {
            Ok(o) => o,
            Err(e) => return serde_json::json!({"error": format!("options: {e}")}).to_string(),
        }
    };
    let opts = Options {
        ledger: o.ledger.filter(|l| !l.trim().is_empty()),
        pinned_key: o.key.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()),
        witnesses: o
            .witnesses
            .into_iter()
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty())
            .collect(),
        witness_quorum: o.quorum,
    };
    let name = o.name.unwrap_or_else(|| "document".into());
    match verify_document(&name, doc, &opts, None) {
        Ok(v) => serde_json::json!({
            "valid": v.valid,
            "anchored": v.anchored,
            "text": v.text,
            "report": v.json,
        })
        .to_string(),
        // No chain is asked in the browser module, so this cannot happen; said plainly if
        // it ever does.
        Err(e) => serde_json::json!({"error": e.to_string()}).to_string(),
    }
}

#[allow(unsafe_code)]
mod ffi {
    /// Memory for `len` bytes the page writes an input into.
    #[unsafe(no_mangle)]
    pub extern "C" fn vt_alloc(len: usize) -> *mut u8 {
        let mut v = Vec::<u8>::with_capacity(len.max(1));
        let p = v.as_mut_ptr();
        std::mem::forget(v);
        p
    }

    /// Frees what [`vt_alloc`] gave or [`vt_verify`] returned.
    ///
    /// # Safety
    /// `ptr` and `len` are exactly a pair that `vt_alloc(len)` or `vt_verify` gave, freed once.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn vt_free(ptr: *mut u8, len: usize) {
        // SAFETY: the caller passes back an allocation of capacity `len.max(1)` made here.
        drop(unsafe { Vec::from_raw_parts(ptr, 0, len.max(1)) });
    }

    /// Verifies the document at `doc` with the options at `opts` (see [`super::verify_json`]);
    /// returns the verdict's address (high 32 bits) and length (low 32 bits).
    ///
    /// # Safety
    /// `doc`/`doc_len` and `opts`/`opts_len` are initialised memory the page wrote.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn vt_verify(
        doc: *const u8,
        doc_len: usize,
        opts: *const u8,
        opts_len: usize,
    ) -> u64 {
        // SAFETY: the page wrote `doc_len` and `opts_len` bytes at these addresses.
        let (doc, opts) = unsafe {
            (
                std::slice::from_raw_parts(doc, doc_len),
                std::slice::from_raw_parts(opts, opts_len),
            )
        };
        let mut out = super::verify_json(doc, opts).into_bytes();
        out.shrink_to_fit();
        let len = out.len();
        let mut out = std::mem::ManuallyDrop::new(out);
        let ptr = out.as_mut_ptr() as usize;
        ((ptr as u64) << 32) | len as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_that_is_not_json_is_a_verdict_not_a_crash() {
        let v: serde_json::Value =
            serde_json::from_str(&verify_json(b"{not json", b"")).expect("json");
        assert_eq!(v["valid"], false);
        assert_eq!(v["report"]["code"], "malformed");
        let v: serde_json::Value =
            serde_json::from_str(&verify_json(b"{}", b"{\"nope\": 1}")).expect("json");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("nope")),
            "{v}"
        );
    }
}
