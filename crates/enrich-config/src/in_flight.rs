//! `max_in_flight` (alias `parallel`): a backend's cap on requests in flight, written in its
//! `options` table as LLMC's configs have it, read into [`BackendSpec::max_in_flight`] when the
//! entry is loaded, so no adapter ever sees it as a provider option.
//!
//! [`BackendSpec::max_in_flight`]: crate::BackendSpec::max_in_flight

use std::num::NonZeroUsize;

use serde_json::Value;

use crate::types::Options;

/// The option key of a backend's cap on requests in flight: the ceiling of its adaptive limit,
/// or with `adaptive = false` the limit itself (default 1).
pub const MAX_IN_FLIGHT_OPTION: &str = "max_in_flight";

/// An alias of [`MAX_IN_FLIGHT_OPTION`], named after the server's `OLLAMA_NUM_PARALLEL`.
pub const PARALLEL_OPTION: &str = "parallel";

/// Takes `max_in_flight` and `parallel` out of `options` and reads them: a positive integer, or
/// a string holding one (`"2"`), as LLMC's loader reads numbers. `None` when neither is set.
///
/// # Errors
///
/// The offending key and why, for zero, a negative or fractional number, anything else that is
/// not a positive integer, or both keys given with different values.
pub(crate) fn take_max_in_flight(
    options: &mut Options,
) -> Result<Option<NonZeroUsize>, (&'static str, String)> {
    let mut read = |key: &'static str| {
        let Some(value) = options.remove(key) else {
            return Ok(None);
        };
        let parsed = match &value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        parsed
            .and_then(|n| usize::try_from(n).ok())
            .and_then(NonZeroUsize::new)
            .map(Some)
            .ok_or_else(|| {
                (
                    key,
                    format!(
                        "{value} (expected a positive integer, the server's OLLAMA_NUM_PARALLEL; \
                         fix it in the backend's `options`)"
                    ),
                )
            })
    };
    let max_in_flight = read(MAX_IN_FLIGHT_OPTION)?;
    let parallel = read(PARALLEL_OPTION)?;
    match (max_in_flight, parallel) {
        (Some(a), Some(b)) if a != b => Err((
            PARALLEL_OPTION,
            format!(
                "{b} while `{MAX_IN_FLIGHT_OPTION}` is {a} (set only one of them in the backend's \
                 `options`)"
            ),
        )),
        (Some(n), _) | (None, Some(n)) => Ok(Some(n)),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn take(options: Value) -> (Result<Option<usize>, (&'static str, String)>, Options) {
        let mut options = options.as_object().cloned().unwrap_or_default();
        let result = take_max_in_flight(&mut options).map(|n| n.map(NonZeroUsize::get));
        (result, options)
    }

    #[test]
    fn either_key_is_read_leniently_and_taken_out_of_the_options() {
        let ok = [
            (json!({"num_ctx": 8192}), None),
            (json!({"max_in_flight": 4, "num_ctx": 8192}), Some(4)),
            (json!({"parallel": 2, "num_ctx": 8192}), Some(2)),
            (json!({"parallel": " 3 ", "num_ctx": 8192}), Some(3)),
            (
                json!({"max_in_flight": 2, "parallel": "2", "num_ctx": 8192}),
                Some(2),
            ),
        ];
        for (options, expected) in ok {
            let (result, left) = take(options.clone());
            assert_eq!(result, Ok(expected), "{options}");
            assert_eq!(Value::Object(left), json!({"num_ctx": 8192}), "{options}");
        }
    }

    #[test]
    fn anything_but_a_positive_integer_is_refused_naming_the_key() {
        let bad = [
            (
                json!({"max_in_flight": 0}),
                "max_in_flight",
                "0 (expected a positive integer",
            ),
            (json!({"parallel": -1}), "parallel", "-1 (expected"),
            (json!({"parallel": 1.5}), "parallel", "1.5 (expected"),
            (
                json!({"max_in_flight": "many"}),
                "max_in_flight",
                "\"many\" (expected",
            ),
            (
                json!({"max_in_flight": true}),
                "max_in_flight",
                "true (expected",
            ),
            (
                json!({"max_in_flight": 2, "parallel": 4}),
                "parallel",
                "4 while `max_in_flight` is 2 (set only one of them",
            ),
        ];
        for (options, key, needle) in bad {
            let (result, _) = take(options.clone());
            let (found, reason) = result.unwrap_err();
            assert_eq!(found, key, "{options}");
            assert!(reason.starts_with(needle), "{options}: {reason}");
        }
    }
}
