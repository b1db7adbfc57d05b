//! The Python with the tools `tools/python/requirements.txt` pins (the ADBC Flight SQL
//! driver, DuckDB).

use std::path::PathBuf;

/// `$VERITRACE_PYTHON`, else the virtualenv `scripts/test` builds in the cache.
pub fn python() -> PathBuf {
    std::env::var_os("VERITRACE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::cache_dir().join("pyenv/bin/python"))
}

/// [`python`], or an error naming how to install it.
pub fn require_python(what: &str) -> Result<PathBuf, String> {
    let p = python();
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "no Python with {what}: {} is missing; run scripts/test (it installs tools/python/requirements.txt) or set VERITRACE_PYTHON",
            p.display()
        ))
    }
}
