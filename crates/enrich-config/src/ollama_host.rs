//! `OLLAMA_HOST`, read the way Ollama's own client reads it.

use crate::DEFAULT_OLLAMA_URL;

/// Ollama's default port.
const OLLAMA_PORT: &str = "11434";

/// Turns an `OLLAMA_HOST` value into a base URL a client can connect to.
///
/// Follows Ollama's `envconfig` rules: surrounding quotes and blanks are dropped; `host`,
/// `host:port` and `:port` get the `http` scheme and, without a port, port 11434; a URL with an
/// `http://` or `https://` scheme but no port keeps that scheme's own port (80 or 443), exactly
/// as the `ollama` CLI does; an invalid port is replaced by the default one; a path is kept, a
/// trailing slash is not. The listen-everywhere addresses `0.0.0.0` and `::` become the loopback
/// address, since a server bound there is reached through it. A blank value gives
/// [`DEFAULT_OLLAMA_URL`].
///
/// ```
/// use enrich_config::normalize_ollama_host;
/// assert_eq!(normalize_ollama_host("0.0.0.0"), "http://127.0.0.1:11434");
/// assert_eq!(normalize_ollama_host("gpu-box:8080"), "http://gpu-box:8080");
/// assert_eq!(normalize_ollama_host("https://ollama.example.com"), "https://ollama.example.com");
/// ```
pub fn normalize_ollama_host(raw: &str) -> String {
    let value = raw.trim().trim_matches(['"', '\'']).trim();
    if value.is_empty() {
        return DEFAULT_OLLAMA_URL.to_owned();
    }
    let (scheme, rest, default_port) = match value.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            let default_port = match scheme.as_str() {
                "http" | "https" => None,
                _ => Some(OLLAMA_PORT),
            };
            (scheme, rest, default_port)
        }
        None => ("http".to_owned(), value, Some(OLLAMA_PORT)),
    };
    let rest = rest.trim_end_matches('/');
    let (host_port, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    // Credentials (`user:password@`) stay in front of the host; they are not part of it.
    let (userinfo, host_port) = host_port
        .rfind('@')
        .map_or(("", host_port), |at| host_port.split_at(at + 1));
    let (host, port) = split_host_port(host_port);
    let host = match host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    let port = port
        .filter(|p| p.parse::<u16>().is_ok())
        .or(default_port)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!("{scheme}://{userinfo}{host}{port}{path}")
}

/// Splits `host:port`, `[v6]:port`, `[v6]` or a bare IPv6 address (which has no room for a
/// port); IPv6 hosts come back in brackets.
fn split_host_port(host_port: &str) -> (String, Option<&str>) {
    if host_port.starts_with('[')
        && let Some(end) = host_port.find(']')
    {
        let (host, after) = host_port.split_at(end + 1);
        return (host.to_owned(), after.strip_prefix(':'));
    }
    match host_port.split_once(':') {
        None => (host_port.to_owned(), None),
        Some((host, port)) if !port.contains(':') => (host.to_owned(), Some(port)),
        Some(_) => (format!("[{host_port}]"), None),
    }
}
