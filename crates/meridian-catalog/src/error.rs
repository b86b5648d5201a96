use std::path::PathBuf;

/// A catalog file that cannot be read, parsed or trusted.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {what}")]
    Invalid { file: String, what: String },
}
