//! One backend entry (`[[enrichment.chain]]` or an `ENRICH_CHAIN_JSON` entry): its defaults
//! applied and its values checked.

use std::time::Duration;

use super::chains::Entry;
use crate::lenient::{Number, Text, Whole};
use crate::raw::RawBackend;
use crate::{
    BackendSpec, ConfigError, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MODEL, DEFAULT_PROVIDER, Options,
    Price, Source, credential_option,
};

/// The smallest `max_response_bytes` accepted: no enrichment fits in less.
const MIN_RESPONSE_BYTES: u64 = 1024;

/// Builds the error about `key` of the entry being resolved.
type Invalid<'a> = &'a dyn Fn(&str, String) -> ConfigError;

/// Applies an entry's defaults and checks it.
pub(super) fn resolve_entry(
    raw: RawBackend,
    default_chain: &str,
    label: String,
    origin: &Source,
) -> Result<Entry, ConfigError> {
    let Some(name) = raw.name.as_ref().and_then(Text::non_blank) else {
        return Err(ConfigError::UnnamedEntry {
            entry: label,
            origin: origin.clone(),
            line: None,
        });
    };
    let invalid = |key: &str, reason: String| ConfigError::Invalid {
        key: format!("{key} of {label} ({name:?})"),
        origin: origin.clone(),
        line: None,
        reason,
    };
    let timeout_seconds = timeout_seconds(raw.timeout_seconds.map(|t| t.0), &invalid)?;
    let text = |value: &Option<Text>| value.as_ref().and_then(Text::non_blank);
    let (url, urls) = hosts(&raw);
    let requests_per_minute = per_minute(raw.requests_per_minute, "requests_per_minute", &invalid)?;
    let tokens_per_minute = per_minute(raw.tokens_per_minute, "tokens_per_minute", &invalid)?;
    let price = price(&raw, &invalid)?;
    let max_response_bytes = max_response_bytes(raw.max_response_bytes, &invalid)?;
    let mut options = options(raw.options.unwrap_or_default(), &invalid)?;
    let max_in_flight = crate::in_flight::take_max_in_flight(&mut options)
        .map_err(|(key, reason)| invalid(&format!("options.{key}"), reason))?;
    let spec = BackendSpec {
        chain: text(&raw.chain).unwrap_or_else(|| default_chain.to_owned()),
        provider: text(&raw.provider).unwrap_or_else(|| DEFAULT_PROVIDER.to_owned()),
        model: text(&raw.model).unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
        url,
        urls,
        routing_tier: text(&raw.routing_tier),
        timeout_seconds,
        api_key_env: text(&raw.api_key_env),
        max_response_bytes,
        requests_per_minute,
        tokens_per_minute,
        price,
        max_in_flight,
        adaptive: raw.adaptive.is_none_or(|flag| flag.0),
        options,
        enabled: raw.enabled.is_none_or(|flag| flag.0),
        name,
    };
    Ok(Entry {
        spec,
        origin: origin.clone(),
        url_origin: None,
    })
}

/// `timeout_seconds`, which must be a positive, representable number of seconds.
fn timeout_seconds(seconds: Option<f64>, invalid: Invalid<'_>) -> Result<Option<f64>, ConfigError> {
    match seconds {
        Some(seconds) if seconds <= 0.0 || Duration::try_from_secs_f64(seconds).is_err() => {
            Err(invalid(
                "timeout_seconds",
                format!("{seconds} (expected a positive number of seconds)"),
            ))
        }
        seconds => Ok(seconds),
    }
}

/// The entry's first host (`url`, else the first of `urls`) and, when it has several, the
/// whole pool without duplicates or blanks, `url` first.
fn hosts(raw: &RawBackend) -> (Option<String>, Vec<String>) {
    let mut hosts: Vec<String> = raw
        .url
        .as_ref()
        .and_then(Text::non_blank)
        .into_iter()
        .collect();
    for url in raw.urls.iter().flat_map(|list| &list.0) {
        if let Some(url) = url.non_blank().filter(|url| !hosts.contains(url)) {
            hosts.push(url);
        }
    }
    let url = hosts.first().cloned();
    let urls = if hosts.len() > 1 { hosts } else { Vec::new() };
    (url, urls)
}

/// A per-minute rate limit: at least 1 when set.
fn per_minute(
    value: Option<Whole<u32>>,
    key: &str,
    invalid: Invalid<'_>,
) -> Result<Option<u32>, ConfigError> {
    value
        .map(|v| match v.0 {
            0 => Err(invalid(
                key,
                "0 (expected at least 1; remove the key for no limit)".to_owned(),
            )),
            n => Ok(n),
        })
        .transpose()
}

/// The entry's price per million tokens, `None` when it sets neither side; a side left out
/// costs 0.
fn price(raw: &RawBackend, invalid: Invalid<'_>) -> Result<Option<Price>, ConfigError> {
    let price_of = |value: Option<Number>, key: &str| {
        value
            .map(|v| {
                if v.0 >= 0.0 && v.0.is_finite() {
                    Ok(v.0)
                } else {
                    Err(invalid(
                        key,
                        format!("{} (expected a price of 0 or more per million tokens)", v.0),
                    ))
                }
            })
            .transpose()
    };
    let input_price = price_of(raw.price_input_per_1m, "price_input_per_1m")?;
    let output_price = price_of(raw.price_output_per_1m, "price_output_per_1m")?;
    Ok(
        (input_price.is_some() || output_price.is_some()).then(|| Price {
            input_per_1m: input_price.unwrap_or(0.0),
            output_per_1m: output_price.unwrap_or(0.0),
        }),
    )
}

/// `max_response_bytes`: at least [`MIN_RESPONSE_BYTES`] when set.
fn max_response_bytes(
    value: Option<Whole<u64>>,
    invalid: Invalid<'_>,
) -> Result<Option<u64>, ConfigError> {
    let max_response_bytes = value.map(|v| v.0);
    if let Some(bytes) = max_response_bytes.filter(|&bytes| bytes < MIN_RESPONSE_BYTES) {
        return Err(invalid(
            "max_response_bytes",
            format!(
                "{bytes} (expected at least {MIN_RESPONSE_BYTES} bytes; remove the key for the default of {DEFAULT_MAX_RESPONSE_BYTES})"
            ),
        ));
    }
    Ok(max_response_bytes)
}

/// The provider options, refused when one looks like a credential.
fn options(options: Options, invalid: Invalid<'_>) -> Result<Options, ConfigError> {
    if let Some(path) = credential_option(&options) {
        return Err(invalid(
            &format!("options.{path}"),
            "a credential in `options` would be sent to the model server in the request body; \
             put it in an environment variable and name that variable with \
             `api_key_env = \"VAR\"` (sent as an Authorization header), or write it into `url` \
             as user:password@"
                .to_owned(),
        ));
    }
    Ok(options)
}
