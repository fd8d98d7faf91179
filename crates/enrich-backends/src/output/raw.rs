//! The lenient first reading of a candidate object, straight from the JSON text.
//!
//! A hand-written `Deserialize` so that one `serde_json::from_str` pass both accepts the shapes
//! small models produce (a string where a list belongs, `null` lists, single-number evidence
//! lines) and names the field in every type error, which then reads well in a corrective
//! re-ask. Unknown keys are skipped without building values.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A top-level key of enrichment.v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Summary,
    Inputs,
    Outputs,
    SideEffects,
    Pitfalls,
    UsageSnippet,
    Evidence,
}

impl Field {
    /// The fields evidence may cite, in schema order.
    pub(super) const CITABLE: [Field; 6] = [
        Field::Summary,
        Field::Inputs,
        Field::Outputs,
        Field::SideEffects,
        Field::Pitfalls,
        Field::UsageSnippet,
    ];

    pub(super) const fn name(self) -> &'static str {
        match self {
            Field::Summary => "summary_120w",
            Field::Inputs => "inputs",
            Field::Outputs => "outputs",
            Field::SideEffects => "side_effects",
            Field::Pitfalls => "pitfalls",
            Field::UsageSnippet => "usage_snippet",
            Field::Evidence => "evidence",
        }
    }

    /// What an item of this list field must be, for errors.
    const fn item_expected(self) -> &'static str {
        match self {
            Field::Inputs => "a string for each item of `inputs`",
            Field::Outputs => "a string for each item of `outputs`",
            Field::SideEffects => "a string for each item of `side_effects`",
            Field::Pitfalls => "a string for each item of `pitfalls`",
            Field::Summary | Field::UsageSnippet | Field::Evidence => "a string",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "summary_120w" => Field::Summary,
            "inputs" => Field::Inputs,
            "outputs" => Field::Outputs,
            "side_effects" => Field::SideEffects,
            "pitfalls" => Field::Pitfalls,
            "usage_snippet" => Field::UsageSnippet,
            "evidence" => Field::Evidence,
            _ => return None,
        })
    }
}

/// A candidate object as read, before normalisation and validation.
#[derive(Debug, Default)]
pub(super) struct RawEnrichment {
    pub(super) summary: Option<String>,
    pub(super) inputs: Vec<String>,
    pub(super) outputs: Vec<String>,
    pub(super) side_effects: Vec<String>,
    pub(super) pitfalls: Vec<String>,
    pub(super) usage_snippet: Option<String>,
    pub(super) evidence: Vec<RawEvidence>,
    /// Whether the object had at least one enrichment.v1 key (chatter objects have none).
    pub(super) has_known_key: bool,
}

/// An evidence entry as read: lines are `[start, end]` after `n`, `[n]` or `"a-b"` were widened.
#[derive(Debug)]
pub(super) struct RawEvidence {
    pub(super) field: String,
    pub(super) lines: [u64; 2],
}

impl<'de> de::Deserialize<'de> for RawEnrichment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnrichmentVisitor)
    }
}

struct EnrichmentVisitor;

impl<'de> Visitor<'de> for EnrichmentVisitor {
    type Value = RawEnrichment;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an enrichment.v1 JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEnrichment, A::Error> {
        let mut raw = RawEnrichment::default();
        while let Some(TopKey(field)) = map.next_key()? {
            let Some(field) = field else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            raw.has_known_key = true;
            match field {
                Field::Summary => {
                    raw.summary = map.next_value_seed(OptString("a string for `summary_120w`"))?;
                }
                Field::Inputs => raw.inputs = map.next_value_seed(StringList(field))?,
                Field::Outputs => raw.outputs = map.next_value_seed(StringList(field))?,
                Field::SideEffects => raw.side_effects = map.next_value_seed(StringList(field))?,
                Field::Pitfalls => raw.pitfalls = map.next_value_seed(StringList(field))?,
                Field::UsageSnippet => raw.usage_snippet = map.next_value_seed(Snippet)?,
                Field::Evidence => raw.evidence = map.next_value_seed(EvidenceList)?,
            }
        }
        Ok(raw)
    }
}

/// A top-level key: a known field or something to skip.
struct TopKey(Option<Field>);

