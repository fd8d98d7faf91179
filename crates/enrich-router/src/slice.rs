//! What the router sees of a span, and the normalisation of its slice type.

use std::borrow::Cow;

use enrich_types::SpanIdentity;

/// The slice type of a span whose type is missing or blank.
pub const UNKNOWN_SLICE_TYPE: &str = "unknown";

/// What the router sees of one pending span.
///
/// It borrows from the pipeline's span, so building one per span costs nothing. Only
/// `slice_type` steers the routing today; the other fields identify the span and carry the hints
/// (size, confidence, importance) a routing rule may use, and end up in logs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SliceView<'a> {
    /// Which span this is, when the caller knows (routing never depends on it).
    pub span: Option<&'a SpanIdentity>,
    /// The slice type as stored in the index (`spans.slice_type`), not normalised; may be missing
    /// or blank.
    pub slice_type: Option<&'a str>,
    /// The content language as stored in the index (`spans.slice_language`).
    pub slice_language: Option<&'a str>,
    /// How sure the classifier was of `slice_type`, from 0.0 to 1.0.
    pub classifier_confidence: Option<f64>,
    /// An estimate of the span's size in tokens.
    pub approx_tokens: u32,
    /// A priority hint: higher is more important; `None` is normal.
    pub importance: Option<u8>,
}

/// Normalises a slice type as LLMC does: trimmed and lowercased; missing or blank becomes
/// [`UNKNOWN_SLICE_TYPE`]; language names become `code` (`python`, `javascript`, `typescript`,
/// `java`, `rust`, `go`, `c`, `cpp`, `c++`), prose formats become `docs` (`markdown`, `md`, `rst`,
/// `text`, `txt`, `documentation`), `erp` and `product` become `erp_product`, `plan` and
/// `planning` become `project_plan`; any other type is kept (`code`, `docs`, `config`, `test`, …).
///
/// Borrows when it can: an already normalised type costs no allocation.
pub fn normalize_slice_type(raw: Option<&str>) -> Cow<'_, str> {
    let trimmed = raw.unwrap_or_default().trim();
    if trimmed.is_empty() {
        return Cow::Borrowed(UNKNOWN_SLICE_TYPE);
    }
    let lowered = if trimmed.is_ascii() && !trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Borrowed(trimmed)
    } else {
        Cow::Owned(trimmed.to_lowercase())
    };
    match alias(&lowered) {
        Some(canonical) => Cow::Borrowed(canonical),
        None => lowered,
    }
}

/// The canonical type an alias stands for; `None` for a type that is not an alias.
fn alias(lowered: &str) -> Option<&'static str> {
    Some(match lowered {
        "python" | "javascript" | "typescript" | "java" | "rust" | "go" | "c" | "cpp" | "c++" => {
            "code"
        }
        "markdown" | "md" | "rst" | "text" | "txt" | "documentation" => "docs",
        "erp" | "product" => "erp_product",
        "plan" | "planning" => "project_plan",
        _ => return None,
    })
}
