//! `cargo xtask bench`: how much the pipeline costs, and whether it keeps every backend slot busy.
//!
//! Builds the release binaries `enrich`, `fake-ollama`, `ollama-load` and `enrich-bench`, then
//! runs each scenario `--runs` times (default 3) and reports the median:
//!
//! 1. **overhead** — `enrich-bench overhead`: the full pipeline with an instant in-process
//!    backend over a synthetic index, spans/s;
//! 2. **http** — `enrich run` against `fake-ollama` at 0 ms latency: spans/s as a fraction of
//!    the fake server's own request rate, which `ollama-load` (a bare hyper client, as many
//!    connections as slots) measures by sending the same server request bodies captured from a
//!    real run; also the rate through reqwest alone (`ollama-load --client reqwest`, the HTTP
//!    client enrich uses, without its pipeline) and the CPU time of `enrich` and of the fake
//!    per request;
//! 3. **latency** — `fake-ollama` at 200 ms with 4 slots and `max_in_flight = 4`: spans/s as a
//!    fraction of 4 / 0.2 s; then two such servers as one backend's host pool (`urls`), against
//!    40 spans/s (reported "n/a" when the second server gets no request: no host pools);
//! 4. **failure** — a chain whose first backend refuses connections: spans/s against the
//!    healthy case of 3;
//! 5. **scale** — a 1,000,000-span index (`enrich-bench gen-db`): time to select the next
//!    batch (`enrich-bench select-batch`, fresh and after a 100,000-span run), `enrich status`,
//!    and the peak RSS (`VmHWM`) of `enrich run` over 100,000 spans;
//! 6. **huge answers** — a chain whose first backend (`fake-ollama --fault-rate oversized=1`)
//!    answers every span with 100 MB, at concurrency 4: the peak RSS of `enrich run` (each
//!    answer fails at `max_response_bytes` and the second backend enriches the span).
//!
//! Prints one table (scenario, measured, target, met?) and writes it with the samples and the
//! machine (`available_parallelism`, the CPU model, the load average) to
//! `target/bench/<unix-ts>.json` and `target/bench/latest.json` (under `CARGO_TARGET_DIR` when
//! set). `--quick` runs every scenario once at small sizes. `--smoke` runs every scenario once at
//! tiny sizes with debug binaries and judges no target: it checks that every scenario still
//! runs (`cargo xtask ci` does it), writes `target/bench/smoke.json` only, and fails when a
//! scenario cannot be measured. Working files go to `target/bench/work` (`smoke-work` for a smoke
//! run), removed first.
//!
//! Like the rest of xtask it links no product crate: it drives the binaries as processes,
//! reads the fake server's counters over a bare HTTP/1.1 request and the processes' memory and
//! CPU time from `/proc`.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// The model name the fake servers serve and the configs ask for.
const MODEL: &str = "bench:latest";
/// Requests each fake server runs at once (`--slots`), and each backend host's `max_in_flight`.
const SLOTS: u32 = 4;
/// The fake servers' latency in the latency-bound scenarios.
const LATENCY_MS: u32 = 200;
/// Spans in flight in the pipeline per backend host: twice the slots, so a slot that frees up
/// finds a span whose prompt is already built.
const CONCURRENCY_PER_HOST: u32 = 8;
/// Clock ticks per second of `/proc/<pid>/stat` times (Linux's fixed `USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;
/// Request bodies of a real `enrich run` that `ollama-load` sends in turn to measure the fake
/// server's own request rate.
const CAPTURED_BODIES: u64 = 256;
/// The share of the fake server's own request rate `enrich run` must reach to count as limited
/// by the server.
const HTTP_TARGET: f64 = 0.9;
/// The size of every answer of the huge-answers scenario's first backend.
const HUGE_ANSWER_BYTES: u64 = 100_000_000;
/// Spans in flight in the huge-answers scenario.
const HUGE_CONCURRENCY: u32 = 4;
/// How often a running `enrich run` is sampled for its peak RSS.
const RSS_POLL: Duration = Duration::from_millis(10);

/// How many spans each scenario uses.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    overhead: u64,
    http: u64,
    latency: u64,
    pool: u64,
    failure: u64,
    scale: u64,
    scale_run: u64,
    huge: u64,
}

impl Sizes {
    const FULL: Sizes = Sizes {
        overhead: 20_000,
        http: 20_000,
        latency: 400,
        pool: 800,
        failure: 400,
        scale: 1_000_000,
        scale_run: 100_000,
        huge: 200,
    };
    /// Enough for every scenario to do its work once; nothing to judge speed by.
    const SMOKE: Sizes = Sizes {
        overhead: 200,
        http: 200,
        latency: 8,
        pool: 16,
        failure: 8,
        scale: 2_000,
        scale_run: 200,
        huge: 8,
    };
    const QUICK: Sizes = Sizes {
        overhead: 2_000,
        http: 2_000,
        latency: 40,
        pool: 80,
        failure: 40,
        scale: 50_000,
        scale_run: 5_000,
        huge: 40,
    };

    fn to_json(self) -> Value {
        json!({
            "overhead": self.overhead,
            "http": self.http,
            "latency": self.latency,
            "pool": self.pool,
            "failure": self.failure,
            "scale": self.scale,
            "scale_run": self.scale_run,
            "huge": self.huge,
        })
    }
}

#[derive(Debug)]
struct Options {
    runs: usize,
    quick: bool,
    /// Debug binaries, tiny sizes, no target judged: does every scenario still run?
    smoke: bool,
}

const BENCH_USAGE: &str = "usage: cargo xtask bench [--runs N] [--quick | --smoke]";

fn parse_args(args: &[String]) -> Result<Options> {
    let mut runs = None;
    let mut quick = false;
    let mut smoke = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--smoke" => smoke = true,
            "--runs" => {
                let n = it.next().context("--runs needs a number")?;
                let n: usize = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("--runs takes a whole number ≥ 1, not `{n}`"))?;
                runs = Some(n);
            }
            other => {
                bail!("unknown argument `{other}`: {BENCH_USAGE}")
            }
        }
    }
    if quick && smoke {
        bail!("--quick and --smoke are two sizes of run: pick one ({BENCH_USAGE})");
    }
    Ok(Options {
        runs: runs.unwrap_or(if quick || smoke { 1 } else { 3 }),
        quick,
        smoke,
    })
}

