//! What a refused settings file gets: the file, the key and what would be valid.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("{file}: {key}: {message}")]
    Value { file: String, key: String, message: String },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: cannot read it: {message}")]
    Io { file: String, message: String },
}
