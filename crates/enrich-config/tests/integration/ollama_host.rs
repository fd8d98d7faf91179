//! `normalize_ollama_host`: Ollama's own reading of `OLLAMA_HOST`.

use enrich_config::{DEFAULT_OLLAMA_URL, normalize_ollama_host};

#[test]
fn ollama_host_forms() {
    let cases = [
        // Bare host or address: http, port 11434.
        ("localhost", "http://localhost:11434"),
        ("10.0.0.5", "http://10.0.0.5:11434"),
        ("gpu-box", "http://gpu-box:11434"),
        // host:port and :port.
        ("gpu-box:8080", "http://gpu-box:8080"),
        (":12345", "http://127.0.0.1:12345"),
        // Listen-everywhere addresses become connectable loopback ones.
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:11434", "http://127.0.0.1:11434"),
        ("http://0.0.0.0:11434/", "http://127.0.0.1:11434"),
        ("[::]:11434", "http://[::1]:11434"),
        ("::", "http://[::1]:11434"),
        // IPv6.
        ("[::1]", "http://[::1]:11434"),
        ("[fe80::1]:8080", "http://[fe80::1]:8080"),
        ("fe80::1", "http://[fe80::1]:11434"),
        // A scheme without a port keeps the scheme's port, as the ollama CLI does.
        ("http://gpu-box", "http://gpu-box"),
        ("https://ollama.example.com", "https://ollama.example.com"),
        (
            "https://ollama.example.com:8443",
            "https://ollama.example.com:8443",
        ),
        (
            "HTTPS://ollama.example.com:8443",
            "https://ollama.example.com:8443",
        ),
        // Paths are kept (reverse proxies), trailing slashes are not.
        (
            "https://proxy.example.com/ollama/",
            "https://proxy.example.com/ollama",
        ),
        // Quotes and blanks around the value are dropped, as Ollama does.
        ("  \"gpu-box:8080\" ", "http://gpu-box:8080"),
        ("'localhost'", "http://localhost:11434"),
        // An invalid port falls back to the default one.
        ("gpu-box:notaport", "http://gpu-box:11434"),
        ("gpu-box:70000", "http://gpu-box:11434"),
        ("https://secure-box:bad", "https://secure-box"),
        // Credentials stay in front of the host, which is read as without them.
        ("http://u:pw@gpu:8080", "http://u:pw@gpu:8080"),
        ("u:pw@gpu-box", "http://u:pw@gpu-box:11434"),
        // Nothing at all.
        ("", DEFAULT_OLLAMA_URL),
        ("   ", DEFAULT_OLLAMA_URL),
    ];
    for (raw, want) in cases {
        assert_eq!(normalize_ollama_host(raw), want, "OLLAMA_HOST={raw:?}");
    }
}
