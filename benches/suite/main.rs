//! Pause-time and throughput suite (issue 7): workloads x live sizes x collector modes, each
//! run in a fresh child process, with peers' results merged in; a Markdown report and SVG plots.
//!
//! ```text
//! cargo bench -p faultline --bench suite -- --quick          # CI: 4 and 16 MiB, < 2 min
//! cargo bench -p faultline --bench suite                     # full: 64 MiB and 1 GiB
//! cargo bench -p faultline --bench suite -- --peers          # also run benches/peers/run.sh
//! ```
//!
//! Options: `--quick` (or `FAULTLINE_BENCH_QUICK=1`), `--peers`, `--report-only` (run
//! nothing: rebuild the report and plots from the earlier run's `DIR/results.json`, every
//! row it had, the equal-memory ones too, or from `DIR/runs/*.json` without it; the sizes,
//! workloads and modes are the records' own unless given; the peers file's rows replace the
//! earlier peers' rows when it exists; `results.json` is rewritten with every earlier record),
//! `--workloads a,b`, `--no-bystander` (run no bystander thread beside the workloads and no
//! bystander baseline: the conditions of the peers, which have none; the report says so),
//! `--footprints 2,3` (equal memory: after the main runs, every mode is
//! calibrated to a peak RSS of at most B x the live size and reported side by side with the
//! peers' measured RSS; see `footprint.rs`),
//! `--sizes-mib 64,1024`, `--modes stw,copy/sigbus`, `--work-factor W` (bytes allocated per
//! live byte; default 4, quick 8), `--heap-factor F` (the moving space's
//! half is F x the live size, default 4; for equal-memory runs next to
//! `benches/peers/run.sh --heap-factor F`), `--out DIR` (default
//! `<workspace>/target/bench-suite`), `--peers-file FILE` (default
//! `<workspace>/target/peers/results.json`, written by `benches/peers/run.sh`; read when it
//! exists). Output: `DIR/report.md`, `DIR/results.json`, `DIR/*.svg`, one JSON per run under
//! `DIR/runs/`, and `DIR/machine.json`: what fresh memory costs on this machine, measured
//! before the runs (`machine.rs`; the report's head states it). `--help` lists the options;
//! an unknown option, one without its value, or a bad value (an unknown workload or mode, a
//! size or work factor that is not a positive number, a heap factor or footprint under 1) is
//! refused with the usage and exit code 2.
//!
//! Diagnosis (environment, read by the children; nothing changes without them):
//! `FAULTLINE_SUITE_TIME_ALLOCS=1` (slow allocations of the workloads, `workloads.rs`),
//! `FAULTLINE_SUITE_REQUEST_RATE=HZ` (the request workload's arrival rate, `request.rs`),
//! `FAULTLINE_SUITE_TAIL_SAMPLES=1` (the request workload's slowest 1.1 % kept in its record,
//! for `benches/suite/tail_attr.py DIR` beside a `perf record -a -k mono -e sched:sched_switch
//! -e sched:sched_wakeup` trace; `benches/suite/sched_attr.py` splits whole runs the same
//! way), `FAULTLINE_SUITE_REPLACE_EVERY=N` (tree-replace's replacement ratio).
//!
//! The parent re-executes this binary with `--child ...` for every (workload, size, mode) and
//! for the bystander baseline, so each run has its own address space, its own peak RSS and no
//! heap left over from the previous one. Quick mode then checks every row (every mode ran,
//! pauses > 0, percentiles ordered, MMU in [0, 1], syscall counts present, the workload's own
//! check passed; and issue 14's figures: every wait cause present with max <= total,
//! `longest_wait_ms` at least every cause's max, the wait MMU in [0, 1] and 0 at windows the
//! longest wait covers, the footprint present, the request workload's metered percentiles
//! ordered, one per request, at a rate no higher than scheduled; and issue 15's: the `auto`
//! run's picks, calibration figures and verdicts beside the fixed modes, `auto.rs`) and exits
//! non-zero if one fails. The report leads with the mutators' latency (`report::headline`).
//!
//! Invariants: the figures in the report are the children's measurements, never edited; a mode
//! that could not run is shown as "not available" with the heap's reason; the only timing
//! facts asserted anywhere are orderings and ranges, never targets.

#[path = "../common/mod.rs"]
mod common;

mod auto;
mod bystander;
mod footprint;
mod machine;
mod metrics;
mod modes;
mod plots;
mod report;
mod request;
mod run;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{quick_env, MIB};
use run::RunResult;

