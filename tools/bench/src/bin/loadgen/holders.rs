//! Idle connections held by child processes of the generator: one process
//! may open at most ~19 900 sockets (the hard open-files limit), so
//! reaching a server's limit takes several.
//!
//! A holder is this binary run with `--scenario hold`: it opens its share,
//! prints one JSON line, and holds until its stdin closes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::Args;

pub struct Holders {
    children: Vec<Child>,
    /// Each holder's report line.
    pub reports: Vec<serde_json::Value>,
}

impl Holders {
    /// Opens `total` connections (numbered from `first`) over `processes`
    /// holders; returns once all are open.
    pub async fn spawn(
        a: &Args,
        first: usize,
        total: usize,
        processes: usize,
    ) -> Result<Self, String> {
        Self::spawn_scenario(a, "hold", first, total, processes).await
    }

    /// Like [`Holders::spawn`], with another holder scenario (`hold-raw`:
    /// plain TCP connections, no HTTP).
    pub async fn spawn_scenario(
        a: &Args,
        scenario: &str,
        first: usize,
        total: usize,
        processes: usize,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let processes = processes.max(1);
        let share = total.div_ceil(processes);
        let mut holders = Holders {
            children: Vec::new(),
            reports: Vec::new(),
        };
        let cookies = (!a.cookies.is_empty()).then(|| a.cookies.join(","));
        let mut start = first;
        let mut left = total;
        while left > 0 {
            let count = share.min(left);
            let child = Command::new(&exe)
                .args([
                    "--target",
                    a.target.name(),
                    "--addr",
                    &a.addr.to_string(),
                    "--scenario",
                    scenario,
                ])
                .args([
                    "--clients",
                    &count.to_string(),
                    "--first",
                    &start.to_string(),
                ])
                .args([
                    "--per-user",
                    &a.per_user.to_string(),
                    "--concurrency",
                    &a.concurrency.to_string(),
                ])
                .args(cookies.iter().flat_map(|c| ["--cookies", c.as_str()]))
                .args(
                    a.report
                        .iter()
                        .flat_map(|r| [std::ffi::OsStr::new("--report"), r.as_os_str()]),
                )
                .args(a.reuse.then_some("--reuse"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start a holder: {e}"))?;
            holders.children.push(child);
            start += count;
            left -= count;
        }
        for child in &mut holders.children {
            let stdout = child.stdout.take().ok_or("holder without stdout")?;
            let line = tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let report: serde_json::Value = serde_json::from_str(line.trim()).map_err(|_| {
                format!("a holder failed (its last words: {line:?}; see its stderr)")
            })?;
            holders.reports.push(report);
        }
        Ok(holders)
    }

    /// Connections per second, over all holders (they open concurrently).
    pub fn connects_per_second(&self) -> f64 {
        let opened: f64 = self
            .reports
            .iter()
            .filter_map(|r| r["opened"].as_f64())
            .sum();
        let slowest = self
            .reports
            .iter()
            .filter_map(|r| r["connect_seconds"].as_f64())
            .fold(0.0, f64::max);
        if slowest > 0.0 { opened / slowest } else { 0.0 }
    }

    /// Closes every holder's connections and waits for the processes.
    pub fn release(mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
