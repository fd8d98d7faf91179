//! The command line's options: `--name value` pairs, taken by name, leftovers refused.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};

/// The options of one command, each `--name value`.
#[derive(Debug, Default)]
pub(crate) struct Args {
    values: BTreeMap<String, String>,
}

impl Args {
    /// Reads `--name value` pairs; every option takes a value and may appear once.
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut values = BTreeMap::new();
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            let Some(name) = flag.strip_prefix("--") else {
                bail!("unexpected argument `{flag}`: options are written `--name value`");
            };
            let value = rest
                .next()
                .with_context(|| format!("option `{flag}` needs a value"))?;
            if values.insert(name.to_owned(), value.clone()).is_some() {
                bail!("option `{flag}` is given twice");
            }
        }
        Ok(Self { values })
    }

    /// The value of `--name` parsed as `T`, if given.
    pub(crate) fn take<T: FromStr>(&mut self, name: &str) -> Result<Option<T>> {
        let Some(text) = self.values.remove(name) else {
            return Ok(None);
        };
        text.parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("option `--{name}` cannot be `{text}`"))
    }

    /// The value of `--name` parsed as a whole number of at least 1, else `default`.
    pub(crate) fn count(&mut self, name: &str, default: u64) -> Result<u64> {
        let n = self.take(name)?.unwrap_or(default);
        if n == 0 {
            bail!("option `--{name}` must be at least 1");
        }
        Ok(n)
    }

    /// The value of `--name` as a path, which must be given.
    pub(crate) fn path(&mut self, name: &str) -> Result<PathBuf> {
        self.take(name)?
            .with_context(|| format!("option `--{name} PATH` is required"))
    }

    /// Fails on the options no one took.
    pub(crate) fn finish(self, command: &str) -> Result<()> {
        if let Some(name) = self.values.keys().next() {
            bail!("`{command}` has no option `--{name}` (see `enrich-bench help`)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args> {
        Args::parse(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options_are_taken_by_name_and_leftovers_refused() {
        let mut args = parse(&["--spans", "20", "--out", "/tmp/x"]).unwrap();
        assert_eq!(args.count("spans", 1).unwrap(), 20);
        assert_eq!(args.count("iterations", 7).unwrap(), 7);
        assert_eq!(args.path("out").unwrap(), PathBuf::from("/tmp/x"));
        args.finish("gen-db").unwrap();

        let args = parse(&["--bogus", "1"]).unwrap();
        let err = args.finish("gen-db").unwrap_err().to_string();
        assert_eq!(
            err,
            "`gen-db` has no option `--bogus` (see `enrich-bench help`)"
        );
        for (argv, message) in [
            (&["spans"][..], "unexpected argument `spans`"),
            (&["--spans"][..], "option `--spans` needs a value"),
            (&["--a", "1", "--a", "2"][..], "option `--a` is given twice"),
        ] {
            let err = parse(argv).unwrap_err().to_string();
            assert!(err.starts_with(message), "{err}");
        }
        let mut args = parse(&["--spans", "0", "--n", "x"]).unwrap();
        assert_eq!(
            args.count("spans", 1).unwrap_err().to_string(),
            "option `--spans` must be at least 1"
        );
        assert_eq!(
            args.count("n", 1).unwrap_err().to_string(),
            "option `--n` cannot be `x`"
        );
    }
}
