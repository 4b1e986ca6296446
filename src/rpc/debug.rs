//! Test aids served with `--debug-methods` (PROTOCOL.md §7): fault injectors for the
//! supervisor and load generators for tests and benchmarks.

use std::sync::Mutex;
use std::time::Duration;

use super::control::{
    AllocParams, AllocResult, EchoParams, Empty, ExitParams, SleepParams, SleepResult,
};
use super::router::{RequestContext, Router};
use quarry_protocol::{ErrorKind, RpcError};

/// Memory held by `debug/alloc`.
static HELD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Registers `debug/sleep`, `debug/echo`, `debug/panic`, `debug/exit`, `debug/alloc`
/// (queued) and `debug/hang` (a control method: it blocks the reader itself).
pub fn register(router: &mut Router) {
    router
        .method(
            "debug/sleep",
            "Sleeps `ms` milliseconds; one progress notification per 10 ms slept.",
            sleep,
        )
        .method(
            "debug/echo",
            "Returns its params (without `_meta`).",
            |p: EchoParams, _ctx| async move { Ok::<_, RpcError>(p) },
        )
        .method(
            "debug/panic",
            "Panics inside the handler; answered -32603.",
            |_: Empty, _ctx| async move {
                if true {
                    panic!("debug/panic requested");
                }
                Ok::<Empty, RpcError>(Empty {})
            },
        )
        .method(
            "debug/exit",
            "Exits the process at once with `code` (a crash).",
            |p: ExitParams, _ctx| async move {
                tracing::warn!(code = p.code, "debug/exit");
                std::process::exit(p.code);
                #[allow(unreachable_code)]
                Ok::<Empty, RpcError>(Empty {})
            },
        )
        .method(
            "debug/alloc",
            "Allocates, touches and keeps `mb` MiB.",
            alloc,
        )
        .control(
            "debug/hang",
            "Stops reading and answering anything for 10 minutes (a hang).",
            |_: Empty, _| {
                tracing::warn!("debug/hang: not reading or answering anything for 10 minutes");
                // Blocks the runtime thread on purpose: reader, writer and workers all stop.
                std::thread::sleep(Duration::from_secs(600));
                Ok(Empty {})
            },
        );
}

/// Sleeps on a blocking thread with the OS's precise timer (tokio's timer wheel rounds
/// to whole milliseconds, which would make a 10 ms sleep last 11–12 ms). Dropping the
/// future (cancel, deadline) drops `stop`, which wakes the thread at once.
async fn sleep(p: SleepParams, ctx: RequestContext) -> Result<SleepResult, RpcError> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let progress = ctx.progress.clone();
    let ms = p.ms;
    let worker = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        let end = start + Duration::from_millis(ms);
        let mut tick = 1u64;
        loop {
            let next = if progress.is_enabled() {
                (start + Duration::from_millis(10 * tick)).min(end)
            } else {
                end
            };
            let wait = next.saturating_duration_since(std::time::Instant::now());
            match stopped.recv_timeout(wait) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return false,
            }
            if next >= end {
                return true;
            }
            progress.report((10 * tick) as f64, Some(ms as f64), None);
            tick += 1;
        }
    });
    let finished = worker
        .await
        .map_err(|e| RpcError::internal(format!("sleep worker failed: {e}")))?;
    drop(stop);
    if finished {
        Ok(SleepResult { slept: ms })
    } else {
        Err(RpcError::new(ErrorKind::Cancelled, "cancelled"))
    }
}

async fn alloc(p: AllocParams, _ctx: RequestContext) -> Result<AllocResult, RpcError> {
    let bytes = usize::try_from(p.mb)
        .ok()
        .and_then(|mb| mb.checked_mul(1 << 20))
        .ok_or_else(|| RpcError::invalid_params("mb", "too large"))?;
    tokio::task::spawn_blocking(move || {
        let mut block: Vec<u8> = Vec::new();
        block
            .try_reserve_exact(bytes)
            .map_err(|e| RpcError::internal(format!("allocation failed: {e}")))?;
        block.resize(bytes, 1);
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.push(block);
        let total: usize = held.iter().map(Vec::len).sum();
        Ok(AllocResult {
            held_mb: (total >> 20) as u64,
        })
    })
    .await
    .map_err(|e| RpcError::internal(e.to_string()))?
}
