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
        "index",
        "run",
        "plan",
        "status",
        "doctor",
        "config",
        "show",
        "failures",
        "init",
        "watch",
        "completions",
    ] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(command)),
            "{command} is missing from --help:\n{help}"
        );
    }
}

/// The commands `enrich --help` lists, `help` left out.
fn commands() -> Vec<String> {
    let out = enrich(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    let (_, listed) = help
        .split_once("\nCommands:\n")
        .expect("a Commands section");
    let commands: Vec<String> = listed
        .lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(commands.len() >= 10, "{help}");
    commands
}

#[test]
fn completions_of_every_shell_name_every_command_and_no_hidden_one() {
    let commands = commands();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = enrich(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}: {script}");
        assert!(script.len() > 1000, "{shell}: {script}");
        let flags = ["max-wall-seconds", "requeue-all", "json"];
        for needle in commands.iter().map(String::as_str).chain(flags) {
            assert!(script.contains(needle), "{shell} completions lack {needle}");
        }
        assert!(
            !script.contains("__man"),
            "{shell} completions offer a hidden command"
        );
    }
    let out = enrich(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[test]
fn the_man_pages_are_enrich_1_and_one_page_per_command_with_examples() {
    let commands = commands();
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("man");
    let out = enrich(&["__man", "--out", out_dir.to_str().unwrap()]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listed.lines().count(), commands.len() + 1, "{listed}");

    let top = std::fs::read_to_string(out_dir.join("enrich.1")).expect("enrich.1");
    assert!(top.contains(".TH enrich 1 "), "{top}");
    for section in [
        "SYNOPSIS",
        "SUBCOMMANDS",
        "EXAMPLES",
        "EXIT STATUS",
        "VERSION",
    ] {
        assert!(top.contains(section), "enrich.1 has no {section}");
    }
    for code in ["\\fB2\\fR", "\\fB3\\fR", "\\fB130\\fR"] {
        assert!(top.contains(code), "enrich.1 lacks exit code {code}");
    }
    for command in &commands {
        assert!(
            top.contains(&format!("enrich\\-{command}(1)")),
            "enrich.1 does not list {command}"
        );
        let name = format!("enrich-{command}.1");
        assert!(listed.contains(&name), "{name} not listed: {listed}");
        let page = std::fs::read_to_string(out_dir.join(&name)).expect(&name);
        assert!(
            page.contains(&format!(".TH enrich-{command} 1")),
            "{name}: {page}"
        );
        assert!(page.contains(".SH EXAMPLES"), "{name} has no examples");
        assert!(
            page.contains(&format!("\\fBenrich {command}")),
            "{name}: {page}"
        );
        assert!(
            page.contains("\\fBenrich\\fR(1)"),
            "{name} does not point to enrich(1)"
        );
    }
    assert!(!out_dir.join("enrich-__man.1").exists());
    assert!(!out_dir.join("enrich-help.1").exists());
}

#[test]
fn config_schema_prints_the_schema_of_enrich_toml_without_reading_any_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("enrich.toml"),
        "[enrichment]\nbatch_size = \"lots\"\n",
    )
    .expect("write enrich.toml");
    let repo = dir.path().to_str().unwrap();
    let out = enrich(&["--repo", repo, "config", "--schema"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(printed, enrich_config::config_file_schema());
    assert_eq!(printed["title"], "enrich.toml");
    assert!(printed["properties"]["enrichment"]["properties"]["batch_size"].is_object());
    // The same file is refused by the commands that read it.
    let out = enrich(&["--repo", repo, "config"]);
    assert_eq!(out.status.code(), Some(2));
}
