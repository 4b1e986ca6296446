//! The method table of `quarry serve`: control methods, test aids, and (later) the engine.

use crate::rpc::schema::{OutgoingNotification, core_notifications};
use crate::rpc::{Router, debug, register_control};

/// Every method `quarry serve` answers; the `debug/*` test aids only when `debug`.
pub fn router(debug: bool) -> Router {
    let mut router = Router::new();
    register_control(&mut router);
    if debug {
        debug::register(&mut router);
    }
    router
}

/// Every notification `quarry serve` sends.
pub fn notifications() -> Vec<OutgoingNotification> {
    core_notifications()
}