struct Opts {
    quick: bool,
    peers: bool,
    /// Do not run anything: rebuild the report from an earlier run's records (`earlier`).
    report_only: bool,
    /// Whether `--sizes-mib`, `--workloads`, `--modes` were given (`--report-only` keeps
    /// every earlier record of a dimension not given, not the defaults').
    given: [bool; 3],
    /// Run the bystander thread beside each workload and its baseline (`--no-bystander`: no).
    bystander: bool,
    workloads: Vec<String>,
    sizes: Vec<usize>,
    modes: Vec<String>,
    out: PathBuf,
    peers_file: PathBuf,
    /// Moving half = this x the live size (`--heap-factor`, default 4).
    heap_factor: Option<f64>,
    /// Bytes allocated per live byte (`--work-factor`; default 4, quick 8).
    work_factor: Option<f64>,
    /// Equal-memory bounds (`--footprints 2,3`: peak RSS at most B x live), calibrated per
    /// mode after the main runs (`footprint`).
    footprints: Vec<f64>,
}

// The command line (`cargo bench` appends `--bench`): a bad option or value is refused with
// the usage and exit code 2 (clap's usage error), `--help` lists the options.
/// Faultline's pause and throughput suite: workloads x live sizes x collector modes, each run
/// in a child process; writes a report, JSON records and plots to the output directory.
#[derive(clap::Parser)]
#[command(
    name = "suite",
    override_usage = "cargo bench -p faultline --bench suite -- [OPTIONS]",
    args_override_self = true
)]
struct Cli {
    /// 4 and 16 MiB, short runs, sanity checks (also FAULTLINE_BENCH_QUICK=1)
    #[arg(long)]
    quick: bool,
    /// Live sizes in MiB [default: 64,1024; quick: 4,16]
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    sizes_mib: Option<Vec<u64>>,
    /// Workloads to run [default: all]
    #[arg(long, value_delimiter = ',', value_parser = workload_name)]
    workloads: Option<Vec<String>>,
    /// Modes to run (labels below) [default: all]
    #[arg(long, value_delimiter = ',', value_parser = mode_label)]
    modes: Option<Vec<String>>,
    /// Bytes allocated per live byte (> 0) [default: 4; quick: 8]
    #[arg(long, value_parser = positive)]
    work_factor: Option<f64>,
    /// Moving half = F x live (>= 1) [default: 4]
    #[arg(long, value_parser = at_least_one)]
    heap_factor: Option<f64>,
    /// Also calibrate every mode to a peak RSS <= B x live (each >= 1)
    #[arg(long, value_delimiter = ',', value_parser = at_least_one)]
    footprints: Vec<f64>,
    /// No bystander thread beside the workloads
    #[arg(long)]
    no_bystander: bool,
    /// Also run benches/peers/run.sh
    #[arg(long)]
    peers: bool,
    /// Peers' results [default: <workspace>/target/peers/results.json]
    #[arg(long)]
    peers_file: Option<PathBuf>,
    /// Run nothing: rebuild the report from DIR/results.json (or DIR/runs/*.json)
    #[arg(long)]
    report_only: bool,
    /// Output directory [default: <workspace>/target/bench-suite]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn workload_name(s: &str) -> Result<String, String> {
    workloads::WORKLOADS
        .contains(&s)
        .then(|| s.to_string())
        .ok_or_else(|| format!("one of: {}", workloads::WORKLOADS.join(", ")))
}

fn mode_label(s: &str) -> Result<String, String> {
    modes::by_label(s)
        .map(|m| m.label.to_string())
        .ok_or_else(|| "a mode label (see --help)".to_string())
}

fn positive(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|f| *f > 0.0 && f.is_finite())
        .ok_or_else(|| "a number > 0".to_string())
}

