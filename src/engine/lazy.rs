//! The engine of a `quarry serve`, opened on the first engine method.
//!
//! Control and debug methods never touch the store, so a server whose data folder is
//! held by another process still starts, is ready and serves them; an engine method
//! then fails with [`StoreError::Locked`](crate::store::StoreError::Locked) and the
//! next one tries again (the holder may have exited).

use std::sync::{Arc, Mutex};

use super::watch::Watches;
use super::{Engine, EngineError};

/// An open engine and the watches running on it.
#[derive(Clone)]
pub struct Opened {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Its watches.
    pub watches: Arc<Watches>,
}

/// Opens the engine: blocking (disk I/O, takes the data folder's lock).
pub type Opener = Box<dyn Fn() -> Result<Engine, EngineError> + Send + Sync>;

/// An engine opened on first use; failures are not remembered.
pub struct LazyEngine {
    open: Opener,
    max_watches: usize,
    state: Mutex<Option<Opened>>,
}

impl LazyEngine {
    /// Nothing opened yet; `open` runs on the first [`LazyEngine::get`] (and again after
    /// a failure); at most `max_watches` watches run at once.
    pub fn new(open: Opener, max_watches: usize) -> Self {
        LazyEngine {
            open,
            max_watches,
            state: Mutex::new(None),
        }
    }

    /// The engine, opening it if needed. Blocking: call it off the async threads.
    ///
    /// Errors: whatever opening fails with (`Storage`, `Locked` among them).
    pub fn get(&self) -> Result<Opened, EngineError> {
        // Held while opening: one process opens its data folder once.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = state.as_ref() {
            return Ok(o.clone());
        }
        let engine = Arc::new((self.open)()?);
        let opened = Opened {
            watches: Arc::new(Watches::new(engine.clone(), self.max_watches)),
            engine,
        };
        *state = Some(opened.clone());
        Ok(opened)
    }

    /// The engine if it was opened, without opening it.
    pub fn opened(&self) -> Option<Opened> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
