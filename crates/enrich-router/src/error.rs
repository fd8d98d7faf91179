//! The router's error.

/// Why no chain could be chosen for a span.
///
/// Every route and override falls back to the default chain, so the only failure is a default
/// chain that cannot serve. Config validation normally rejects such a configuration first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// No backend entry belongs to the default chain.
    #[error(
        "default chain {chain:?} has no backend entry; add an [[enrichment.chain]] entry with \
         chain = {chain:?} or set default_chain to a chain that exists"
    )]
    DefaultChainMissing {
        /// The default chain's name.
        chain: String,
    },
    /// Every backend entry of the default chain is disabled.
    #[error(
        "default chain {chain:?} has no enabled backend; set enabled = true on one of its \
         entries or set default_chain to another chain"
    )]
    DefaultChainDisabled {
        /// The default chain's name.
        chain: String,
    },
}