fn at_least_one(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|f| *f >= 1.0 && f.is_finite())
        .ok_or_else(|| "a number >= 1".to_string())
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Opts {
    /// The options of the command line `args` (the program's name first); exits with the
    /// usage and code 2 on a bad one, with the help and 0 on `--help`.
    fn parse(args: &[String]) -> Opts {
        use clap::{CommandFactory, FromArgMatches};
        let modes: Vec<String> = modes::all().iter().map(|m| m.label.to_string()).collect();
        let cmd = Cli::command().after_help(format!("Modes: {}", modes.join(", ")));
        let cli = cmd
            .try_get_matches_from(args)
            .and_then(|m| Cli::from_arg_matches(&m))
            .unwrap_or_else(|e| e.exit());
        let quick = cli.quick || quick_env();
        Opts {
            quick,
            peers: cli.peers,
            report_only: cli.report_only,
            given: [
                cli.sizes_mib.is_some(),
                cli.workloads.is_some(),
                cli.modes.is_some(),
            ],
            bystander: !cli.no_bystander,
            workloads: cli
                .workloads
                .unwrap_or_else(|| workloads::WORKLOADS.iter().map(|s| s.to_string()).collect()),
            sizes: cli
                .sizes_mib
                .unwrap_or_else(|| if quick { vec![4, 16] } else { vec![64, 1024] })
                .into_iter()
                .map(|m| m as usize * MIB)
                .collect(),
            modes: cli.modes.unwrap_or(modes),
            out: cli
                .out
                .unwrap_or_else(|| workspace().join("target/bench-suite")),
            heap_factor: cli.heap_factor,
            work_factor: cli.work_factor,
            footprints: cli.footprints,
            peers_file: cli
                .peers_file
                .unwrap_or_else(|| workspace().join("target/peers/results.json")),
        }
    }
    /// Bytes allocated per byte of live data.
    fn work_factor(&self) -> f64 {
        if let Some(f) = self.work_factor {
            f
        } else if self.quick {
            8.0
        } else {
            4.0
        }
    }
    fn threads(&self) -> usize {
        3
    }
    fn baseline_secs(&self) -> f64 {
        if self.quick {
            1.0
        } else {
            5.0
        }
    }
    fn child_timeout(&self, live: usize) -> Duration {
        Duration::from_secs(if self.quick {
            60
        } else if live >= 2048 * MIB {
            // 4 GiB (issue 15's tree-replace run): one concurrent cycle copies gigabytes.
            3600
        } else if live >= 512 * MIB {
            900
        } else {
            300
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1..]);
        return;
    }
    let opts = Opts::parse(&args);
    std::process::exit(parent(&opts));
}

/// `--child <out.json> <workload|-> <live bytes> <mode|bystander-alone> <work factor>
/// <threads> <baseline secs>`
fn child(a: &[String]) {
    let get = |i: usize| a.get(i).cloned().unwrap_or_default();
    let out = PathBuf::from(get(0));
    let live: usize = get(2).parse().unwrap_or(0);
    let r = if get(3) == "bystander-alone" {
        run::bystander_alone((live / MIB) as u64, get(6).parse().unwrap_or(1.0))
    } else {
        run::measure(
            &get(1),
            live,
            &get(3),
            get(4).parse().unwrap_or(4.0),
            get(5).parse().unwrap_or(3),
        )
    };
    let json = serde_json::to_string(&r).expect("a run record serialises");
    if let Err(e) = std::fs::write(&out, json) {
        eprintln!("suite child: writing {}: {e}", out.display());
        std::process::exit(2);
    }
}

/// One child to run.
struct Job {
    workload: String,
    live: usize,
    mode: String,
    /// An equal-memory run: the heap factor to use and the bound it is calibrated to.
    footprint: Option<(f64, f64)>,
}

fn run_child(opts: &Opts, job: &Job, dir: &Path) -> RunResult {
    let stem = format!(
        "{}-{}MiB-{}{}",
        job.workload,
        job.live / MIB,
        job.mode.replace('/', "_"),
        job.footprint
            .map_or(String::new(), |(_, b)| format!("-fp{b}"))
    );
    let out = dir.join(format!("{stem}.json"));
    let errf = dir.join(format!("{stem}.stderr"));
    let _ = std::fs::remove_file(&out);
    let failed = |status: String| RunResult {
        workload: job.workload.clone(),
        live_mib: (job.live / MIB) as u64,
        mode: job.mode.clone(),
        status,
        ..RunResult::default()
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return failed(format!("failed: current_exe: {e}")),
    };
    let stderr = std::fs::File::create(&errf)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let mut cmd = Command::new(exe);
    if let Some(f) = job.footprint.map(|(f, _)| f).or(opts.heap_factor) {
        cmd.env("FAULTLINE_SUITE_HEAP_FACTOR", f.to_string());
    }
    if !opts.bystander {
        cmd.env(run::NO_BYSTANDER_ENV, "1");
    }
    let mut child = match cmd
        .arg("--child")
        .arg(&out)
        .arg(&job.workload)
        .arg(job.live.to_string())
        .arg(&job.mode)
        .arg(opts.work_factor().to_string())
        .arg(opts.threads().to_string())
        .arg(opts.baseline_secs().to_string())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return failed(format!("failed: spawning the child: {e}")),
    };
    let limit = opts.child_timeout(job.live);
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if t0.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("failed: timed out after {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(format!("failed: waiting for the child: {e}")),
        }
    };
    let tail = || {
        std::fs::read_to_string(&errf)
            .map(|s| {
                let lines: Vec<&str> = s.lines().rev().take(3).collect();
                lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
            })
            .unwrap_or_default()
    };
    match status {
        Err(e) => failed(e),
        Ok(s) if !s.success() => failed(format!("failed: child exited with {s}: {}", tail())),
        Ok(_) => match std::fs::read_to_string(&out)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<RunResult>(&t).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => failed(format!("failed: reading the child's record: {e}")),
        },
    }
}

