//! Ages written on the command line (`90m`, `24h`, `7d`, `2w`): one reading for every flag and
//! selector that takes one.

/// Reads an age: a whole number above 0 followed by a unit, `s`, `m` (minutes), `h`, `d` or
/// `w`; the number of seconds. The error says what is wrong, for a message that quotes the
/// text.
pub fn parse_age(text: &str) -> Result<u64, String> {
    let age = text.trim();
    let unit_at = age
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("the age has no unit; write it as 30d, 12h, 90m or 2w")?;
    let (number, unit) = age.split_at(unit_at);
    let number: u64 = number
        .parse()
        .map_err(|_| "the age must start with a whole number, as in 30d")?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "unknown unit {other:?}; the units are s, m (minutes), h, d and w"
            ));
        }
    };
    if number == 0 {
        return Err("the age must be more than 0".to_owned());
    }
    number
        .checked_mul(unit_seconds)
        .ok_or_else(|| "the age is too large".to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn an_age_is_a_whole_number_and_a_unit() {
        assert_eq!(parse_age("15s"), Ok(15));
        assert_eq!(parse_age("90m"), Ok(5400));
        assert_eq!(parse_age(" 24h "), Ok(86_400));
        assert_eq!(parse_age("7d"), Ok(604_800));
        assert_eq!(parse_age("2w"), Ok(1_209_600));
        for (wrong, says) in [
            ("", "no unit"),
            ("7", "no unit"),
            ("d", "whole number"),
            ("1.5h", "unknown unit"),
            ("-1d", "whole number"),
            ("7y", "unknown unit \"y\""),
            ("0d", "more than 0"),
            ("99999999999999999999d", "whole number"),
            ("9999999999999999w", "too large"),
        ] {
            let error = parse_age(wrong).expect_err(wrong);
            assert!(error.contains(says), "{wrong:?}: {error}");
        }
    }
}
