//! Test aids served with `--debug-methods` (PROTOCOL.md §7): fault injectors for the
//! supervisor and load generators for tests and benchmarks.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::control::{
    AllocParams, AllocResult, EchoParams, Empty, ExitParams, SleepParams, SleepResult,
};
use super::error::RpcError;
use super::router::{MethodKind, RequestContext, Router};

/// Memory held by `debug/alloc`.
static HELD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Registers `debug/sleep`, `debug/echo`, `debug/panic`, `debug/exit`, `debug/alloc` and
/// documents `debug/hang` (answered by the server itself).
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
        .document::<Empty, Empty>(
            "debug/hang",
            "Stops reading and answering anything for 10 minutes (a hang).",
            MethodKind::Control,
        );
}

async fn sleep(p: SleepParams, ctx: RequestContext) -> Result<SleepResult, RpcError> {
    let start = Instant::now();
    let end = start + Duration::from_millis(p.ms);
    let mut tick = 1u64;
    loop {
        let next = (start + Duration::from_millis(10 * tick)).min(end);
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Err(RpcError::new(super::error::ErrorKind::Cancelled, "cancelled")),
            _ = tokio::time::sleep_until(next) => {}
        }
        if next >= end {
            break;
        }
        ctx.progress
            .report((10 * tick) as f64, Some(p.ms as f64), None);
        tick += 1;
    }
    Ok(SleepResult { slept: p.ms })
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