impl<'de> de::Deserialize<'de> for TopKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = TopKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<TopKey, E> {
                Ok(TopKey(Field::from_name(key)))
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A string or `null`; holds what is expected, naming the field, for errors.
struct OptString(&'static str);

impl<'de> DeserializeSeed<'de> for OptString {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for OptString {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A list of strings, also accepting one string (a one-item list) and `null` (empty); `null`
/// items are dropped.
struct StringList(Field);

impl<'de> DeserializeSeed<'de> for StringList {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StringList {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of strings for `{}`", self.0.name())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(vec![v.to_owned()])
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(vec![v])
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(value) = seq.next_element_seed(OptString(self.0.item_expected()))? {
            items.extend(value);
        }
        Ok(items)
    }
}

/// `usage_snippet`: a string or `null`; a list of lines is joined with newlines.
struct Snippet;

impl<'de> DeserializeSeed<'de> for Snippet {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Snippet {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null for `usage_snippet`")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut joined = String::new();
        while let Some(line) =
            seq.next_element_seed(OptString("a string for each line of `usage_snippet`"))?
        {
            if !joined.is_empty() {
                joined.push('\n');
            }
            joined.push_str(line.as_deref().unwrap_or_default());
        }
        Ok(Some(joined))
    }
}

/// `evidence`: a list of entries, one entry on its own, or `null`.
struct EvidenceList;

impl<'de> DeserializeSeed<'de> for EvidenceList {
    type Value = Vec<RawEvidence>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EvidenceList {
    type Value = Vec<RawEvidence>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a list of {"field": ..., "lines": [start, end]} objects for `evidence`"#)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(6));
        while let Some(entry) = seq.next_element_seed(EvidenceEntry)? {
            entries.push(entry);
        }
        Ok(entries)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        EvidenceEntry.visit_map(map).map(|entry| vec![entry])
    }
}

/// One evidence entry: `{"field": "inputs", "lines": [start, end]}`.
struct EvidenceEntry;

impl<'de> DeserializeSeed<'de> for EvidenceEntry {
    type Value = RawEvidence;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EvidenceEntry {
    type Value = RawEvidence;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an evidence entry {"field": ..., "lines": [start, end]}"#)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut field = None;
        let mut lines = None;
        while let Some(key) = map.next_key::<EvidenceKey>()? {
            match key {
                EvidenceKey::Field => {
                    field = map.next_value_seed(OptString("a string for evidence `field`"))?
                }
                EvidenceKey::Lines => lines = Some(map.next_value_seed(Lines)?),
                EvidenceKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let field = field.ok_or_else(|| {
            de::Error::custom(
                r#"an evidence entry has no `field`; write each entry as {"field": "<key>", "lines": [start, end]}"#,
            )
        })?;
        let lines = lines.ok_or_else(|| {
            de::Error::custom(format!(
                "the evidence entry for `{field}` has no `lines`; give them as [start, end]"
            ))
        })?;
        Ok(RawEvidence { field, lines })
    }
}

enum EvidenceKey {
    Field,
    Lines,
    Other,
}

impl<'de> de::Deserialize<'de> for EvidenceKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = EvidenceKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<EvidenceKey, E> {
                Ok(match key {
                    "field" => EvidenceKey::Field,
                    "lines" => EvidenceKey::Lines,
                    _ => EvidenceKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// Evidence lines: `[start, end]`, `[n]`, `n`, `"n"` or `"start-end"`.
struct Lines;

const LINES_EXPECTED: &str = "evidence `lines` as [start, end] with 1-based line numbers";

impl<'de> DeserializeSeed<'de> for Lines {
    type Value = [u64; 2];
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Lines {
    type Value = [u64; 2];
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(LINES_EXPECTED)
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok([n, n])
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        u64::try_from(n)
            .map(|n| [n, n])
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &LINES_EXPECTED))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let number = |s: &str| s.trim().parse::<u64>().ok();
        let parsed = match v.split_once('-') {
            Some((a, b)) => number(a).zip(number(b)).map(|(a, b)| [a, b]),
            None => number(v).map(|n| [n, n]),
        };
        parsed.ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &LINES_EXPECTED))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Some(start) = seq.next_element_seed(LineNumber)? else {
            return Err(de::Error::invalid_length(0, &LINES_EXPECTED));
        };
        let Some(end) = seq.next_element_seed(LineNumber)? else {
            return Ok([start, start]);
        };
        let mut len = 2;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            len += 1;
        }
        if len > 2 {
            return Err(de::Error::invalid_length(len, &LINES_EXPECTED));
        }
        Ok([start, end])
    }
}

/// One line number inside `lines`.
struct LineNumber;

impl<'de> DeserializeSeed<'de> for LineNumber {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_u64(self)
    }
}

impl Visitor<'_> for LineNumber {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(LINES_EXPECTED)
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(n)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        u64::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &LINES_EXPECTED))
    }
}