/// One line of the result table.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: &'static str,
    scenario: String,
    measured: String,
    target: String,
    /// `None`: not applicable (no target, or the feature is missing).
    met: Option<bool>,
    /// The median the `measured` text shows, in `unit`.
    value: Option<f64>,
    unit: &'static str,
    samples: Vec<f64>,
    detail: Value,
}

impl Row {
    fn new(id: &'static str, scenario: impl Into<String>, unit: &'static str) -> Self {
        Self {
            id,
            scenario: scenario.into(),
            measured: String::new(),
            target: String::new(),
            met: None,
            value: None,
            unit,
            samples: Vec::new(),
            detail: Value::Null,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "scenario": self.scenario,
            "measured": self.measured,
            "target": self.target,
            "met": self.met,
            "value": self.value,
            "unit": self.unit,
            "samples": self.samples,
            "detail": self.detail,
        })
    }

    fn failed(id: &'static str, scenario: impl Into<String>, error: &anyhow::Error) -> Self {
        let mut row = Self::new(id, scenario, "");
        row.measured = format!("error: {error:#}");
        row.met = Some(false);
        row
    }
}

/// The binaries and directories every scenario uses.
struct Bench {
    enrich: PathBuf,
    fake: PathBuf,
    load: PathBuf,
    tool: PathBuf,
    work: PathBuf,
    runs: usize,
    sizes: Sizes,
}

/// Runs the benchmark.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = parse_args(args)?;
    let sizes = if options.smoke {
        Sizes::SMOKE
    } else if options.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let profile = if options.smoke { "debug" } else { "release" };
    say(&format!("building the {profile} binaries"));
    let mut build = crate::cargo(root);
    build.arg("build");
    if !options.smoke {
        build.arg("--release");
    }
    build.args([
        "--locked",
        "--package",
        "enrich-cli",
        "--package",
        "enrich-testkit",
        "--package",
        "enrich-bench",
        "--bins",
    ]);
    crate::run_cmd(build)?;
    // Where cargo put the binaries: CARGO_TARGET_DIR when set, as cargo itself reads it.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"));
    let bin_dir = target.join(profile);
    let out_dir = target.join("bench");
    // A smoke run (part of `cargo xtask ci`) leaves the last real run's working files alone.
    let work = out_dir.join(if options.smoke { "smoke-work" } else { "work" });
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("could not clear {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("could not create {}", work.display()))?;
    let bench = Bench {
        enrich: bin_dir.join("enrich"),
        fake: bin_dir.join("fake-ollama"),
        load: bin_dir.join("ollama-load"),
        tool: bin_dir.join("enrich-bench"),
        work,
        runs: options.runs,
        sizes,
    };
    let machine = machine_info();
    say(&format!(
        "{} core(s), {}; {} run(s) per scenario{}",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("unknown CPU"),
        bench.runs,
        if options.smoke {
            ", smoke run (debug build, tiny sizes)"
        } else if options.quick {
            ", quick sizes"
        } else {
            ""
        }
    ));

    if let Some(load) = machine["load_average_1m"].as_f64().filter(|&l| l >= 0.5) {
        say(&format!(
            "warning: load average {load:.2} before the bench: other processes compete for the \
             cores, so the numbers will be worse than the machine can do"
        ));
    }
    let started = Instant::now();
    let mut rows = Vec::new();
    let small = bench.gen_db("small", sizes.overhead.max(sizes.http))?;
    rows.push(
        bench
            .overhead(&small)
            .unwrap_or_else(|e| Row::failed("overhead", "overhead", &e)),
    );
    rows.push(
        bench
            .http(&small)
            .unwrap_or_else(|e| Row::failed("http", "http overhead", &e)),
    );
    let latency = bench
        .latency(&small)
        .unwrap_or_else(|e| Row::failed("latency", "latency-bound", &e));
    let healthy = latency.value.map(|fraction| fraction * 20.0);
    rows.push(latency);
    rows.push(
        bench
            .pool(&small)
            .unwrap_or_else(|e| Row::failed("pool", "host pool", &e)),
    );
    rows.push(
        bench
            .failure(&small, healthy)
            .unwrap_or_else(|e| Row::failed("failure", "failure path", &e)),
    );
    match bench.scale() {
        Ok(scale_rows) => rows.extend(scale_rows),
        Err(e) => rows.push(Row::failed("scale", "scale", &e)),
    }
    rows.push(
        bench
            .huge_answers(&small)
            .unwrap_or_else(|e| Row::failed("huge_answers", "huge answers", &e)),
    );

    if options.smoke {
        // Debug binaries at tiny sizes: the numbers say only that each scenario ran.
        for row in &mut rows {
            row.met = None;
        }
    }
    let build = if options.smoke {
        "debug build, smoke run: targets not judged"
    } else {
        "release build"
    };
    let table = render_table(&machine, bench.runs, build, &rows);
    println!("{table}");
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = json!({
        "timestamp": ts,
        "machine": machine,
        "runs": bench.runs,
        "quick": options.quick,
        "smoke": options.smoke,
        "sizes": sizes.to_json(),
        "seconds": started.elapsed().as_secs_f64(),
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&report)?;
    let names = if options.smoke {
        vec!["smoke.json".to_owned()]
    } else {
        vec![format!("{ts}.json"), "latest.json".to_owned()]
    };
    for name in &names {
        let path = out_dir.join(name);
        fs::write(&path, &text).with_context(|| format!("could not write {}", path.display()))?;
    }
    say(&format!(
        "done in {:.0} s; results in {}",
        started.elapsed().as_secs_f64(),
        out_dir.join(&names[0]).display()
    ));
    let errors = rows
        .iter()
        .filter(|r| r.measured.starts_with("error:"))
        .count();
    ensure!(errors == 0, "{errors} scenario(s) could not be measured");
    Ok(())
}

/// A generated repository and its pristine index, copied before each run.
struct Repo {
    root: PathBuf,
    template_db: PathBuf,
    spans: u64,
}

/// One `enrich run` as the bench saw it.
struct RunOutcome {
    report: Value,
    status: ExitStatus,
    peak_rss_kb: u64,
    cpu_seconds: f64,
    wall_seconds: f64,
}

/// A backend entry of a generated `enrich.toml`.
struct Entry<'a> {
    name: &'a str,
    urls: Vec<String>,
}

impl Entry<'static> {
    /// The backend `fake` on one fake server.
    fn fake(server: &FakeServer) -> Self {
        Entry {
            name: "fake",
            urls: vec![server.url.clone()],
        }
    }
}

