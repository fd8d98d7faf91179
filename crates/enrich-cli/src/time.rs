//! Showing stored timestamps to people.

use std::time::{Duration, SystemTime};

/// A time stored as milliseconds since the Unix epoch, as `Tue, 24 Nov 2026 09:13:21 GMT`.
pub(crate) fn format_ms(ms: u64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

/// A time stored as seconds since the Unix epoch (LLMC's `created_at`), the same way.
pub(crate) fn format_secs(secs: i64) -> String {
    match u64::try_from(secs) {
        Ok(secs) => httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        Err(_) => format!("{secs} (before 1970)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_read_as_utc_dates() {
        assert_eq!(
            format_ms(1_700_000_000_123),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        assert_eq!(format_secs(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(format_secs(-5), "-5 (before 1970)");
    }
}
