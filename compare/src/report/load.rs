//! A saved run read back: the JSON `virtlab compare --json` wrote, checked
//! for its schema version before anything else, so that a file from
//! another version or a cut-off file says what it is instead of failing on
//! some field deep inside.

use super::{CompareReport, SCHEMA};

/// Why a saved run could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not JSON at all, or cut off before its end.
    #[error("not a whole JSON document (a truncated file?)")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but with no `schema` field naming what it is.
    #[error("no \"schema\" field: not a report of `virtlab compare --json` (expected \"{SCHEMA}\")")]
    NoSchema,
    /// A report of another schema version.
    #[error("schema version \"{found}\" found, this virtlab reads \"{SCHEMA}\"")]
    OtherVersion {
        /// The version the file names.
        found: String,
    },
    /// The right version, but a field is missing or of the wrong type.
    #[error("a \"{SCHEMA}\" report, but not one this virtlab can read")]
    BadReport(#[source] serde_json::Error),
}

/// Reads a report from the text `virtlab compare --json` wrote.
pub fn from_json(text: &str) -> Result<CompareReport, LoadError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(LoadError::NotJson)?;
    match value.get("schema").and_then(serde_json::Value::as_str) {
        None => Err(LoadError::NoSchema),
        Some(found) if found != SCHEMA => Err(LoadError::OtherVersion { found: found.to_string() }),
        Some(_) => serde_json::from_value(value).map_err(LoadError::BadReport),
    }
}
