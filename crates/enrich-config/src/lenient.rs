//! Lenient scalar deserializers.
//!
//! LLMC's Python loader coerces every value with `str()`, `int()` or a truthy-string test, so
//! real configs contain `model = 7`, `batch_size = "50"` or `enabled = "yes"`, and environment
//! variables are always text. These newtypes accept those spellings and reject anything else
//! with a message that shows the value and the expected form.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Free text that also accepts numbers (`model = 7` is the tag `"7"`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Text(pub(crate) String);

impl Text {
    /// The trimmed text, or `None` when it is blank.
    pub(crate) fn non_blank(&self) -> Option<String> {
        let text = self.0.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl Visitor<'_> for TextVisitor {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}

/// A yes/no switch: a boolean, `0`/`1`, or one of `true false yes no on off` in any case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Flag(pub(crate) bool);

/// The expected spellings of a [`Flag`], for error messages.
pub(crate) const FLAG_SPELLINGS: &str = "true/false, 1/0, yes/no or on/off";

/// The spellings of a switch that is on, in lower case.
pub(crate) const TRUE_SPELLINGS: &[&str] = &["1", "true", "yes", "on"];
/// The spellings of a switch that is off, in lower case.
pub(crate) const FALSE_SPELLINGS: &[&str] = &["0", "false", "no", "off"];

/// Parses a switch the way LLMC reads `ENRICH_ENFORCE_LATIN1` and friends.
pub(crate) fn parse_flag(text: &str) -> Option<bool> {
    let text = text.trim().to_ascii_lowercase();
    if TRUE_SPELLINGS.contains(&text.as_str()) {
        Some(true)
    } else if FALSE_SPELLINGS.contains(&text.as_str()) {
        Some(false)
    } else {
        None
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagVisitor;

        impl Visitor<'_> for FlagVisitor {
            type Value = Flag;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(FLAG_SPELLINGS)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
                match v {
                    0 => Ok(Flag(false)),
                    1 => Ok(Flag(true)),
                    _ => Err(E::custom(format!("{v} (expected {FLAG_SPELLINGS})"))),
                }
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
                match v {
                    0 => Ok(Flag(false)),
                    1 => Ok(Flag(true)),
                    _ => Err(E::custom(format!("{v} (expected {FLAG_SPELLINGS})"))),
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                parse_flag(v)
                    .map(Flag)
                    .ok_or_else(|| E::custom(format!("{v:?} (expected {FLAG_SPELLINGS})")))
            }
        }

        deserializer.deserialize_any(FlagVisitor)
    }
}

/// A whole number that also accepts numeric text (`"50"`) and integral floats (`50.0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Whole<T>(pub(crate) T);

impl<'de, T: TryFrom<u64>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WholeVisitor<T>(PhantomData<T>);

        impl<T: TryFrom<u64>> Visitor<'_> for WholeVisitor<T> {
            type Value = Whole<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole<T>, E> {
                T::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::custom(format!("{v} (expected a smaller whole number)")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole<T>, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "{v} (expected a whole number, not negative)"
                    ))),
                }
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole<T>, E> {
                // Exactly representable integral values only; `as` cannot truncate here.
                if v.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&v) {
                    self.visit_u64(v as u64)
                } else {
                    Err(E::custom(format!("{v} (expected a whole number)")))
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Whole<T>, E> {
                match v.trim().parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("{v:?} (expected a whole number)"))),
                }
            }
        }

        deserializer.deserialize_any(WholeVisitor(PhantomData))
    }
}

/// What a [`Real`] number stands for, as said in its error messages.
pub(crate) trait Unit {
    /// The expected form, e.g. "a number of seconds".
    const EXPECTED: &'static str;
}

/// Seconds (`timeout_seconds = 120`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SecondsUnit;

impl Unit for SecondsUnit {
    const EXPECTED: &'static str = "a number of seconds";
}

/// A plain number (a price, a cost budget).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PlainUnit;

impl Unit for PlainUnit {
    const EXPECTED: &'static str = "a number";
}

/// A number that also accepts numeric text (`"120"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Real<U>(pub(crate) f64, PhantomData<U>);

/// A number of seconds.
pub(crate) type Seconds = Real<SecondsUnit>;
/// A plain number.
pub(crate) type Number = Real<PlainUnit>;

impl<'de, U: Unit> Deserialize<'de> for Real<U> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RealVisitor<U>(PhantomData<U>);

        impl<U: Unit> Visitor<'_> for RealVisitor<U> {
            type Value = Real<U>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(U::EXPECTED)
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Real<U>, E> {
                Ok(Real(v, PhantomData))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Real<U>, E> {
                Ok(Real(v as f64, PhantomData))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Real<U>, E> {
                Ok(Real(v as f64, PhantomData))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Real<U>, E> {
                v.trim()
                    .parse::<f64>()
                    .map(|v| Real(v, PhantomData))
                    .map_err(|_| E::custom(format!("{v:?} (expected {})", U::EXPECTED)))
            }
        }

        deserializer.deserialize_any(RealVisitor(PhantomData))
    }
}

/// One string or a list of strings (`urls = "http://a"` or `urls = ["http://a", "http://b"]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct TextList(pub(crate) Vec<Text>);

impl<'de> Deserialize<'de> for TextList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;

        impl<'de> Visitor<'de> for ListVisitor {
            type Value = TextList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<TextList, E> {
                Ok(TextList(vec![Text(v.to_owned())]))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<TextList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Text>()? {
                    items.push(item);
                }
                Ok(TextList(items))
            }
        }

        deserializer.deserialize_any(ListVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(value: serde_json::Value) -> Result<u32, String> {
        serde_json::from_value::<Whole<u32>>(value)
            .map(|w| w.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_accept_llmc_spellings_and_reject_the_rest() {
        use serde_json::json;
        assert_eq!(whole(json!(5)), Ok(5));
        assert_eq!(whole(json!("50")), Ok(50));
        assert_eq!(whole(json!(" 7 ")), Ok(7));
        assert_eq!(whole(json!(3.0)), Ok(3));
        for (bad, message) in [
            (json!(-1), "-1 (expected a whole number, not negative)"),
            (json!(2.5), "2.5 (expected a whole number)"),
            (json!("ten"), "\"ten\" (expected a whole number)"),
            (
                json!(5_000_000_000u64),
                "5000000000 (expected a smaller whole number)",
            ),
        ] {
            assert_eq!(whole(bad), Err(message.to_owned()));
        }
    }

    #[test]
    fn flags_accept_every_llmc_spelling() {
        for (text, expected) in [
            ("1", Some(true)),
            ("TRUE", Some(true)),
            (" yes ", Some(true)),
            ("on", Some(true)),
            ("0", Some(false)),
            ("False", Some(false)),
            ("no", Some(false)),
            ("OFF", Some(false)),
            ("maybe", None),
            ("", None),
        ] {
            assert_eq!(parse_flag(text), expected, "{text:?}");
        }
    }
}
