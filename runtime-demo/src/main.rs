//! The `runtime-demo` command: `run` a program, start a `repl`, or `probe` what the kernel's
//! userfaultfd offers.
//!
//! Exit codes: 0 success; 1 a program error (syntax, runtime, out of memory) or a heap that
//! could not be created; 2 a usage error (bad option, unsupported GC configuration, unreadable
//! file); `(exit n)` exits with `n`.
//!
//! Invariants: program output goes to stdout; diagnostics, the GC log and the end-of-run GC
//! summary go to stderr, after the program output has been flushed. The summary is printed
//! after every `run` whose heap was created, whether the program succeeded or not.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use faultline::{Heap, HeapError};
use runtime_demo::options::{self, BarrierArg, FaultsArg, GcArg, GcOptions, StrategyArg};
use runtime_demo::report::RunStats;
use runtime_demo::{reader, value, EvalError, Vm, VmConfig};

#[derive(Parser)]
#[command(
    name = "runtime-demo",
    version,
    about = "A toy Scheme-like runtime on the Faultline heap"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program file and print its GC summary.
    Run {
        /// The program.
        file: PathBuf,
        #[command(flatten)]
        gc: GcArgs,
        /// Write run statistics as one JSON object to PATH.
        #[arg(long, value_name = "PATH")]
        stats_json: Option<PathBuf>,
        /// Maximum depth of the VM's value stack, in slots (each non-tail call takes at least
        /// 3); deeper recursion is a "stack depth exceeded" error.
        #[arg(long, value_name = "SLOTS", default_value_t = VmConfig::default().max_stack)]
        max_stack: usize,
        /// Arguments for the program, returned by `(command-line)` (put them after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Read-eval-print loop (multi-line input is completed by balancing parentheses).
    Repl {
        #[command(flatten)]
        gc: GcArgs,
    },
    /// Report the userfaultfd capabilities of this kernel.
    Probe {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct GcArgs {
    /// Heap size (moving space), e.g. 64M, 1G, 512K.
    #[arg(long, value_name = "SIZE", value_parser = options::parse_size)]
    heap: Option<usize>,
    /// Collector.
    #[arg(long, value_enum)]
    gc: Option<GcArg>,
    /// Page-mapping strategy of concurrent compaction.
    #[arg(long, value_enum)]
    strategy: Option<StrategyArg>,
    /// Fault delivery of concurrent compaction.
    #[arg(long, value_enum)]
    faults: Option<FaultsArg>,
    /// Concurrent-marking barrier.
    #[arg(long, value_enum)]
    barrier: Option<BarrierArg>,
    /// Print one line per GC cycle to stderr.
    #[arg(long)]
    gc_log: bool,
    /// Verify the heap before and after every collection.
    #[arg(long)]
    verify: bool,
    /// Collect every N allocations (per thread).
    #[arg(long, value_name = "N")]
    gc_stress: Option<u64>,
    /// Collect at seeded random allocation intervals of mean N (per thread).
    #[arg(long, value_name = "N")]
    gc_stress_random: Option<u64>,
    /// Seed of --gc-stress-random.
    #[arg(long, value_name = "SEED")]
    gc_stress_seed: Option<u64>,
    /// Sleep this many milliseconds between the phases of a concurrent cycle (widens races).
    #[arg(long, value_name = "MS")]
    gc_phase_delay: Option<u64>,
    /// Poison released memory, so a stale read faults (or reads a poison pattern).
    #[arg(long)]
    gc_poison: bool,
}

impl GcArgs {
    fn options(&self) -> GcOptions {
        GcOptions {
            heap: self.heap,
            gc: self.gc,
            strategy: self.strategy,
            faults: self.faults,
            barrier: self.barrier,
            verify: self.verify,
            stress: self.gc_stress,
            stress_random: self.gc_stress_random,
            stress_seed: self.gc_stress_seed,
            phase_delay_ms: self.gc_phase_delay,
            poison: self.gc_poison,
        }
    }
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("runtime-demo: error: {msg}");
    ExitCode::from(2)
}

/// Builds the heap the options ask for. `Err` is the exit code after reporting.
fn make_heap(gc: &GcArgs, slot: &Arc<Mutex<Option<Heap>>>) -> Result<Heap, ExitCode> {
    let mut config = gc.options().heap_config().map_err(usage_error)?;
    if gc.gc_log {
        options::install_gc_log(&mut config, slot.clone());
    }
    match Heap::new(config) {
        Ok(h) => {
            if gc.gc_log {
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(h.clone());
                // What runs and why (measured figures included for `--strategy auto`).
                for r in &h.mode_info().reasons {
                    eprintln!("[gc,mode] {r}");
                }
            }
            Ok(h)
        }
        Err(HeapError::Config(e)) => Err(usage_error(format!(
            "the heap does not support this configuration: {e}"
        ))),
        Err(e) => {
            eprintln!("runtime-demo: error: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn stdout_sink() -> Box<dyn Write + Send> {
    Box::new(std::io::BufWriter::with_capacity(
        64 << 10,
        std::io::stdout(),
    ))
}

fn run(
    file: PathBuf,
    gc: GcArgs,
    stats_json: Option<PathBuf>,
    max_stack: usize,
    args: Vec<String>,
) -> ExitCode {
    let src = match std::fs::read_to_string(&file) {
        Ok(s) => s,
        Err(e) => return usage_error(format!("cannot read {}: {e}", file.display())),
    };
    let start = Instant::now();
    let slot = Arc::new(Mutex::new(None));
    let heap = match make_heap(&gc, &slot) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let mut code = 0;
    {
        let config = VmConfig {
            args,
            max_stack,
            ..VmConfig::default()
        };
        let mut vm = match Vm::new(heap.clone(), config, stdout_sink()) {
            Ok(vm) => vm,
            Err(e) => {
                eprintln!("runtime-demo: error: {e}");
                return ExitCode::from(1);
            }
        };
        let name = file.display().to_string();
        let r = vm.eval_source(&name, &src);
        let joined = vm.join_all();
        vm.flush();
        let failure = match (r, joined) {
            (Err(e), _) => Some(e),
            (Ok(_), Err(e)) => Some(EvalError::Runtime(e)),
            _ => None,
        };
        if let Some(e) = failure {
            code = e.exit_code();
            if !matches!(
                &e,
                EvalError::Runtime(r) if matches!(r.kind, runtime_demo::ErrorKind::Exit(_))
            ) {
                eprint!("{}", vm.render(&e));
            }
        }
    }
    let stats = RunStats::collect(&heap, start.elapsed());
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
    eprint!("{}", stats.table());
    if let Some(path) = stats_json {
        let text = format!("{}\n", stats.to_json());
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("runtime-demo: error: cannot write {}: {e}", path.display());
            if code == 0 {
                code = 2;
            }
        }
    }
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn repl(gc: GcArgs) -> ExitCode {
    let slot = Arc::new(Mutex::new(None));
    let heap = match make_heap(&gc, &slot) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let mut vm = match Vm::new(heap, VmConfig::default(), stdout_sink()) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("runtime-demo: error: {e}");
            return ExitCode::from(1);
        }
    };
    let interactive = std::io::stdin().is_terminal();
    let mut input = std::io::stdin().lock();
    let mut buf = String::new();
    let mut code = 0;
    loop {
        if interactive {
            print!("{}", if buf.is_empty() { "> " } else { "... " });
            let _ = std::io::stdout().flush();
        }
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        buf.push_str(&line);
        if let Err(e) = reader::read_all("<repl>", &buf) {
            if e.is_incomplete() {
                continue;
            }
        }
        let name = vm.next_input_name();
        let text = std::mem::take(&mut buf);
        match vm.eval_source(&name, &text) {
            Ok(v) => {
                if v != value::UNSPEC {
                    let s = format!("{}\n", runtime_demo::printer::to_string(&vm, v, true));
                    let _ = vm.write_out_public(s.as_bytes());
                }
                vm.flush();
            }
            Err(e) => {
                vm.flush();
                if let EvalError::Runtime(r) = &e {
                    if let runtime_demo::ErrorKind::Exit(c) = r.kind {
                        code = c;
                        break;
                    }
                }
                eprint!("{}", vm.render(&e));
            }
        }
    }
    if !buf.trim().is_empty() {
        // End of input inside an unfinished datum: report it.
        let name = vm.next_input_name();
        if let Err(e) = vm.eval_source(&name, &buf) {
            eprint!("{}", vm.render(&e));
            code = 1;
        }
    }
    let _ = vm.join_all();
    vm.flush();
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            file,
            gc,
            stats_json,
            max_stack,
            args,
        } => run(file, gc, stats_json, max_stack, args),
        Command::Repl { gc } => repl(gc),
        Command::Probe { json } => {
            let probe = faultline::Probe::run();
            if json {
                println!("{}", probe.to_json());
            } else {
                print!("{}", probe.table());
            }
            ExitCode::SUCCESS
        }
    }
}
