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
//!    answer fails at `max_response_bytes` and the second backend enriches the span);
//! 7. **search** — `enrich-bench search` on a 1,000,000-span index with an enrichment per span
//!    (kept in `target/bench/search-cache/` between runs): the median time of `enrich search`'s
//!    query for each kind of query; the slowest kind is judged.
//! 8. **adaptive** — `enrich run` with no `max_in_flight` against fakes with 4 and 16 slots
//!    (spans/s against what the slots allow, and the most requests in flight), one slot with
//!    2 s generations under a 5 s timeout before (a fixed limit of 4) and after (timeouts), and
//!    a fake whose 8 slots fall to 2 mid-run (how soon the limit follows).
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
//! `--real-model` runs [`real_model`] instead: enrichment quality and cost on the real local
//! model over a pinned PyPI code base (a few minutes; not part of `cargo xtask ci`).
//!
//! Like the rest of xtask it links no product crate: it drives the binaries as processes,
//! reads the fake server's counters over a bare HTTP/1.1 request and the processes' memory and
//! CPU time from `/proc`.
//!
//! One module per scenario ([`overhead`], [`http`], [`latency`] with the host pool, [`failure`],
//! [`scale`], [`huge`], [`search`], [`adaptive`]), each an `impl Bench` block returning its [`Row`]s; [`repo`] generates
//! the indexes and configs they run on, [`process`] drives the binaries and reads `/proc`, and
//! [`report`] holds the rows, the table and the machine description.

mod adaptive;
mod failure;
mod http;
mod huge;
mod latency;
mod overhead;
mod process;
mod real_model;
mod repo;
mod report;
mod scale;
mod search;
mod span_part;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use report::{Row, machine_info, render_table};

use crate::model_server;

/// The model name the fake servers serve and the configs ask for.
const MODEL: &str = "bench:latest";
/// Requests each fake server runs at once (`--slots`), and each backend host's `max_in_flight`.
const SLOTS: u32 = 4;
/// The fake servers' latency in the latency-bound scenarios.
const LATENCY_MS: u32 = 200;
/// Spans in flight in the pipeline per backend host: twice the slots, so a slot that frees up
/// finds a span whose prompt is already built.
const CONCURRENCY_PER_HOST: u32 = 8;

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
    search: u64,
    /// Spans of the 4-slot adaptive run (four times as many for 16 slots).
    adaptive: u64,
    /// Spans of the slow single-slot adaptive run.
    adaptive_slow: u64,
    /// Spans of the capacity-change run.
    adaptive_change: u64,
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
        search: 1_000_000,
        adaptive: 400,
        adaptive_slow: 30,
        adaptive_change: 500,
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
        search: 2_000,
        adaptive: 8,
        adaptive_slow: 4,
        adaptive_change: 200,
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
        search: 50_000,
        adaptive: 40,
        adaptive_slow: 6,
        adaptive_change: 500,
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
            "search": self.search,
            "adaptive": self.adaptive,
            "adaptive_slow": self.adaptive_slow,
            "adaptive_change": self.adaptive_change,
        })
    }
}

#[derive(Debug)]
struct Options {
    runs: usize,
    quick: bool,
    /// Debug binaries, tiny sizes, no target judged: does every scenario still run?
    smoke: bool,
    /// The real-model benchmark ([`real_model`]) instead of the scenarios.
    real_model: bool,
    /// The real-model benchmark's models, in order (`--model`, repeatable; default smollm2).
    models: Vec<&'static model_server::ModelSpec>,
}

const BENCH_USAGE: &str = "usage: cargo xtask bench [--runs N] [--quick | --smoke] | --real-model [--model ID [--model ID]]";

fn parse_args(args: &[String]) -> Result<Options> {
    let mut runs = None;
    let mut quick = false;
    let mut smoke = false;
    let mut real_model = false;
    let mut models = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--smoke" => smoke = true,
            "--real-model" => real_model = true,
            "--model" => {
                let id = it.next().context("--model needs a model id")?;
                models.push(model_server::model_spec(id)?);
            }
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
    if real_model && (quick || smoke || runs.is_some()) {
        bail!("--real-model runs alone, once: {BENCH_USAGE}");
    }
    if !real_model && !models.is_empty() {
        bail!("--model picks the real-model bench's models: {BENCH_USAGE}");
    }
    if models.len() > 2 || (models.len() == 2 && models[0] == models[1]) {
        bail!("--real-model compares two different models at most: {BENCH_USAGE}");
    }
    if models.is_empty() {
        models.push(model_server::DEFAULT_MODEL);
    }
    Ok(Options {
        runs: runs.unwrap_or(if quick || smoke { 1 } else { 3 }),
        quick,
        smoke,
        real_model,
        models,
    })
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
    if options.real_model {
        return real_model::run(root, &options.models);
    }
    let sizes = if options.smoke {
        Sizes::SMOKE
    } else if options.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let (bench, out_dir) = Bench::prepare(root, &options, sizes)?;
    let machine = machine_info();
    announce(&machine, &options, bench.runs);
    let started = Instant::now();
    let mut rows = bench.scenarios(options.smoke)?;
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
    let ts = report::unix_seconds();
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
    let saved = report::save(&out_dir, &report, options.smoke, ts)?;
    say(&format!(
        "done in {:.0} s; results in {}",
        started.elapsed().as_secs_f64(),
        saved.display()
    ));
    let errors = rows
        .iter()
        .filter(|r| r.measured.starts_with("error:"))
        .count();
    ensure!(errors == 0, "{errors} scenario(s) could not be measured");
    Ok(())
}