fn parent(opts: &Opts) -> i32 {
    let started = Instant::now();
    let runs_dir = opts.out.join("runs");
    if let Err(e) = std::fs::create_dir_all(&runs_dir) {
        eprintln!("suite: creating {}: {e}", runs_dir.display());
        return 2;
    }
    if opts.peers {
        run_peers(opts.quick);
    }
    // What fresh memory costs here, before any run (an earlier run's record with
    // `--report-only`: the machine of the runs, not this one).
    let machine_file = opts.out.join("machine.json");
    let machine = if opts.report_only {
        std::fs::read_to_string(&machine_file)
            .ok()
            .and_then(|t| serde_json::from_str::<machine::MachineProbe>(&t).ok())
    } else {
        let m = machine::probe();
        let _ = std::fs::write(
            &machine_file,
            serde_json::to_string_pretty(&m).unwrap_or_default(),
        );
        Some(m)
    };
    let mut jobs = Vec::new();
    for &live in &opts.sizes {
        if opts.bystander {
            jobs.push(Job {
                workload: "-".into(),
                live,
                mode: "bystander-alone".into(),
                footprint: None,
            });
        }
        for w in &opts.workloads {
            for m in &opts.modes {
                jobs.push(Job {
                    workload: w.clone(),
                    live,
                    mode: m.clone(),
                    footprint: None,
                });
            }
        }
    }
    let pb = indicatif::ProgressBar::new(jobs.len() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("a valid progress template"),
    );
    let earlier = opts.report_only.then(|| earlier(opts, &runs_dir));
    let mut results = earlier.as_ref().map_or_else(Vec::new, |e| e.main.clone());
    for job in jobs.iter().filter(|_| !opts.report_only) {
        pb.set_message(format!(
            "{} @ {} MiB: {}",
            job.workload,
            job.live / MIB,
            job.mode
        ));
        let t = Instant::now();
        let r = run_child(opts, job, &runs_dir);
        let line = format!(
            "{:>14} {:>5} MiB {:<22} {:>7.1}s  {}",
            job.workload,
            job.live / MIB,
            job.mode,
            t.elapsed().as_secs_f64(),
            r.status
        );
        if pb.is_hidden() {
            eprintln!("{line}");
        } else {
            pb.println(line);
        }
        results.push(r);
        pb.inc(1);
    }
    pb.finish_and_clear();
    // The records of `--report-only` carry the verdicts judged when they were made, over every
    // run of their set; judging again over the rows an option left would lose them (`auto`
    // rows whose copy and move runs are left out).
    if !opts.report_only {
        auto::judge(&mut results);
    }
    let fp_results = match &earlier {
        Some(e) => e.footprint.clone(),
        None => equal_memory(opts, &runs_dir),
    };
    let mut peers = report::load_peers(&opts.peers_file);
    // `--report-only` with no peers file: the peers' rows the earlier run reported.
    if let Some(e) = earlier.as_ref().filter(|_| !opts.peers_file.exists()) {
        if !e.peers.is_empty() {
            peers = report::Peers {
                rows: e.peers.clone(),
                note: format!(
                    "{} peer rows kept from the earlier {} (no peers file at {})",
                    e.peers.len(),
                    e.source,
                    opts.peers_file.display()
                ),
            };
        }
    }
    // What the report covers: the options', or with `--report-only` the records' own sizes,
    // workloads and modes for each of them not given (and a bystander row if they have one).
    let (sizes, workloads, modes, bystander) = match &earlier {
        Some(e) => {
            let ours: Vec<&RunResult> = e.main.iter().chain(&e.footprint).collect();
            let uniq = |f: &dyn Fn(&RunResult) -> Option<String>| {
                let mut v: Vec<String> = Vec::new();
                for r in &ours {
                    if let Some(x) = f(r).filter(|x| !v.contains(x)) {
                        v.push(x);
                    }
                }
                v
            };
            let mut sizes: Vec<usize> = ours.iter().map(|r| r.live_mib as usize * MIB).collect();
            sizes.sort_unstable();
            sizes.dedup();
            (
                if opts.given[0] {
                    opts.sizes.clone()
                } else {
                    sizes
                },
                if opts.given[1] {
                    opts.workloads.clone()
                } else {
                    uniq(&|r| (r.workload != "-").then(|| r.workload.clone()))
                },
                if opts.given[2] {
                    opts.modes.clone()
                } else {
                    uniq(&|r| (r.mode != "bystander-alone").then(|| r.mode.clone()))
                },
                e.main.iter().any(|r| r.mode == "bystander-alone"),
            )
        }
        None => (
            opts.sizes.clone(),
            opts.workloads.clone(),
            opts.modes.clone(),
            opts.bystander,
        ),
    };
    // `cargo bench` appends `--bench`; it is not part of the command a reader types.
    let command = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect::<Vec<_>>()
        .join(" ");
    let md = report::markdown(
        &results,
        &peers,
        &sizes,
        opts.quick,
        &command,
        started.elapsed(),
        machine.as_ref(),
    );
    // The equal-memory section goes right after the headline (before the collector's pauses).
    let mut fp_md = String::new();
    footprint::section(&mut fp_md, &fp_results, &peers.rows);
    let md = match md.find("## Collector pauses") {
        Some(at) if !fp_md.is_empty() => format!("{}{fp_md}{}", &md[..at], &md[at..]),
        _ => md + &fp_md,
    };
    let _ = std::fs::write(opts.out.join("report.md"), &md);
    let mut all = results.clone();
    all.extend(fp_results.iter().cloned());
    all.extend(peers.rows.iter().cloned());
    let plotted = plots::write_all(&opts.out, &all, &sizes);
    // `--report-only` rewrites the file with every earlier record, also those it left out.
    let left_out = earlier.as_ref().map_or(&[][..], |e| &e.left_out[..]);
    let _ = std::fs::write(
        opts.out.join("results.json"),
        serde_json::to_string_pretty(&[&all[..], left_out].concat()).unwrap_or_default(),
    );
    println!("{md}");
    eprintln!(
        "suite: report {} ({} SVG plots), {:.0} s",
        opts.out.join("report.md").display(),
        plotted,
        started.elapsed().as_secs_f64()
    );
    let mut problems = report::sanity(&results, &workloads, &modes, &sizes, bystander);
    problems.extend(footprint::sanity(&fp_results));
    problems.extend(auto::sanity(&results));
    if let Some(m) = &machine {
        problems.extend(m.sanity());
    }
    if problems.is_empty() {
        0
    } else {
        for p in &problems {
            eprintln!("suite: FAILED: {p}");
        }
        // The report is written either way; the failures are in it and listed above.
        1
    }
}

