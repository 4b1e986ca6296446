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
    /// Told once the engine is open, whichever call opened it.
    on_open: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl LazyEngine {
    /// Nothing opened yet; `open` runs on the first [`LazyEngine::get`] (and again after
    /// a failure); at most `max_watches` watches run at once.
    pub fn new(open: Opener, max_watches: usize) -> Self {
        LazyEngine {
            open,
            max_watches,
            state: Mutex::new(None),
            on_open: Mutex::new(None),
        }
    }

    /// Runs `f` whenever the engine is opened from now on (by any call), right after it
    /// opened; `f` must not call back into this engine.
    pub fn on_open(&self, f: impl Fn() + Send + Sync + 'static) {
        *self.on_open.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
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
        if let Some(f) = self
            .on_open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            f();
        }
        Ok(opened)
    }

    /// The engine if it was opened, without opening it.
    pub fn opened(&self) -> Option<Opened> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
