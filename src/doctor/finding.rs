//! One line of `pacsgate doctor`'s report.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub check: String,
    pub detail: String,
    pub fix: String,
}

impl Finding {
    pub fn new(level: Level, check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            level,
            check: check.into(),
            detail: detail.into(),
            fix: "nothing to do".into(),
        }
    }

    pub fn pass(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(Level::Pass, check, detail)
    }

    pub fn warn(check: impl Into<String>, detail: impl Into<String>, fix: &str) -> Self {
        Self::new(Level::Warn, check, detail).fix(fix)
    }

    pub fn fail(check: impl Into<String>, detail: impl Into<String>, fix: &str) -> Self {
        Self::new(Level::Fail, check, detail).fix(fix)
    }

    fn fix(mut self, fix: &str) -> Self {
        self.fix = fix.into();
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        // One line each, whatever a detail quoted from a file contains.
        let flat = |s: &str| s.replace(['\n', '\r'], " ");
        write!(
            f,
            "{level} {}: {} -> {}",
            flat(&self.check),
            flat(&self.detail),
            flat(&self.fix)
        )
    }
}
