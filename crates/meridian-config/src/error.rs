use std::fmt;
use std::path::Path;

/// A config that cannot be read or is wrong, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `<defaults>`.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key at fault, e.g. `models.chat.residency`.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        ConfigError {
            file: path.display().to_string(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line of byte offset `at` in `text`.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}
