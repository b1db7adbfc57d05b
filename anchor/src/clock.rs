//! Wall-clock time as Veritrace records it.

/// Now, RFC 3339 UTC with milliseconds (`2026-12-02T03:35:30.123Z`): what batch, epoch,
/// ledger and compaction records carry.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
