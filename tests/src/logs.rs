//! Capturing what the library logs, for tests that prove a change is logged
//! once and a secret never is.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

/// Log output collected in memory (a `tracing_subscriber` writer).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Everything captured so far, one JSON value per line.
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

/// Everything this test binary logs, at every level, from every crate: a
/// capture installed as the global subscriber on first use. Global rather
/// than per test: tracing caches per-callsite interest process-wide, and a
/// thread-scoped subscriber misses events whose callsite another test's
/// thread registered first.
pub fn global() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
}
