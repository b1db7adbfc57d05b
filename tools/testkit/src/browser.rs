//! Headless Chromium for page tests: Debian's `chromium` (`$VERITRACE_CHROMIUM` names
//! another), driven by the pinned `playwright-core` in `tools/browser` (installed by
//! `scripts/test`; it downloads no browser of its own).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The Chromium binary: `$VERITRACE_CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium_bin() -> PathBuf {
    std::env::var_os("VERITRACE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Opens each of `paths` under `base` (e.g. `http://127.0.0.1:PORT`) in headless Chromium
/// and returns what each page shows (`tools/browser/resolver-pages.mjs`: status, title,
/// verdict banner and its `data-verdict`, state, history). Fails, naming what is missing,
/// when the browser or its driver is not installed.
pub fn resolver_pages(base: &str, paths: &[String]) -> Result<Vec<Value>, String> {
    run_script(
        "resolver-pages.mjs",
        std::iter::once(base.to_owned()).chain(paths.iter().cloned()),
    )
}

/// Verifies `files` on the `/verify` page at `url` in headless Chromium, from a saved copy
/// of the page with the network cut (`tools/browser/verify-page.mjs`): one JSON object per
/// file (`verdict`: valid, unanchored or invalid; `code`, `headline`, `checks`), and a
/// screenshot of each in `shots`. `options`: `{"key", "ledger", "witnesses", "quorum"}`.
pub fn verify_page(
    url: &str,
    shots: &std::path::Path,
    options: &Value,
    files: &[PathBuf],
) -> Result<Vec<Value>, String> {
    run_script(
        "verify-page.mjs",
        [
            url.to_owned(),
            shots.display().to_string(),
            options.to_string(),
        ]
        .into_iter()
        .chain(files.iter().map(|f| f.display().to_string())),
    )
}

/// Runs one of `tools/browser`'s scripts with `args`; each line it prints is a JSON value.
fn run_script(script: &str, args: impl IntoIterator<Item = String>) -> Result<Vec<Value>, String> {
    let chromium = chromium_bin();
    if !chromium.is_file() {
        return Err(format!(
            "no browser: {} is missing; run scripts/test (it installs Debian's chromium) or set VERITRACE_CHROMIUM",
            chromium.display()
        ));
    }
    let dir = crate::repo_root().join("tools/browser");
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err(format!(
            "no browser driver: run `npm ci --prefix {}` (scripts/test does)",
            dir.display()
        ));
    }
    let out = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .env("VERITRACE_CHROMIUM", &chromium)
        .output()
        .map_err(|e| format!("running node: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the browser run failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{l:?}: {e}")))
        .collect()
}