/// Says what the bench runs on, and warns when other processes already load the machine.
fn announce(machine: &Value, options: &Options, runs: usize) {
    say(&format!(
        "{} core(s), {}; {runs} run(s) per scenario{}",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("unknown CPU"),
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
}

impl Bench {
    /// Builds the binaries (release, debug for a smoke run) and clears the working directory.
    /// Returns the bench and the directory the results go to.
    fn prepare(root: &Path, options: &Options, sizes: Sizes) -> Result<(Self, PathBuf)> {
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
            fs::remove_dir_all(&work)
                .with_context(|| format!("could not clear {}", work.display()))?;
        }
        fs::create_dir_all(&work)
            .with_context(|| format!("could not create {}", work.display()))?;
        let bench = Bench {
            enrich: bin_dir.join("enrich"),
            fake: bin_dir.join("fake-ollama"),
            load: bin_dir.join("ollama-load"),
            tool: bin_dir.join("enrich-bench"),
            work,
            runs: options.runs,
            sizes,
        };
        Ok((bench, out_dir))
    }

    /// Every scenario in order, one row each (four for scale); a scenario that fails is a row
    /// saying so, and the others still run.
    fn scenarios(&self, smoke: bool) -> Result<Vec<Row>> {
        let sizes = self.sizes;
        let mut rows = Vec::new();
        let small = self.gen_db("small", sizes.overhead.max(sizes.http))?;
        rows.push(
            self.overhead(&small)
                .unwrap_or_else(|e| Row::failed("overhead", "overhead", &e)),
        );
        rows.push(
            self.http(&small)
                .unwrap_or_else(|e| Row::failed("http", "http overhead", &e)),
        );
        let latency = self
            .latency(&small)
            .unwrap_or_else(|e| Row::failed("latency", "latency-bound", &e));
        let healthy = latency.value.map(|fraction| fraction * 20.0);
        rows.push(latency);
        rows.push(
            self.pool(&small)
                .unwrap_or_else(|e| Row::failed("pool", "host pool", &e)),
        );
        rows.push(
            self.failure(&small, healthy)
                .unwrap_or_else(|e| Row::failed("failure", "failure path", &e)),
        );
        match self.scale() {
            Ok(scale_rows) => rows.extend(scale_rows),
            Err(e) => rows.push(Row::failed("scale", "scale", &e)),
        }
        rows.push(
            self.huge_answers(&small)
                .unwrap_or_else(|e| Row::failed("huge_answers", "huge answers", &e)),
        );
        rows.push(
            self.search()
                .unwrap_or_else(|e| Row::failed("search", "search", &e)),
        );
        rows.extend(self.adaptive(&small, smoke));
        Ok(rows)
    }
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
        let real = args(&["--real-model"]).unwrap();
        assert!(real.real_model);
        let ids = |o: &Options| o.models.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(&real), ["smollm2"], "the default model");
        let two = args(&[
            "--real-model",
            "--model",
            "smollm2",
            "--model",
            "gemma3-270m",
        ])
        .unwrap();
        assert_eq!(ids(&two), ["smollm2", "gemma3-270m"]);
        for (bad, message) in [
            (
                &["--model", "gemma3-270m"][..],
                "picks the real-model bench's models",
            ),
            (
                &["--real-model", "--model", "smollm2", "--model", "smollm2"][..],
                "two different models",
            ),
            (
                &["--real-model", "--model", "llama"][..],
                "unknown model `llama`",
            ),
        ] {
            let err = args(bad).unwrap_err().to_string();
            assert!(err.contains(message), "{bad:?}: {err}");
        }
        assert!(
            args(&["--real-model", "--smoke"])
                .unwrap_err()
                .to_string()
                .contains("runs alone")
        );
        assert!(
            args(&["--fast"])
                .unwrap_err()
                .to_string()
                .contains("unknown argument")
        );
    }
}
