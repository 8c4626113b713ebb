//! Profiling one phase of a bench with `perf record`: started disabled with a control FIFO, perf
//! samples only while the phase named by `CARERECORD_BENCH_PERF_PHASE` runs. For example:
//!
//! ```text
//! mkfifo /tmp/perf.ctl
//! CARERECORD_BENCH_PERF_CONTROL=/tmp/perf.ctl CARERECORD_BENCH_PERF_PHASE=through \
//!   perf record -D -1 --control fifo:/tmp/perf.ctl -g --call-graph dwarf -- <bench binary>
//! ```

use std::io::Write;
use std::sync::Mutex;

static CONTROL: Mutex<Option<std::fs::File>> = Mutex::new(None);

fn send(command: &str) {
    let mut control = CONTROL.lock().expect("perf control");
    if control.is_none() {
        let Ok(path) = std::env::var("CARERECORD_BENCH_PERF_CONTROL") else {
            return;
        };
        *control = std::fs::OpenOptions::new().write(true).open(path).ok();
    }
    if let Some(fifo) = control.as_mut() {
        let _ = writeln!(fifo, "{command}");
    }
}

/// Whether `phase` is the one to profile.
fn chosen(phase: &str) -> bool {
    std::env::var("CARERECORD_BENCH_PERF_PHASE").is_ok_and(|p| !p.is_empty() && phase == p)
}

/// Starts sampling if `phase` is the one to profile.
pub fn enter(phase: &str) {
    if chosen(phase) {
        send("enable");
    }
}

/// Stops sampling if `phase` is the one to profile.
pub fn leave(phase: &str) {
    if chosen(phase) {
        send("disable");
    }
}
