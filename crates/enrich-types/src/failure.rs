//! The failure kinds and their stored names, from one table.
//!
//! The table below is the one place a failure class is added: it defines the variants, their
//! stored names (in the attempt log's `failure_kind` and the failure ledger's
//! `last_failure_kind`; LLMC and older rows read them, so they never change), and whether a kind
//! is one a backend attempt fails with ([`FailureKind`]) or one only the ledger records, for a
//! span that failed before any backend was asked ([`LedgerKind`]). What the cascade does about
//! each attempt kind (retries, circuits, whether it is an outage that makes a backend unusable)
//! is enrich-backends' policy table, which is indexed by [`FailureKind::index`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines [`FailureKind`] and [`LedgerKind`] from one list of kinds with their stored names.
macro_rules! failure_kinds {
    (
        attempt: { $( $(#[doc = $adoc:literal])* $akind:ident = $aname:literal, )+ }
        ledger_only: { $( $(#[doc = $ldoc:literal])* $lkind:ident = $lname:literal, )+ }
    ) => {
        /// Why one attempt against a backend failed. The cascade decides what happens next from
        /// this alone.
        ///
        /// The snake_case names ([`FailureKind::as_str`], also the serde form) are stored in the
        /// database: they never change.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        pub enum FailureKind {
            $( $(#[doc = $adoc])* #[serde(rename = $aname)] $akind, )+
        }

        impl FailureKind {
            /// Every kind, in declaration order.
            pub const ALL: [FailureKind; [$($aname),+].len()] = [$(FailureKind::$akind),+];

            /// The stable snake_case name stored in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( FailureKind::$akind => $aname, )+
                }
            }
        }

        /// Why a span's run failed, as the failure ledger stores it: the last attempt's
        /// [`FailureKind`], or a failure before any backend was asked.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum LedgerKind {
            /// Every backend the cascade reached failed; the last attempt failed this way.
            Attempt(FailureKind),
            $( $(#[doc = $ldoc])* $lkind, )+
        }

        impl LedgerKind {
            /// The kinds only the ledger records (no attempt fails with them), in declaration
            /// order.
            pub const LEDGER_ONLY: [LedgerKind; [$($lname),+].len()] =
                [$(LedgerKind::$lkind),+];

            /// The stable snake_case name stored in the ledger's `last_failure_kind`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    LedgerKind::Attempt(kind) => kind.as_str(),
                    $( LedgerKind::$lkind => $lname, )+
                }
            }
        }
    };
}

failure_kinds! {
    attempt: {
        /// The backend could not be reached: connection refused or reset, DNS failure.
        Connect = "connect",
        /// No answer within the backend's timeout.
        Timeout = "timeout",
        /// The backend is busy (Ollama 503 "server busy", HTTP 429); may carry a retry-after.
        Overloaded = "overloaded",
        /// Any other 5xx answer.
        ServerError = "server_error",
        /// The backend does not have the model (Ollama 404).
        ModelNotFound = "model_not_found",
        /// The prompt does not fit the model's context (400 "input length exceeds the context
        /// length").
        ContextExceeded = "context_exceeded",
        /// The backend refused the credentials (401, 403).
        Auth = "auth",
        /// The output stopped at the token limit (`done_reason == "length"`).
        Truncated = "truncated",
        /// The output holds no JSON object.
        MalformedOutput = "malformed_output",
        /// The output's JSON object fails enrichment.v1 validation.
        SchemaInvalid = "schema_invalid",
        /// The run is shutting down (or the backend cancelled the request): write nothing.
        Cancelled = "cancelled",
        /// Any other 4xx answer: the request itself is wrong.
        InvalidRequest = "invalid_request",
        /// The answer is larger than the backend's `max_response_bytes`: it was not read
        /// further. The span's own failure, not an outage.
        ResponseTooLarge = "response_too_large",
        /// The output passed enrichment.v1 but the quality gate rejected it (a placeholder
        /// summary, an echo of the prompt, names that do not occur in the source, ...).
        QualityRejected = "quality_rejected",
    }
    ledger_only: {
        /// The span's source cannot be read (missing file, a path leaving the repository, a
        /// byte range beyond the file's end).
        SourceUnreadable = "source_unreadable",
        /// No chain can serve the span (a router built from another configuration than the
        /// pipeline's).
        NoRoute = "no_route",
        /// The span was not sent because it holds a secret (`[enrichment.secrets] action =
        /// "skip"`).
        SecretDetected = "secret_detected",
    }
}

impl FailureKind {
    /// The kind with this stored name, if any (the inverse of [`FailureKind::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The position of this kind in [`FailureKind::ALL`], for tables indexed by kind.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LedgerKind {
    /// The kind with this stored name, if any (the inverse of [`LedgerKind::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        FailureKind::from_name(name)
            .map(LedgerKind::Attempt)
            .or_else(|| {
                Self::LEDGER_ONLY
                    .into_iter()
                    .find(|kind| kind.as_str() == name)
            })
    }

    /// True for the kinds only the ledger records ([`LedgerKind::LEDGER_ONLY`]).
    pub const fn is_ledger_only(self) -> bool {
        !matches!(self, LedgerKind::Attempt(_))
    }
}

impl From<FailureKind> for LedgerKind {
    fn from(kind: FailureKind) -> Self {
        LedgerKind::Attempt(kind)
    }
}

impl fmt::Display for LedgerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LedgerKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LedgerKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        LedgerKind::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown failure kind `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_never_change() {
        let attempt: Vec<&str> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            attempt,
            [
                "connect",
                "timeout",
                "overloaded",
                "server_error",
                "model_not_found",
                "context_exceeded",
                "auth",
                "truncated",
                "malformed_output",
                "schema_invalid",
                "cancelled",
                "invalid_request",
                "response_too_large",
                "quality_rejected",
            ]
        );
        let ledger: Vec<&str> = LedgerKind::LEDGER_ONLY.iter().map(|k| k.as_str()).collect();
        assert_eq!(ledger, ["source_unreadable", "no_route", "secret_detected"]);
    }

    #[test]
    fn names_round_trip_through_as_str_serde_and_from_name() {
        for kind in FailureKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<FailureKind>(&json).unwrap(), kind);
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(FailureKind::from_name(kind.as_str()), Some(kind));
            assert_eq!(FailureKind::ALL[kind.index()], kind);
            let ledger = LedgerKind::from(kind);
            assert!(!ledger.is_ledger_only());
            assert_eq!(ledger.as_str(), kind.as_str());
            assert_eq!(LedgerKind::from_name(kind.as_str()), Some(ledger));
        }
        for kind in LedgerKind::LEDGER_ONLY {
            assert!(kind.is_ledger_only());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<LedgerKind>(&json).unwrap(), kind);
            assert_eq!(LedgerKind::from_name(kind.as_str()), Some(kind));
            assert_eq!(FailureKind::from_name(kind.as_str()), None);
        }
        assert_eq!(FailureKind::from_name("busy"), None);
        assert_eq!(LedgerKind::from_name("busy"), None);
    }
}
