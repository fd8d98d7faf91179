//! The processes the bench drives and what it reads of them: `enrich run` with its peak RSS
//! and CPU time, `enrich-bench` subcommands, `fake-ollama` servers and their counters (over a
//! bare HTTP/1.1 request), and `/proc`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::repo::Repo;
use super::{Bench, MODEL, SLOTS};

/// Clock ticks per second of `/proc/<pid>/stat` times (Linux's fixed `USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// How often a running `enrich run` is sampled for its peak RSS.
const RSS_POLL: Duration = Duration::from_millis(10);

/// One `enrich run` as the bench saw it.
pub(super) struct RunOutcome {
    pub(super) report: Value,
    pub(super) status: ExitStatus,
    pub(super) peak_rss_kb: u64,
    pub(super) cpu_seconds: f64,
    pub(super) wall_seconds: f64,
}

impl Bench {
    pub(super) fn tool_json(&self, args: &[&str]) -> Result<Value> {
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

    /// Runs `enrich run` to completion, sampling its peak RSS and measuring its CPU time.
    pub(super) fn enrich_run(
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
}

/// A `fake-ollama` process, stopped on drop.
pub(super) struct FakeServer {
    child: Child,
    pub(super) url: String,
}

impl FakeServer {
    pub(super) fn start(binary: &Path, latency_ms: u32) -> Result<Self> {
        Self::spawn(binary, latency_ms, &[])
    }

    /// A server at 0 ms that keeps every request body (`--record`), for [`Self::requests`].
    pub(super) fn recording(binary: &Path) -> Result<Self> {
        Self::spawn(binary, 0, &["--record"])
    }

    /// A server at `latency_ms` with [`SLOTS`] slots, serving [`MODEL`], and `extra` arguments.
    pub(super) fn spawn(binary: &Path, latency_ms: u32, extra: &[&str]) -> Result<Self> {
        Self::spawn_with(binary, latency_ms, SLOTS, extra)
    }

    /// A server at `latency_ms` with `slots` slots, serving [`MODEL`], and `extra` arguments.
    pub(super) fn spawn_with(
        binary: &Path,
        latency_ms: u32,
        slots: u32,
        extra: &[&str],
    ) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(["--latency-ms", &latency_ms.to_string()])
            .args(extra)
            .args(["--slots", &slots.to_string()])
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

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /_fake/stats`.
    pub(super) fn stats(&self) -> Result<Value> {
        self.get_json("/_fake/stats")
    }

    /// `GET /_fake/requests`: the bodies a [`Self::recording`] server received.
    pub(super) fn requests(&self) -> Result<Value> {
        self.get_json("/_fake/requests")
    }

    fn get_json(&self, route: &str) -> Result<Value> {
        http_json(&self.url, "GET", route, None)
    }
}

/// A bare HTTP/1.1 request to `url` (`http://HOST:PORT`) with an optional JSON body, and its
/// status-200 JSON answer.
pub(super) fn http_json(
    url: &str,
    method: &str,
    route: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let addr = url
        .strip_prefix("http://")
        .with_context(|| format!("the address {url} is not http://"))?;
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("could not connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {route} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("could not read {url}{route}"))?;
    let body = http_body(&response).with_context(|| format!("{url}{route} answered badly"))?;
    serde_json::from_slice(&body).with_context(|| format!("{url}{route} is not JSON"))
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The generation requests a fake server's counters report.
pub(super) fn generations(stats: &Value) -> u64 {
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
pub(super) fn refused_url() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("could not bind a local port")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    Ok(format!("http://127.0.0.1:{port}"))
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
pub(super) fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    let (own, _) = parse_stat_ticks(&stat).with_context(|| format!("{path} is not understood"))?;
    Ok(own as f64 / TICKS_PER_SECOND)
}

/// CPU seconds of this process's children that have been waited for.
pub(super) fn children_cpu_seconds() -> Result<f64> {
    let stat = fs::read_to_string("/proc/self/stat").context("could not read /proc/self/stat")?;
    let (_, children) = parse_stat_ticks(&stat).context("/proc/self/stat is not understood")?;
    Ok(children as f64 / TICKS_PER_SECOND)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn http_bodies_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
        assert_eq!(http_body(plain).unwrap(), b"{\"a\":1}");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"{\"a\":1}");
        let refused = b"HTTP/1.1 404 Not Found\r\n\r\nno";
        assert!(http_body(refused).unwrap_err().to_string().contains("404"));
    }
}