/// The records of an earlier run of the output directory, for `--report-only`.
struct Earlier {
    /// The main runs, in the order a run produces them.
    main: Vec<RunResult>,
    /// The equal-memory runs (each the calibration's chosen try).
    footprint: Vec<RunResult>,
    /// The peers' rows that run reported.
    peers: Vec<RunResult>,
    /// Its records of sizes, workloads or modes left out by the command line: not in the
    /// report, kept in the rewritten `results.json`.
    left_out: Vec<RunResult>,
    /// Where they were read from (for the report's notes).
    source: String,
}

/// `--report-only`: the earlier run's records. From `DIR/results.json` when it is there (every
/// row that run reported: main runs, equal-memory runs, peers; rewriting it keeps them all),
/// else from `DIR/runs/*.json` (main runs only: a calibration's file holds its last try, not
/// the one it chose, so the equal-memory rows are left out and the report says nothing of
/// them). Only the sizes, workloads and modes given on the command line are kept; a dimension
/// not given keeps every record, whatever the defaults are.
fn earlier(opts: &Opts, runs_dir: &Path) -> Earlier {
    let keep = |r: &RunResult| {
        (!opts.given[0] || opts.sizes.contains(&(r.live_mib as usize * MIB)))
            && (!opts.given[1] || r.workload == "-" || opts.workloads.contains(&r.workload))
            && (!opts.given[2] || opts.modes.contains(&r.mode) || r.mode == "bystander-alone")
    };
    let results_file = opts.out.join("results.json");
    if let Some(all) = std::fs::read_to_string(&results_file)
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<RunResult>>(&t).ok())
    {
        let (peers, ours): (Vec<RunResult>, Vec<RunResult>) = all.into_iter().partition(|r| r.peer);
        let (kept, left_out): (Vec<RunResult>, Vec<RunResult>) = ours.into_iter().partition(keep);
        let (footprint, main): (Vec<RunResult>, Vec<RunResult>) =
            kept.into_iter().partition(|r| r.footprint_bound.is_some());
        return Earlier {
            main,
            footprint,
            peers,
            left_out,
            source: results_file.display().to_string(),
        };
    }
    let mut main: Vec<RunResult> = std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && !name.contains("-fp")
        })
        .filter_map(|p| {
            std::fs::read_to_string(&p)
                .ok()
                .and_then(|t| serde_json::from_str::<RunResult>(&t).ok())
        })
        .filter(|r| keep(r))
        .collect();
    let rank = |v: &[String], x: &str| v.iter().position(|y| y == x).unwrap_or(usize::MAX);
    let all_modes: Vec<String> = modes::all().iter().map(|m| m.label.to_string()).collect();
    let all_workloads: Vec<String> = workloads::WORKLOADS.iter().map(|w| w.to_string()).collect();
    main.sort_by_key(|r| {
        (
            r.live_mib,
            r.workload != "-",
            rank(&all_workloads, &r.workload),
            rank(&all_modes, &r.mode),
        )
    });
    eprintln!(
        "suite: --report-only: no {}; {} records from {} (equal-memory rows cannot be rebuilt from there)",
        results_file.display(),
        main.len(),
        runs_dir.display()
    );
    Earlier {
        main,
        footprint: Vec::new(),
        peers: Vec::new(),
        left_out: Vec::new(),
        source: runs_dir.display().to_string(),
    }
}

