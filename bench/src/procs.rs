//! The real processes: the station's `yizhan serve` and the laptops' `yizhan --json sync`.
//!
//! Every child is held by a guard that kills it when dropped, on an error or a panic too.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The release `yizhan` binary.
#[derive(Clone, Debug)]
pub struct Yizhan {
    bin: PathBuf,
    /// `YIZHAN_PASSPHRASE` for every command (an encrypted home), if any.
    passphrase: Option<String>,
}

impl Yizhan {
    /// Builds `yizhan-cli` in release mode (unless `build` is false) and finds the binary.
    pub fn prepare(workspace: &Path, bin: Option<PathBuf>, build: bool) -> Result<Yizhan> {
        if build {
            eprintln!("building the release yizhan binary …");
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "-p", "yizhan-cli"])
                .current_dir(workspace)
                .status()
                .context("running cargo build")?;
            if !status.success() {
                bail!("cargo build --release -p yizhan-cli failed");
            }
        }
        let bin = bin.unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("target"));
            target.join("release").join("yizhan")
        });
        if !bin.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p yizhan-cli`",
                bin.display()
            );
        }
        Ok(Yizhan {
            bin,
            passphrase: None,
        })
    }

    /// The same binary, with `passphrase` in `YIZHAN_PASSPHRASE` of every command it runs.
    pub fn with_passphrase(&self, passphrase: &str) -> Yizhan {
        Yizhan {
            bin: self.bin.clone(),
            passphrase: Some(passphrase.to_string()),
        }
    }

    fn command(&self, home: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--json").arg("--home").arg(home);
        cmd.env_remove("YIZHAN_LOG");
        match &self.passphrase {
            Some(p) => cmd.env("YIZHAN_PASSPHRASE", p),
            None => cmd.env_remove("YIZHAN_PASSPHRASE"),
        };
        cmd
    }

    /// One `yizhan --json --home HOME ARGS…`, timed from start to exit; fails unless it
    /// exits 0. Returns its stdout and the wall time.
    pub fn run(&self, home: &Path, args: &[&str]) -> Result<(Vec<u8>, Duration)> {
        let started = Instant::now();
        let output = self
            .command(home)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running yizhan {}", args.join(" ")))?;
        let wall = started.elapsed();
        if !output.status.success() {
            bail!(
                "yizhan {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok((output.stdout, wall))
    }

    /// Starts the station's `yizhan serve` on a loopback port of the system's choosing.
    pub fn serve(&self, home: &Path, log: &Path) -> Result<Station> {
        let mut child = self
            .command(home)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-discovery"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(log)?)
            .spawn()
            .context("starting yizhan serve")?;
        let stdout = child.stdout.take().expect("piped");
        // The guard exists before anything can fail.
        let mut station = Station {
            child,
            addr: String::new(),
        };
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().context("yizhan serve printed nothing")??;
        let event: Value = serde_json::from_str(&first)?;
        station.addr = event["addr"]
            .as_str()
            .with_context(|| format!("unexpected first event: {first}"))?
            .to_string();
        // Keep draining its events so it never blocks on a full pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Ok(station)
    }

    fn sync_command(&self, home: &Path, addr: &str) -> Command {
        let mut cmd = self.command(home);
        cmd.args(["sync", addr])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// One `yizhan --json sync ADDR` with the node at `home`, timed.
    pub fn sync(&self, home: &Path, addr: &str) -> Result<SyncOut> {
        let started = Instant::now();
        let child = self.sync_command(home, addr).spawn()?;
        let mut out = finish_sync(child)?;
        out.wall = started.elapsed();
        Ok(out)
    }

    /// One sync for each home, one after another; returns them and the wall time of all.
    pub fn sync_each(&self, homes: &[PathBuf], addr: &str) -> Result<(Vec<SyncOut>, Duration)> {
        let started = Instant::now();
        let outs = homes
            .iter()
            .map(|h| self.sync(h, addr))
            .collect::<Result<Vec<_>>>()?;
        Ok((outs, started.elapsed()))
    }

    /// One sync for each home, all at once; returns them and the wall time of all.
    pub fn sync_all(&self, homes: &[PathBuf], addr: &str) -> Result<(Vec<SyncOut>, Duration)> {
        let started = Instant::now();
        let mut guard = Children(Vec::new());
        for home in homes {
            guard.0.push(Some(self.sync_command(home, addr).spawn()?));
        }
        let mut outs = Vec::new();
        for slot in &mut guard.0 {
            let child = slot.take().expect("each child waited once");
            outs.push(finish_sync(child)?);
        }
        Ok((outs, started.elapsed()))
    }
}

/// What `yizhan --json sync` reported.
#[derive(Clone, Debug, Default)]
pub struct SyncOut {
    /// Changes sent to the station.
    pub sent: u64,
    /// Changes received from it.
    pub received: u64,
    /// Changes refused.
    pub rejected: u64,
    /// UDP payload bytes sent (QUIC handshake included).
    pub bytes_sent: u64,
    /// UDP payload bytes received.
    pub bytes_received: u64,
    /// Round trips as the laptop counted them.
    pub round_trips: u64,
    /// Wall time of the process (start to exit).
    pub wall: Duration,
}

fn finish_sync(child: Child) -> Result<SyncOut> {
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "yizhan sync failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("sync output: {}", String::from_utf8_lossy(&output.stdout)))?;
    let field = |k: &str| {
        v[k].as_u64()
            .with_context(|| format!("sync output lacks {k}"))
    };
    Ok(SyncOut {
        sent: field("sent")?,
        received: field("received")?,
        rejected: field("rejected")?,
        bytes_sent: field("bytes_sent")?,
        bytes_received: field("bytes_received")?,
        round_trips: field("round_trips")?,
        wall: Duration::ZERO,
    })
}

/// The CPU time (user + system) of this process's children that were waited for: the
/// laptops' `yizhan sync` processes.
pub fn children_cpu_time() -> Result<Duration> {
    cpu_fields(&std::fs::read_to_string("/proc/self/stat")?, 15)
}

/// Two consecutive clock-tick fields of a `/proc/PID/stat` line, counted from 0 after the
/// command name, summed (`utime`, `stime` at 13; `cutime`, `cstime` at 15).
fn cpu_fields(stat: &str, first: usize) -> Result<Duration> {
    // The command name, in parentheses, may contain spaces: count fields after it.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 2..])
        .context("no command in stat")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 2 (state).
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i - 2)
            .and_then(|f| f.parse().ok())
            .context("short /proc stat line")
    };
    let ticks = tick(first)? + tick(first + 1)?;
    // The kernel reports these in USER_HZ, which is 100 on every Linux this runs on.
    Ok(Duration::from_millis(ticks * 10))
}

/// Children killed when dropped unless taken out first.
struct Children(Vec<Option<Child>>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The station's `yizhan serve` process; killed when dropped.
pub struct Station {
    child: Child,
    /// Where it listens (`127.0.0.1:PORT`).
    pub addr: String,
}

impl Station {
    /// The CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        cpu_fields(&stat, 13)
    }

    /// The process's peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/PID/status")
    }
}

impl Drop for Station {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