impl Bench {
    fn gen_db(&self, name: &str, spans: u64) -> Result<Repo> {
        say(&format!("generating a {spans}-span index ({name})"));
        let root = self.work.join(format!("repo-{name}"));
        let report = self.tool_json(&[
            "gen-db",
            "--spans",
            &spans.to_string(),
            "--out",
            path_str(&root)?,
        ])?;
        say(&format!(
            "  {} files, {} MB of source, {:.1} s",
            report["files"],
            report["source_bytes"].as_u64().unwrap_or(0) / 1_000_000,
            report["seconds"].as_f64().unwrap_or(0.0)
        ));
        Ok(Repo {
            template_db: root.join(".llmc/rag/index_v2.db"),
            root,
            spans,
        })
    }

    /// A fresh copy of `repo`'s index for one run.
    fn fresh_db(&self, repo: &Repo) -> Result<PathBuf> {
        let db = self.work.join("run.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(format!("{}{suffix}", db.display()));
        }
        fs::copy(&repo.template_db, &db).with_context(|| {
            format!(
                "could not copy {} to {}",
                repo.template_db.display(),
                db.display()
            )
        })?;
        Ok(db)
    }

    fn tool_json(&self, args: &[&str]) -> Result<Value> {
        let out = Command::new(&self.tool)
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("could not start {}", self.tool.display()))?;
        ensure!(
            out.status.success(),
            "enrich-bench {} failed with {}",
            args.join(" "),
            out.status
        );
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "enrich-bench {} printed no JSON: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn events_path(&self) -> PathBuf {
        let path = self.work.join("events.jsonl");
        let _ = fs::remove_file(&path);
        path
    }

    fn write_config(&self, name: &str, entries: &[Entry<'_>], concurrency: u32) -> Result<PathBuf> {
        let path = self.work.join(format!("{name}.toml"));
        fs::write(&path, enrich_toml(entries, concurrency))
            .with_context(|| format!("could not write {}", path.display()))?;
        Ok(path)
    }

    /// Runs `enrich run` to completion, sampling its peak RSS and measuring its CPU time.
    fn enrich_run(
        &self,
        repo: &Repo,
        db: &Path,
        config: &Path,
        limit: Option<u64>,
        name: &str,
    ) -> Result<RunOutcome> {
        let stdout_path = self.work.join(format!("{name}.out.json"));
        let stderr_path = self.work.join(format!("{name}.err.log"));
        let mut cmd = Command::new(&self.enrich);
        cmd.arg("--repo")
            .arg(&repo.root)
            .arg("--db")
            .arg(db)
            .arg("--config")
            .arg(config)
            .args(["--json", "-q", "run", "--events"])
            .arg(self.events_path());
        if let Some(limit) = limit {
            cmd.args(["--limit", &limit.to_string()]);
        }
        cmd.stdin(Stdio::null())
            .stdout(
                File::create(&stdout_path)
                    .with_context(|| format!("could not create {}", stdout_path.display()))?,
            )
            .stderr(
                File::create(&stderr_path)
                    .with_context(|| format!("could not create {}", stderr_path.display()))?,
            );
        let cpu_before = children_cpu_seconds()?;
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {}", self.enrich.display()))?;
        let status_path = format!("/proc/{}/status", child.id());
        let mut peak_rss_kb = 0;
        let status = loop {
            if let Some(status) = child.try_wait().context("could not wait for enrich run")? {
                break status;
            }
            if let Some(kb) = fs::read_to_string(&status_path)
                .ok()
                .and_then(|s| parse_vm_hwm_kb(&s))
            {
                peak_rss_kb = peak_rss_kb.max(kb);
            }
            std::thread::sleep(RSS_POLL);
        };
        let wall_seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = children_cpu_seconds()? - cpu_before;
        let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
        let report: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        if report.is_null() || !matches!(status.code(), Some(0 | 1)) {
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            bail!(
                "enrich run ({name}) exited with {status}: {}",
                last_lines(&stderr, 5)
            );
        }
        Ok(RunOutcome {
            report,
            status,
            peak_rss_kb,
            cpu_seconds,
            wall_seconds,
        })
    }

    fn overhead(&self, repo: &Repo) -> Result<Row> {
        let spans = self.sizes.overhead;
        say(&format!(
            "1 overhead: full pipeline, instant backend, {spans} spans"
        ));
        let mut samples = Vec::new();
        let mut cpu = Vec::new();
        let mut last = Value::Null;
        for _ in 0..self.runs {
            let db = self.fresh_db(repo)?;
            let events = self.events_path();
            let report = self.tool_json(&[
                "overhead",
                "--repo",
                path_str(&repo.root)?,
                "--db",
                path_str(&db)?,
                "--concurrency",
                &CONCURRENCY_PER_HOST.to_string(),
                "--events",
                path_str(&events)?,
            ])?;
            ensure!(
                report["succeeded"].as_u64() == Some(repo.spans),
                "the overhead run enriched {} of {} spans",
                report["succeeded"],
                repo.spans
            );
            samples.push(report["spans_per_sec"].as_f64().unwrap_or(0.0));
            cpu.push(report["cpu_us_per_span"].as_f64().unwrap_or(f64::NAN));
            last = report;
        }
        let value = median(&samples);
        let cpu_us = median(&cpu);
        say(&format!(
            "  {value:.0} spans/s, {cpu_us:.0} µs of CPU per span"
        ));
        let mut row = Row::new(
            "overhead",
            format!("1 overhead: instant backend, {spans} spans"),
            "spans/s",
        );
        row.measured = format!("{value:.0} spans/s ({cpu_us:.0} µs CPU/span)");
        row.target = "≥ 20000 spans/s".to_owned();
        row.met = Some(value >= 20_000.0);
        row.value = Some(value);
        row.samples = samples;
        row.detail = json!({ "cpu_us_per_span": cpu, "last_run": last });
        Ok(row)
    }

    /// Request bodies as `enrich run` sends them: the first [`CAPTURED_BODIES`] spans of `repo`
    /// enriched against a recording fake server, written one per line for `ollama-load`.
    fn capture_bodies(&self, repo: &Repo) -> Result<PathBuf> {
        let server = FakeServer::recording(&self.fake)?;
        let config = self.write_config("capture", &[Entry::fake(&server)], CONCURRENCY_PER_HOST)?;
        let db = self.fresh_db(repo)?;
        let spans = CAPTURED_BODIES.min(repo.spans);
        self.enrich_run(repo, &db, &config, Some(spans), "capture")?;
        let recorded = server.requests()?;
        let mut lines = String::new();
        let mut sent = 0;
        for request in recorded
            .as_array()
            .context("/_fake/requests is not a list")?
        {
            if request["endpoint"] == "POST /api/generate" {
                lines.push_str(&serde_json::to_string(&request["body"])?);
                lines.push('\n');
                sent += 1;
            }
        }
        ensure!(
            sent == spans,
            "the capture run sent {sent} generate requests for {spans} spans"
        );
        let path = self.work.join("bodies.jsonl");
        fs::write(&path, lines).with_context(|| format!("could not write {}", path.display()))?;
        Ok(path)
    }

    /// `ollama-load --client client`: `requests` requests over [`SLOTS`] connections to
    /// `server`, the bodies in turn. Returns the report and the CPU seconds the client and the
    /// server spent.
    fn drive(
        &self,
        server: &FakeServer,
        bodies: &Path,
        requests: u64,
        client: &str,
    ) -> Result<(Value, f64, f64)> {
        let server_cpu_before = process_cpu_seconds(server.pid())?;
        let cpu_before = children_cpu_seconds()?;
        let out = Command::new(&self.load)
            .arg("--url")
            .arg(&server.url)
            .arg("--bodies")
            .arg(bodies)
            .args(["--requests", &requests.to_string()])
            .args(["--connections", &SLOTS.to_string()])
            .args(["--client", client])
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("could not start {}", self.load.display()))?;
        let cpu = children_cpu_seconds()? - cpu_before;
        let server_cpu = process_cpu_seconds(server.pid())? - server_cpu_before;
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        ensure!(
            out.status.success() && report["ok"].as_u64() == Some(requests),
            "ollama-load --client {client} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        );
        Ok((report, cpu, server_cpu))
    }

    fn http(&self, repo: &Repo) -> Result<Row> {
        let spans = self.sizes.http;
        say(&format!(
            "2 http: enrich run against fake-ollama at 0 ms, {spans} spans; the fake's own rate \
             with ollama-load (hyper, then reqwest)"
        ));
        let bodies = self.capture_bodies(repo)?;
        let server = FakeServer::start(&self.fake, 0)?;
        let config = self.write_config("http", &[Entry::fake(&server)], CONCURRENCY_PER_HOST)?;
        let mut rates = Vec::new();
        let mut own_rates = Vec::new();
        let mut reqwest_rates = Vec::new();
        let mut shares = Vec::new();
        let mut cpu_ratio = Vec::new();
        let mut cpu_per_span = Vec::new();
        let mut detail = Value::Null;
        for run in 0..self.runs {
            let db = self.fresh_db(repo)?;
            let before = server.stats()?;
            let server_cpu_before = process_cpu_seconds(server.pid())?;
            let outcome = self.enrich_run(repo, &db, &config, Some(spans), "http")?;
            let server_cpu = process_cpu_seconds(server.pid())? - server_cpu_before;
            let after = server.stats()?;
            let succeeded = outcome.report["succeeded"].as_u64().unwrap_or(0);
            ensure!(
                succeeded == spans,
                "run {run}: {succeeded} of {spans} spans enriched"
            );
            let generations = generations(&after) - generations(&before);
            let rate = outcome.report["spans_per_sec"].as_f64().unwrap_or(0.0);

            let (load, client_cpu, load_server_cpu) =
                self.drive(&server, &bodies, spans, "hyper")?;
            let own_rate = load["requests_per_sec"].as_f64().unwrap_or(0.0);
            let (reqwest, reqwest_cpu, reqwest_server_cpu) =
                self.drive(&server, &bodies, spans, "reqwest")?;
            reqwest_rates.push(reqwest["requests_per_sec"].as_f64().unwrap_or(0.0));

            rates.push(rate);
            own_rates.push(own_rate);
            shares.push(if own_rate > 0.0 { rate / own_rate } else { 0.0 });
            cpu_per_span.push(outcome.cpu_seconds * 1e6 / spans as f64);
            cpu_ratio.push(if server_cpu > 0.0 {
                outcome.cpu_seconds / server_cpu
            } else {
                f64::INFINITY
            });
            detail = json!({
                "spans_per_sec": rate,
                "fake_requests": generations,
                "fake_connections": after["connections"].as_u64().unwrap_or(0)
                    .saturating_sub(before["connections"].as_u64().unwrap_or(0)),
                "enrich_cpu_seconds": outcome.cpu_seconds,
                "fake_cpu_seconds": server_cpu,
                "enrich_cpu_us_per_span": outcome.cpu_seconds * 1e6 / spans as f64,
                "fake_cpu_us_per_request": server_cpu * 1e6 / generations.max(1) as f64,
                "wall_seconds": outcome.wall_seconds,
                "peak_rss_kb": outcome.peak_rss_kb,
                "load": load,
                "load_client_cpu_us_per_request": client_cpu * 1e6 / spans as f64,
                "load_fake_cpu_us_per_request": load_server_cpu * 1e6 / spans as f64,
                "reqwest_load": reqwest,
                "reqwest_client_cpu_us_per_request": reqwest_cpu * 1e6 / spans as f64,
                "reqwest_fake_cpu_us_per_request": reqwest_server_cpu * 1e6 / spans as f64,
            });
        }
        let value = median(&shares);
        let rate = median(&rates);
        let own_rate = median(&own_rates);
        let reqwest_rate = median(&reqwest_rates);
        let ratio = median(&cpu_ratio);
        let cpu_us = median(&cpu_per_span);
        let measured = format!(
            "{rate:.0} spans/s = {:.0}% of the fake's own {own_rate:.0} req/s (through reqwest \
             alone {reqwest_rate:.0}); CPU enrich/fake {ratio:.2} ({cpu_us:.0} µs/span)",
            value * 100.0
        );
        say(&format!("  {measured}"));
        let mut row = Row::new(
            "http",
            format!("2 http: fake-ollama 0 ms, {SLOTS} slots, {spans} spans"),
            "fraction",
        );
        row.measured = measured;
        row.target = format!(
            "limited by the fake (≥ {:.0}% of its own rate)",
            HTTP_TARGET * 100.0
        );
        row.met = Some(value >= HTTP_TARGET);
        row.value = Some(value);
        row.samples = shares;
        row.detail = json!({
            "last_run": detail,
            "spans_per_sec": rates,
            "fake_own_requests_per_sec": own_rates,
            "reqwest_requests_per_sec": reqwest_rates,
            "cpu_ratio_samples": cpu_ratio,
            "enrich_cpu_us_per_span": cpu_per_span,
        });
        Ok(row)
    }

    /// Runs `limit` spans against `servers` at [`LATENCY_MS`], one backend host per server;
    /// returns spans/s per run and the requests each server got in the last run.
    fn latency_runs(
        &self,
        repo: &Repo,
        name: &str,
        entries: &[Entry<'_>],
        servers: &[&FakeServer],
        hosts: u32,
        limit: u64,
    ) -> Result<(Vec<f64>, Vec<u64>)> {
        let config = self.write_config(name, entries, CONCURRENCY_PER_HOST * hosts)?;
        let mut rates = Vec::new();
        let mut per_server = Vec::new();
        for run in 0..self.runs {
            let db = self.fresh_db(repo)?;
            let before: Vec<u64> = servers
                .iter()
                .map(|s| s.stats().map(|v| generations(&v)))
                .collect::<Result<_>>()?;
            let outcome = self.enrich_run(repo, &db, &config, Some(limit), name)?;
            per_server = servers
                .iter()
                .zip(&before)
                .map(|(s, b)| s.stats().map(|v| generations(&v) - b))
                .collect::<Result<_>>()?;
            let succeeded = outcome.report["succeeded"].as_u64().unwrap_or(0);
            ensure!(
                succeeded == limit,
                "{name} run {run}: {succeeded} of {limit} spans enriched (exit {})",
                outcome.status
            );
            rates.push(outcome.report["spans_per_sec"].as_f64().unwrap_or(0.0));
        }
        Ok((rates, per_server))
    }

    fn latency(&self, repo: &Repo) -> Result<Row> {
        let spans = self.sizes.latency;
        let limit = f64::from(SLOTS) * 1000.0 / f64::from(LATENCY_MS);
        say(&format!(
            "3 latency: fake-ollama at {LATENCY_MS} ms, {SLOTS} slots, {spans} spans (limit {limit:.0} spans/s)"
        ));
        let server = FakeServer::start(&self.fake, LATENCY_MS)?;
        let entries = [Entry::fake(&server)];
        let (rates, _) = self.latency_runs(repo, "latency", &entries, &[&server], 1, spans)?;
        let fractions: Vec<f64> = rates.iter().map(|r| r / limit).collect();
        let value = median(&fractions);
        say(&format!(
            "  {:.2} spans/s = {:.1}% of {limit:.0}",
            median(&rates),
            value * 100.0
        ));
        let mut row = Row::new(
            "latency",
            format!(
                "3a latency: {LATENCY_MS} ms, {SLOTS} slots, max_in_flight {SLOTS}, {spans} spans"
            ),
            "fraction",
        );
        row.measured = format!(
            "{:.2} spans/s = {:.1}% of {limit:.0}",
            median(&rates),
            value * 100.0
        );
        row.target = "≥ 95%".to_owned();
        row.met = Some(value >= 0.95);
        row.value = Some(value);
        row.samples = fractions;
        row.detail = json!({ "spans_per_sec": rates, "limit": limit });
        Ok(row)
    }

    fn pool(&self, repo: &Repo) -> Result<Row> {
        let spans = self.sizes.pool;
        let limit = 2.0 * f64::from(SLOTS) * 1000.0 / f64::from(LATENCY_MS);
        say(&format!(
            "3b host pool: two fake-ollama servers as one backend's urls, {spans} spans (limit {limit:.0} spans/s)"
        ));
        let a = FakeServer::start(&self.fake, LATENCY_MS)?;
        let b = FakeServer::start(&self.fake, LATENCY_MS)?;
        let entries = [Entry {
            name: "pool",
            urls: vec![a.url.clone(), b.url.clone()],
        }];
        let mut row = Row::new(
            "pool",
            format!("3b host pool: 2 × ({LATENCY_MS} ms, {SLOTS} slots), {spans} spans"),
            "fraction",
        );
        row.target = "≥ 95%".to_owned();
        let (rates, per_server) =
            match self.latency_runs(repo, "pool", &entries, &[&a, &b], 2, spans) {
                Ok(result) => result,
                Err(error) => {
                    row.measured = "n/a: host pools not available".to_owned();
                    row.detail = json!({ "error": format!("{error:#}") });
                    say(&format!("  n/a: the run failed: {error:#}"));
                    return Ok(row);
                }
            };
        if per_server.contains(&0) {
            row.measured = "n/a: host pools not available".to_owned();
            row.detail = json!({ "requests_per_server": per_server, "spans_per_sec": rates });
            say(&format!(
                "  n/a: requests per server {per_server:?} (one server got none: `urls` is not a host pool yet)"
            ));
            return Ok(row);
        }
        let fractions: Vec<f64> = rates.iter().map(|r| r / limit).collect();
        let value = median(&fractions);
        say(&format!(
            "  {:.2} spans/s = {:.1}% of {limit:.0}; requests per server {per_server:?}",
            median(&rates),
            value * 100.0
        ));
        row.measured = format!(
            "{:.2} spans/s = {:.1}% of {limit:.0}",
            median(&rates),
            value * 100.0
        );
        row.met = Some(value >= 0.95);
        row.value = Some(value);
        row.samples = fractions;
        row.detail =
            json!({ "spans_per_sec": rates, "requests_per_server": per_server, "limit": limit });
        Ok(row)
    }

    fn failure(&self, repo: &Repo, healthy: Option<f64>) -> Result<Row> {
        let spans = self.sizes.failure;
        say(&format!(
            "4 failure path: first backend refuses connections, {spans} spans"
        ));
        let server = FakeServer::start(&self.fake, LATENCY_MS)?;
        let refused = refused_url()?;
        let entries = [
            Entry {
                name: "down",
                urls: vec![refused],
            },
            Entry::fake(&server),
        ];
        let (rates, _) = self.latency_runs(repo, "failure", &entries, &[&server], 1, spans)?;
        let rate = median(&rates);
        let mut row = Row::new(
            "failure",
            format!(
                "4 failure: first backend refused, then {LATENCY_MS} ms × {SLOTS}, {spans} spans"
            ),
            "fraction",
        );
        row.target = "≥ 90% of 3a".to_owned();
        row.detail = json!({ "spans_per_sec": rates, "healthy_spans_per_sec": healthy });
        match healthy.filter(|&h| h > 0.0) {
            Some(healthy) => {
                let fraction = rate / healthy;
                row.measured = format!(
                    "{rate:.2} spans/s = {:.1}% of {healthy:.2}",
                    fraction * 100.0
                );
                row.met = Some(fraction >= 0.90);
                row.value = Some(fraction);
                row.samples = rates.iter().map(|r| r / healthy).collect();
            }
            None => {
                row.measured = format!("{rate:.2} spans/s (no healthy case to compare with)");
                row.value = Some(rate);
                row.samples = rates;
            }
        }
        say(&format!("  {}", row.measured));
        Ok(row)
    }

    fn scale(&self) -> Result<Vec<Row>> {
        let spans = self.sizes.scale;
        let run_spans = self.sizes.scale_run;
        say(&format!(
            "5 scale: {spans}-span index, {run_spans}-span run"
        ));
        let gen_started = Instant::now();
        let repo = self.gen_db("scale", spans)?;
        let gen_seconds = gen_started.elapsed().as_secs_f64();
        let server = FakeServer::start(&self.fake, 0)?;
        let config = self.write_config("scale", &[Entry::fake(&server)], CONCURRENCY_PER_HOST)?;
        let mut select_fresh = Vec::new();
        let mut select_deep = Vec::new();
        let mut select_after = Vec::new();
        let mut select_after_zero = Vec::new();
        let mut count_after = Vec::new();
        let mut status_times = Vec::new();
        let mut rss = Vec::new();
        let mut run_rates = Vec::new();
        for run in 0..self.runs {
            let db = self.fresh_db(&repo)?;
            let fresh = self.select_batch(&repo, &db)?;
            select_fresh.push(fresh["first_page_ms"].as_f64().unwrap_or(f64::NAN));
            select_deep.push(fresh["deep_page_ms"].as_f64().unwrap_or(f64::NAN));
            let outcome = self.enrich_run(&repo, &db, &config, Some(run_spans), "scale")?;
            let succeeded = outcome.report["succeeded"].as_u64().unwrap_or(0);
            ensure!(
                succeeded == run_spans,
                "scale run {run}: {succeeded} of {run_spans} spans enriched"
            );
            rss.push(outcome.peak_rss_kb as f64 / 1024.0);
            run_rates.push(outcome.report["spans_per_sec"].as_f64().unwrap_or(0.0));
            let after = self.select_batch(&repo, &db)?;
            select_after.push(after["first_page_ms"].as_f64().unwrap_or(f64::NAN));
            select_after_zero.push(after["from_zero_page_ms"].as_f64().unwrap_or(f64::NAN));
            count_after.push(after["pending_count_ms"].as_f64().unwrap_or(f64::NAN));
            status_times.push(self.time_status(&repo, &db)?);
        }
        let fresh = median(&select_fresh).max(median(&select_deep));
        let after = median(&select_after);
        let status = median(&status_times);
        let peak = median(&rss);
        say(&format!(
            "  next batch {fresh:.3} ms fresh, {after:.3} ms after the run; status {status:.3} s; peak RSS {peak:.1} MB"
        ));

        let mut select_row = Row::new(
            "select_batch",
            format!("5 select next batch, {spans}-span index (first and deep page)"),
            "ms",
        );
        select_row.measured = format!(
            "{:.3} ms first, {:.3} ms deep",
            median(&select_fresh),
            median(&select_deep)
        );
        select_row.target = "< 10 ms".to_owned();
        select_row.met = Some(fresh < 10.0);
        select_row.value = Some(fresh);
        select_row.samples = select_fresh.iter().chain(&select_deep).copied().collect();
        select_row.detail = json!({ "gen_db_seconds": gen_seconds });

        let mut after_row = Row::new(
            "select_batch_after_run",
            format!("5 select next batch after {run_spans} enriched (first page)"),
            "ms",
        );
        after_row.measured = format!(
            "{after:.3} ms from the frontier ({:.1} ms from span 0; pending count {:.1} ms)",
            median(&select_after_zero),
            median(&count_after)
        );
        after_row.detail = json!({
            "from_zero_page_ms": select_after_zero,
            "pending_count_ms": count_after,
        });
        after_row.target = "< 10 ms".to_owned();
        after_row.met = Some(after < 10.0);
        after_row.value = Some(after);
        after_row.samples = select_after;

        let mut status_row = Row::new(
            "status",
            format!("5 enrich status, {spans} spans ({run_spans} enriched)"),
            "s",
        );
        status_row.measured = format!("{status:.3} s");
        status_row.target = "< 1 s".to_owned();
        status_row.met = Some(status < 1.0);
        status_row.value = Some(status);
        status_row.samples = status_times;

        let mut rss_row = Row::new(
            "peak_rss",
            format!("5 peak RSS of enrich run over {run_spans} spans"),
            "MB",
        );
        rss_row.measured = format!("{peak:.1} MB ({:.0} spans/s)", median(&run_rates));
        rss_row.target = "< 150 MB".to_owned();
        rss_row.met = Some(peak < 150.0);
        rss_row.value = Some(peak);
        rss_row.samples = rss;
        rss_row.detail = json!({ "spans_per_sec": run_rates });

        Ok(vec![select_row, after_row, status_row, rss_row])
    }

    fn huge_answers(&self, repo: &Repo) -> Result<Row> {
        let spans = self.sizes.huge;
        say(&format!(
            "6 huge answers: the first backend answers {} MB each, concurrency {HUGE_CONCURRENCY}, \
             {spans} spans",
            HUGE_ANSWER_BYTES / 1_000_000
        ));
        let huge = FakeServer::spawn(
            &self.fake,
            0,
            &[
                "--fault-rate",
                "oversized=1",
                "--oversized-bytes",
                &HUGE_ANSWER_BYTES.to_string(),
            ],
        )?;
        let solid = FakeServer::start(&self.fake, 0)?;
        let entries = [
            Entry {
                name: "huge",
                urls: vec![huge.url.clone()],
            },
            Entry::fake(&solid),
        ];
        let config = self.write_config("huge", &entries, HUGE_CONCURRENCY)?;
        let mut rss = Vec::new();
        for run in 0..self.runs {
            let db = self.fresh_db(repo)?;
            let before = huge.stats()?["outcomes"]["oversized"].as_u64().unwrap_or(0);
            let outcome = self.enrich_run(repo, &db, &config, Some(spans), "huge")?;
            let succeeded = outcome.report["succeeded"].as_u64().unwrap_or(0);
            ensure!(
                succeeded == spans,
                "huge answers run {run}: {succeeded} of {spans} spans enriched (exit {})",
                outcome.status
            );
            let oversized = huge.stats()?["outcomes"]["oversized"].as_u64().unwrap_or(0) - before;
            ensure!(
                oversized == spans,
                "huge answers run {run}: {oversized} oversized answers for {spans} spans"
            );
            rss.push(outcome.peak_rss_kb as f64 / 1024.0);
        }
        let peak = median(&rss);
        say(&format!("  peak RSS {peak:.1} MB"));
        let mut row = Row::new(
            "huge_answers",
            format!(
                "6 peak RSS, {} MB answers at concurrency {HUGE_CONCURRENCY}, {spans} spans",
                HUGE_ANSWER_BYTES / 1_000_000
            ),
            "MB",
        );
        row.measured = format!("{peak:.1} MB");
        row.target = "< 150 MB".to_owned();
        row.met = Some(peak < 150.0);
        row.value = Some(peak);
        row.samples = rss;
        Ok(row)
    }

    fn select_batch(&self, repo: &Repo, db: &Path) -> Result<Value> {
        self.tool_json(&[
            "select-batch",
            "--repo",
            path_str(&repo.root)?,
            "--db",
            path_str(db)?,
        ])
    }

    /// The wall time of one `enrich status` (the process, start to exit), in seconds.
    fn time_status(&self, repo: &Repo, db: &Path) -> Result<f64> {
        let started = Instant::now();
        let status = Command::new(&self.enrich)
            .arg("--repo")
            .arg(&repo.root)
            .arg("--db")
            .arg(db)
            .args(["--json", "status"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .context("could not start enrich status")?;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(status.success(), "enrich status exited with {status}");
        Ok(seconds)
    }
}

/// A `fake-ollama` process, stopped on drop.
struct FakeServer {
    child: Child,
    url: String,
}

impl FakeServer {
    fn start(binary: &Path, latency_ms: u32) -> Result<Self> {
        Self::spawn(binary, latency_ms, &[])
    }

    /// A server at 0 ms that keeps every request body (`--record`), for [`Self::requests`].
    fn recording(binary: &Path) -> Result<Self> {
        Self::spawn(binary, 0, &["--record"])
    }

    /// A server at `latency_ms` with [`SLOTS`] slots, serving [`MODEL`], and `extra` arguments.
    fn spawn(binary: &Path, latency_ms: u32, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(["--latency-ms", &latency_ms.to_string()])
            .args(extra)
            .args(["--slots", &SLOTS.to_string()])
            .args(["--model", MODEL, "--exit-on-stdin-close"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("could not start {}", binary.display()))?;
        let stdout = child.stdout.take().context("fake-ollama's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("could not read fake-ollama's listening line")?;
        let announced: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("fake-ollama did not announce its address: {line:?}"))?;
        let url = announced["listening"]
            .as_str()
            .with_context(|| format!("fake-ollama announced no address: {line:?}"))?
            .to_owned();
        Ok(Self { child, url })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /_fake/stats`.
    fn stats(&self) -> Result<Value> {
        self.get_json("/_fake/stats")
    }

    /// `GET /_fake/requests`: the bodies a [`Self::recording`] server received.
    fn requests(&self) -> Result<Value> {
        self.get_json("/_fake/requests")
    }

    fn get_json(&self, route: &str) -> Result<Value> {
        let addr = self
            .url
            .strip_prefix("http://")
            .with_context(|| format!("fake-ollama's address {} is not http://", self.url))?;
        let mut stream =
            TcpStream::connect(addr).with_context(|| format!("could not connect to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {route} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .with_context(|| format!("could not read {}{route}", self.url))?;
        let body =
            http_body(&response).with_context(|| format!("{}{route} answered badly", self.url))?;
        serde_json::from_slice(&body).with_context(|| format!("{}{route} is not JSON", self.url))
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The generation requests a fake server's counters report.
fn generations(stats: &Value) -> u64 {
    [
        "POST /api/generate",
        "POST /api/chat",
        "POST /v1/chat/completions",
    ]
    .iter()
    .filter_map(|e| stats["endpoints"][e].as_u64())
    .sum()
}

/// A URL on which nothing listens: a port the kernel just handed out and took back.
fn refused_url() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("could not bind a local port")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    Ok(format!("http://127.0.0.1:{port}"))
}

/// The `enrich.toml` of a scenario: one chain `bench` of `entries` in order, each host allowed
/// [`SLOTS`] requests at once, no cooldown (generated files are brand new), LLMC's defaults
/// otherwise.
fn enrich_toml(entries: &[Entry<'_>], concurrency: u32) -> String {
    let mut text = format!(
        "# Written by `cargo xtask bench`.\n[enrichment]\ndefault_chain = \"bench\"\n\
         concurrency = {concurrency}\ncooldown_seconds = 0\n"
    );
    for entry in entries {
        let _ = write!(
            text,
            "\n[[enrichment.chain]]\nname = \"{}\"\nchain = \"bench\"\nprovider = \"ollama\"\n\
             model = \"{MODEL}\"\n",
            entry.name
        );
        match entry.urls.as_slice() {
            [one] => {
                let _ = writeln!(text, "url = \"{one}\"");
            }
            many => {
                let quoted: Vec<String> = many.iter().map(|u| format!("\"{u}\"")).collect();
                let _ = writeln!(text, "urls = [{}]", quoted.join(", "));
            }
        }
        let _ = writeln!(
            text,
            "timeout_seconds = 30\noptions = {{ max_in_flight = {SLOTS} }}"
        );
    }
    text
}

/// The body of a raw HTTP/1.1 response with status 200 (plain or chunked).
fn http_body(response: &[u8]) -> Result<Vec<u8>> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.lines().next().unwrap_or_default();
    ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "status line {status:?}"
    );
    let body = &response[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk without its size line")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        ensure!(rest.len() >= size, "a chunk shorter than its size");
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// The median of `samples` (the mean of the middle two for an even count); NaN for none.
fn median(samples: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `VmHWM` (peak resident set) of a `/proc/<pid>/status` text, in kB.
fn parse_vm_hwm_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The CPU time fields of a `/proc/<pid>/stat` text, in clock ticks: (utime + stime, cutime +
/// cstime). The command name (in parentheses) may hold spaces, so fields count from its `)`.
fn parse_stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [utime, stime, cutime, cstime] = fields.as_slice() else {
        return None;
    };
    Some((utime + stime, cutime + cstime))
}

/// CPU seconds of a running process.
fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    let (own, _) = parse_stat_ticks(&stat).with_context(|| format!("{path} is not understood"))?;
    Ok(own as f64 / TICKS_PER_SECOND)
}

/// CPU seconds of this process's children that have been waited for.
fn children_cpu_seconds() -> Result<f64> {
    let stat = fs::read_to_string("/proc/self/stat").context("could not read /proc/self/stat")?;
    let (_, children) = parse_stat_ticks(&stat).context("/proc/self/stat is not understood")?;
    Ok(children as f64 / TICKS_PER_SECOND)
}

/// The machine: cores and CPU model.
fn machine_info() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| cpu_model(&text));
    json!({
        "cores": cores,
        "cpu": cpu,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "load_average_1m": load_average(),
    })
}

/// The 1-minute load average: other processes competing for the cores make every number worse.
fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The first `model name` of a `/proc/cpuinfo` text.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// The table printed at the end: scenario, measured, target, met?
fn render_table(machine: &Value, runs: usize, build: &str, rows: &[Row]) -> String {
    let headers = ["scenario", "measured", "target", "met?"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "n/a",
            };
            [
                r.scenario.clone(),
                r.measured.clone(),
                r.target.clone(),
                met.to_owned(),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let load = machine["load_average_1m"]
        .as_f64()
        .map(|l| format!("; load {l:.2} at start"))
        .unwrap_or_default();
    let mut text = format!(
        "enrich bench: {} core(s), {}; median of {runs} run(s); {build}{load}\n\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("unknown CPU")
    );
    let mut line = |cols: [&str; 4]| {
        let padded: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(text, "{}", padded.join("  ").trim_end());
    };
    line(headers);
    let rules = widths.map(|w| "-".repeat(w));
    line([&rules[0], &rules[1], &rules[2], &rules[3]]);
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
    let met = rows.iter().filter(|r| r.met == Some(true)).count();
    let judged = rows.iter().filter(|r| r.met.is_some()).count();
    if judged > 0 {
        let _ = write!(text, "\n{met} of {judged} targets met");
    } else {
        let _ = write!(text, "\nno target judged");
    }
    text
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

fn say(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "bench: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_no_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn proc_status_and_stat_are_read() {
        let status =
            "Name:\tenrich\nVmPeak:\t  200000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_vm_hwm_kb(status), Some(51_234));
        assert_eq!(parse_vm_hwm_kb("Name:\tzombie\nState:\tZ\n"), None);

        // pid (comm with spaces) state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime cutime cstime ...
        let stat = "42 (tokio rt worker) S 1 42 42 0 -1 4194304 100 0 0 0 150 25 7 3 20 0 4 0";
        assert_eq!(parse_stat_ticks(stat), Some((175, 10)));
        assert_eq!(parse_stat_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
    }

    #[test]
    fn http_bodies_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
        assert_eq!(http_body(plain).unwrap(), b"{\"a\":1}");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"{\"a\":1}");
        let refused = b"HTTP/1.1 404 Not Found\r\n\r\nno";
        assert!(http_body(refused).unwrap_err().to_string().contains("404"));
    }

    #[test]
    fn generated_configs_use_url_or_urls() {
        let text = enrich_toml(
            &[
                Entry {
                    name: "down",
                    urls: vec!["http://127.0.0.1:9".to_owned()],
                },
                Entry {
                    name: "pool",
                    urls: vec!["http://a:1".to_owned(), "http://b:2".to_owned()],
                },
            ],
            16,
        );
        assert!(
            text.contains("concurrency = 16\ncooldown_seconds = 0\n"),
            "{text}"
        );
        assert!(
            text.contains("name = \"down\"\nchain = \"bench\""),
            "{text}"
        );
        assert!(text.contains("url = \"http://127.0.0.1:9\"\n"), "{text}");
        assert!(
            text.contains("urls = [\"http://a:1\", \"http://b:2\"]\n"),
            "{text}"
        );
        assert_eq!(text.matches("options = { max_in_flight = 4 }").count(), 2);
    }

    #[test]
    fn the_table_lines_up_and_says_what_is_met() {
        let mut fast = Row::new("overhead", "1 overhead", "spans/s");
        fast.measured = "25000 spans/s".to_owned();
        fast.target = "≥ 20000 spans/s".to_owned();
        fast.met = Some(true);
        let mut slow = Row::new("status", "5 enrich status", "s");
        slow.measured = "1.500 s".to_owned();
        slow.target = "< 1 s".to_owned();
        slow.met = Some(false);
        let mut pool = Row::new("pool", "3b host pool", "fraction");
        pool.measured = "n/a: host pools not available".to_owned();
        pool.target = "≥ 95%".to_owned();
        let machine = json!({ "cores": 2, "cpu": "AMD EPYC" });
        let table = render_table(&machine, 3, "release build", &[fast, slow, pool]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "enrich bench: 2 core(s), AMD EPYC; median of 3 run(s); release build"
        );
        assert_eq!(
            lines[2],
            "scenario         measured                       target           met?"
        );
        assert_eq!(
            lines[4],
            "1 overhead       25000 spans/s                  ≥ 20000 spans/s  yes"
        );
        assert_eq!(
            lines[5],
            "5 enrich status  1.500 s                        < 1 s            NO"
        );
        assert_eq!(
            lines[6],
            "3b host pool     n/a: host pools not available  ≥ 95%            n/a"
        );
        assert_eq!(lines.last(), Some(&"1 of 2 targets met"));
    }

    #[test]
    fn arguments_pick_runs_and_sizes() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        let full = args(&[]).unwrap();
        assert_eq!((full.runs, full.quick), (3, false));
        let quick = args(&["--quick"]).unwrap();
        assert_eq!((quick.runs, quick.quick), (1, true));
        let five = args(&["--quick", "--runs", "5"]).unwrap();
        assert_eq!(five.runs, 5);
        let smoke = args(&["--smoke"]).unwrap();
        assert_eq!((smoke.runs, smoke.quick, smoke.smoke), (1, false, true));
        assert!(
            args(&["--smoke", "--quick"])
                .unwrap_err()
                .to_string()
                .contains("pick one")
        );
        assert!(args(&["--runs", "0"]).is_err());
        assert!(
            args(&["--fast"])
                .unwrap_err()
                .to_string()
                .contains("unknown argument")
        );
    }
}
