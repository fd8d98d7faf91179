//! Helpers shared by the test modules.

use std::path::Path;

use enrich_config::{ConfigError, LoadedConfig, load};
use figment::Jail;

/// Runs `f` in a jail with an empty environment and the jail directory as the current directory.
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail's closure must return figment::Error"
)]
pub(crate) fn jail(f: impl FnOnce(&mut Jail) -> Result<(), String>) {
    Jail::expect_with(|jail| {
        jail.clear_env();
        f(jail).map_err(figment::Error::from)
    });
}

/// Writes `name` in the jail directory.
pub(crate) fn write(jail: &Jail, name: &str, contents: &str) -> Result<(), String> {
    jail.create_file(name, contents)
        .map(drop)
        .map_err(|e| format!("cannot write {name}: {e}"))
}

/// Loads the configuration of the repository at the jail directory.
pub(crate) fn load_repo(jail: &Jail) -> Result<LoadedConfig, String> {
    load(jail.directory(), None).map_err(|e| format!("load failed: {e}"))
}

/// The error message of a load that must fail.
pub(crate) fn load_error(jail: &Jail) -> Result<String, String> {
    load_error_with(jail.directory(), None)
}

/// The error message of a load with an explicit path that must fail.
pub(crate) fn load_error_with(root: &Path, explicit: Option<&Path>) -> Result<String, String> {
    match load(root, explicit) {
        Ok(loaded) => Err(format!("expected an error, loaded {:?}", loaded.config)),
        Err(e) => Ok(message(&e)),
    }
}

/// An error's message; the `Display` must not end with a period or start with a capital.
pub(crate) fn message(error: &ConfigError) -> String {
    let text = error.to_string();
    assert!(!text.ends_with('.'), "message ends with a period: {text}");
    assert!(
        text.starts_with(|c: char| !c.is_uppercase()) || text.starts_with("ENRICH_"),
        "message starts with a capital: {text}"
    );
    text
}

/// Fails with both values when they differ (a `Result` so it works inside jails).
pub(crate) fn same<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: T,
    want: T,
) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

/// The (chain, name) pairs of a config's backends, in order.
pub(crate) fn entries(loaded: &LoadedConfig) -> Vec<(String, String)> {
    loaded
        .config
        .backends
        .iter()
        .map(|b| (b.chain.clone(), b.name.clone()))
        .collect()
}

/// Owned (chain, name) pairs.
pub(crate) fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(c, n)| ((*c).to_owned(), (*n).to_owned()))
        .collect()
}