/// The equal-memory runs: every (size, workload, mode) calibrated to each bound (see
/// `footprint`).
fn equal_memory(opts: &Opts, dir: &Path) -> Vec<RunResult> {
    let mut out = Vec::new();
    for &bound in &opts.footprints {
        for &live in &opts.sizes {
            for w in &opts.workloads {
                for m in &opts.modes {
                    let mut factor = bound;
                    let mut tries = 0;
                    // The fitting run with the highest peak RSS so far.
                    let mut best: Option<RunResult> = None;
                    let r = loop {
                        tries += 1;
                        let job = Job {
                            workload: w.clone(),
                            live,
                            mode: m.clone(),
                            footprint: Some((factor, bound)),
                        };
                        let mut r = run_child(opts, &job, dir);
                        r.heap_factor = Some(factor);
                        let next = footprint::next_factor(&r, factor, bound);
                        eprintln!(
                            "{:>14} {:>5} MiB {:<22} <= {bound}x: factor {factor:.2}, RSS / live {}, {}",
                            w,
                            live / MIB,
                            m,
                            footprint::rss_ratio(&r).map_or("n/a".into(), |x| format!("{x:.2}")),
                            r.status
                        );
                        let fits = footprint::fits(&r, bound);
                        let grown = footprint::grown_factor(&r, factor, bound);
                        if fits
                            && best.as_ref().is_none_or(|b| {
                                footprint::peak_rss_mib(&r) > footprint::peak_rss_mib(b)
                            })
                        {
                            best = Some(r.clone());
                        }
                        match (fits, next, grown) {
                            // Too large: smaller, unless a smaller heap already fitted.
                            (false, Some(f), _) if best.is_none() && tries < footprint::TRIES => {
                                factor = f
                            }
                            // Fitted with room: larger.
                            (true, _, Some(f)) if tries < footprint::TRIES => factor = f,
                            _ => break best.take().unwrap_or(r),
                        }
                    };
                    let mut r = r;
                    r.footprint_bound = Some(bound);
                    r.footprint_tries = Some(tries);
                    out.push(r);
                }
            }
        }
    }
    out
}

fn run_peers(quick: bool) {
    let script = workspace().join("benches/peers/run.sh");
    if !script.exists() {
        eprintln!(
            "suite: --peers: {} does not exist; no peers run",
            script.display()
        );
        return;
    }
    let mut c = Command::new("bash");
    c.arg(&script).current_dir(workspace());
    if quick {
        c.arg("--quick");
    }
    eprintln!("suite: running {}", script.display());
    match c.status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("suite: the peers script exited with {s}"),
        Err(e) => eprintln!("suite: running the peers script: {e}"),
    }
}
