//! The input CSV: encoding, dialect, header aliases and per-row parsing.
//! The one place that knows what a spreadsheet export looks like.
//!
//! INTERFACE STUB: being implemented.

use std::fmt;
use std::path::Path;

use crate::okta::FactorType;
use crate::phone::{Phone, PhoneOptions};

/// Options that decide how the file is read.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// Header name of the user column, overriding the aliases.
    pub user_column: Option<String>,
    /// Header name of the new-phone column, overriding the aliases.
    pub phone_column: Option<String>,
    pub phone: PhoneOptions,
    /// Extensions are allowed only for `call`.
    pub factor_type: FactorType,
}

/// What kind of identifier the user column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserColumnKind {
    /// `user`, `user_id`, `id`, `login`, `username`: an id or a login.
    IdOrLogin,
    /// `email`: tried as a login, then as `profile.email`.
    Email,
}

/// The columns chosen from the header, and the detected dialect.
#[derive(Debug, Clone)]
pub struct Columns {
    pub user: usize,
    pub user_name: String,
    pub user_kind: UserColumnKind,
    pub phone: usize,
    pub phone_name: String,
    pub old_phone: Option<usize>,
    pub extension: Option<usize>,
    pub delimiter: u8,
    pub had_bom: bool,
}

/// How a row names its user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserRef {
    /// An Okta user id (`00u…`).
    Id(String),
    /// A login (may contain `@`, `+`, `#`, `/`, ...).
    Login(String),
    /// From an `email` column: a login first, then `profile.email`.
    Email(String),
}

impl UserRef {
    pub fn as_str(&self) -> &str {
        match self {
            UserRef::Id(s) | UserRef::Login(s) | UserRef::Email(s) => s,
        }
    }
}

/// A row that parsed: who, and what number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRequest {
    pub user: UserRef,
    pub phone: Phone,
    /// Precondition from an `old_phone`/`current_phone` column.
    pub old_phone: Option<Phone>,
    /// Non-fatal remarks (e.g. "number normalised from national format").
    pub warnings: Vec<String>,
}

/// Why a row cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowInvalid {
    /// Header name of the offending column.
    pub column: String,
    pub message: String,
}

impl fmt::Display for RowInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {:?}: {}", self.column, self.message)
    }
}

/// One data row of the input.
#[derive(Debug, Clone)]
pub struct InputRow {
    /// 1-based data row number (header not counted, blank lines not counted).
    pub row: u64,
    /// 1-based physical line in the file where the row starts.
    pub line: u64,
    /// The user cell, trimmed.
    pub user_raw: String,
    /// The new-phone cell, trimmed.
    pub phone_raw: String,
    pub parsed: Result<RowRequest, RowInvalid>,
}

/// A problem with the file as a whole: nothing can be done with it.
#[derive(Debug)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Streams the rows of one input file.
pub struct InputReader {
    columns: Columns,
}

impl InputReader {
    /// Opens the file and checks everything file-level before any row is
    /// used: encoding (whole file), delimiter, header and column choice.
    pub fn open(path: &Path, opts: &InputOptions) -> Result<InputReader, InputError> {
        let _ = (path, opts);
        unimplemented!("InputReader::open")
    }

    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// The next data row, or `None` at the end of the file.
    #[allow(clippy::should_implement_trait)]
    pub fn next_row(&mut self) -> Option<Result<InputRow, InputError>> {
        unimplemented!("InputReader::next_row")
    }
}
