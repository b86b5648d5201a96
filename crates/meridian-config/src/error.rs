use std::fmt;
use std::path::Path;

use toml::Spanned;

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

/// Builds errors that point into one file.
pub(crate) struct At<'a> {
    pub(crate) text: &'a str,
    pub(crate) file: String,
}

impl At<'_> {
    pub(crate) fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: span.map(|s| line_of(self.text, s.start)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    pub(crate) fn at<V>(
        &self,
        spanned: &Spanned<V>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.err(Some(spanned.span()), key, message)
    }
}
