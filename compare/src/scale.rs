//! Many instances at once: how long it takes to get N of them through the
//! `ready` workload together, and what each costs in memory. This turns
//! "containers waste fewer resources" into a curve.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::env::launch;
use crate::launch::{Context, Env, MemoryMethod, Workload};

/// N instances of one environment, started together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalePoint {
    /// Environment.
    pub env: Env,
    /// Instances started at once.
    pub instances: usize,
    /// From the start to the last one's exit, µs.
    pub wall_us: f64,
    /// Instances completed per second.
    pub per_second: f64,
    /// Mean host memory per instance, bytes.
    pub memory_per_instance_bytes: Option<f64>,
    /// How it was measured: a cgroup peak for each instance, or the
    /// in-process estimate (absent in reports that predate the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_method: Option<MemoryMethod>,
    /// Instances that failed (their errors are in `errors`).
    pub failed: usize,
    /// The first few errors.
    pub errors: Vec<String>,
}

/// Starts `n` instances of `ready` in `env` at the same moment, one thread
/// each, and waits for all of them.
pub fn run_point(env: Env, n: usize, ctx: &Context) -> ScalePoint {
    let n = n.max(1);
    let ready = Workload { mode: "ready".into(), arg: None };
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (b, ctx, w) = (Arc::clone(&barrier), ctx.clone(), ready.clone());
            std::thread::spawn(move || {
                b.wait();
                launch(env, &w, i, &ctx)
            })
        })
        .collect();
    barrier.wait();
    let t0 = Instant::now();
    let results: Vec<_> =
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("the launch thread panicked".into()))).collect();
    let wall = t0.elapsed().as_secs_f64();
    let mems: Vec<f64> = results.iter().filter_map(|r| r.as_ref().ok()?.memory_bytes).map(|m| m as f64).collect();
    let errors: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    let ok = n - errors.len();
    ScalePoint {
        env,
        instances: n,
        wall_us: wall * 1e6,
        per_second: if wall > 0.0 { ok as f64 / wall } else { 0.0 },
        memory_per_instance_bytes: (!mems.is_empty()).then(|| mems.iter().sum::<f64>() / mems.len() as f64),
        memory_method: results.iter().find_map(|r| r.as_ref().ok()?.memory_method),
        failed: errors.len(),
        errors: errors.into_iter().take(3).collect(),
    }
}

/// Parses "1,4,16,64".
pub fn parse_counts(text: &str) -> Result<Vec<usize>, String> {
    let mut v = Vec::new();
    for w in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let n: usize = w.parse().map_err(|_| format!("--scale {w:?}: give instance counts like 1,4,16,64"))?;
        if n == 0 || n > 256 {
            return Err(format!("--scale {n}: give counts between 1 and 256"));
        }
        v.push(n);
    }
    if v.is_empty() {
        return Err("--scale needs at least one count".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_counts("1,4, 16").unwrap(), vec![1, 4, 16]);
        assert!(parse_counts("0").is_err());
        assert!(parse_counts("1000").is_err());
        assert!(parse_counts("a").is_err());
        assert!(parse_counts("").is_err());
    }
}
