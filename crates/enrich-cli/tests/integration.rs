//! The command line itself: what `enrich` does with arguments it cannot use, before it touches a
//! repository. The commands' behaviour against a real index and a fake Ollama server is tested
//! in the workspace's `tests` package (`tests/tests/cli`), which runs this binary too; this
//! test target also makes every workspace test run build the binary (Cargo builds a package's
//! binaries for its integration tests).

use std::process::{Command, Output};

fn enrich(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_enrich"))
        .env_clear()
        .current_dir(dir.path())
        .args(args)
        .output()
        .expect("run enrich")
}

#[test]
fn argument_mistakes_exit_with_code_2_and_say_what_is_wrong() {
    let cases: [(&[&str], &str); 4] = [
        (&["frobnicate"], "unrecognized subcommand"),
        (&["run", "--concurrency", "0"], "--concurrency"),
        (
            &["failures", "--requeue", "sha256:ab", "--requeue-all"],
            "cannot be used with",
        ),
        (
            &["--repo", "/nonexistent/enrich-repo", "status"],
            "is not a directory",
        ),
    ];
    for (args, needle) in cases {
        let out = enrich(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed a result");
    }
}

#[test]
fn help_lists_every_command() {
    let out = enrich(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "index", "run", "plan", "status", "doctor", "config", "show", "failures", "init", "watch",
    ] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(command)),
            "{command} is missing from --help:\n{help}"
        );
    }
}
