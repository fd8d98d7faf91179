//! Cross-crate integration tests of enrich; the tests live under `tests/`.
