//! The input CSV: encoding, dialect, header aliases and per-row parsing.
//! The one place that knows what a spreadsheet export looks like.
//!
//! Why it is built this way:
//! - The files come from Excel and friends, so the common export variants
//!   (UTF-8 BOM, `;` or tab delimiters, CRLF, padded cells, blank lines,
//!   `sep=` first lines) are read as the user meant them.
//! - A file in the wrong encoding is refused as a whole in [`InputReader::open`]
//!   before any row is used: finding out at row 80 000 that the file is
//!   Windows-1252, after 79 999 factors were replaced, is the worst moment.
//!   The check streams the file, so a million-row export costs no memory.
//! - Everything about one row is data, not an error: a bad row becomes an
//!   [`InputRow`] whose `parsed` says which column is wrong and why, so the
//!   report can list it and the run goes on. Only problems with the file as
//!   a whole are [`InputError`]s.
//! - Rows are streamed through one reused record buffer; nothing keeps all
//!   rows in memory.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::okta::{FactorType, looks_like_user_id};
use crate::phone::{self, Phone, PhoneOptions};

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

/// Header names (after [`header_key`]) that may hold the user.
pub const USER_ALIASES: [&str; 5] = ["user", "user_id", "id", "login", "username"];
/// The user alias used only when none of [`USER_ALIASES`] is present.
pub const EMAIL_ALIAS: &str = "email";
/// Header names that may hold the new phone number; the first wins over
/// the others when present.
pub const PHONE_ALIASES: [&str; 5] = ["new_phone", "phone", "phone_number", "mobile", "number"];
/// Header names of the optional precondition column.
pub const OLD_PHONE_ALIASES: [&str; 2] = ["old_phone", "current_phone"];
/// Header name of the optional extension column.
pub const EXTENSION_ALIAS: &str = "extension";
/// [`RowInvalid::column`] for a problem with the row as a whole (its field
/// count), which belongs to no single column.
pub const WHOLE_ROW: &str = "(whole row)";

/// How header names are compared: `New Phone`, `new-phone`, `NEW_PHONE` and
/// `NewPhone` all name the same column, since spreadsheet users write all
/// of them. Separators are dropped rather than unified so that `User Name`
/// meets `username` too.
pub fn header_key(name: &str) -> String {
    name.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
        .chars()
        .filter(|&c| !(c == '-' || c == '_' || c.is_whitespace()))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Streams the rows of one input file.
pub struct InputReader {
    columns: Columns,
    csv: csv::Reader<NewlineTap<File>>,
    /// Reused for every row: no allocation per record.
    record: csv::StringRecord,
    header: Vec<String>,
    opts: InputOptions,
    shown_path: String,
    rows: u64,
    finished: bool,
}

impl InputReader {
    /// Opens the file and checks everything file-level before any row is
    /// used: encoding (whole file), delimiter, header and column choice.
    pub fn open(path: &Path, opts: &InputOptions) -> Result<InputReader, InputError> {
        let shown_path = path.display().to_string();
        let fail = |message: String| InputError(format!("{shown_path}: {message}"));
        let mut file =
            File::open(path).map_err(|e| fail(format!("cannot open the input file: {e}")))?;
        let bom_len = scan_encoding(&mut file).map_err(|e| fail(e.into_message()))?;
        let rewind = |file: &mut File| {
            file.seek(SeekFrom::Start(bom_len))
                .map(drop)
                .map_err(|e| fail(format!("cannot read the input file: {e}")))
        };
        rewind(&mut file)?;
        let first = first_lines(&mut file).map_err(fail)?;
        rewind(&mut file)?;
        let Some((header_line_no, header_text)) = &first.header else {
            return Err(fail(
                "the file has no header line (it is empty or blank): expected a header such as \
                 user,new_phone followed by one row per user"
                    .to_string(),
            ));
        };
        let delimiter = match first.sep {
            Some(d) => d,
            None => detect_delimiter(header_text, opts)
                .map_err(|m| fail(format!("header (line {header_line_no}): {m}")))?,
        };

        let mut csv = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            // A row with the wrong field count is the row's problem, not
            // the file's: it is reported as an invalid row.
            .flexible(true)
            .from_reader(NewlineTap::new(file));
        let mut record = csv::StringRecord::new();
        let mut skip_sep_line = first.sep.is_some();
        let header_line = loop {
            let more = csv
                .read_record(&mut record)
                .map_err(|e| fail(csv_failure(&e)))?;
            if !more {
                return Err(fail("the file has no header line".to_string()));
            }
            let line = record_line(&mut csv, &record);
            if is_blank(&record) {
                continue;
            }
            if skip_sep_line {
                skip_sep_line = false;
                continue;
            }
            break line;
        };
        let header: Vec<String> = record.iter().map(|h| h.trim().to_string()).collect();
        let chosen = choose_columns(&header, opts)
            .map_err(|m| fail(format!("header (line {header_line}): {m}")))?;
        let columns = Columns {
            user: chosen.user,
            user_name: header[chosen.user].clone(),
            user_kind: chosen.user_kind,
            phone: chosen.phone,
            phone_name: header[chosen.phone].clone(),
            old_phone: chosen.old_phone,
            extension: chosen.extension,
            delimiter,
            had_bom: bom_len > 0,
        };
        Ok(InputReader {
            columns,
            csv,
            record,
            header,
            opts: opts.clone(),
            shown_path,
            rows: 0,
            finished: false,
        })
    }

    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// The header names, trimmed, in file order.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The next data row, or `None` at the end of the file.
    #[allow(clippy::should_implement_trait)]
    pub fn next_row(&mut self) -> Option<Result<InputRow, InputError>> {
        if self.finished {
            return None;
        }
        let line = loop {
            match self.csv.read_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => {
                    self.finished = true;
                    return None;
                }
                Err(e) => {
                    // The reader's state after an I/O or encoding failure is
                    // not trustworthy: stop rather than guess at more rows.
                    self.finished = true;
                    return Some(Err(InputError(format!(
                        "{}: {}",
                        self.shown_path,
                        csv_failure(&e)
                    ))));
                }
            }
            let line = record_line(&mut self.csv, &self.record);
            if !is_blank(&self.record) {
                break line;
            }
        };
        self.rows += 1;
        let cell = |i: usize| self.record.get(i).map_or("", str::trim);
        let user_raw = cell(self.columns.user).to_string();
        let phone_raw = cell(self.columns.phone).to_string();
        let parsed = self.parse_row(&user_raw, &phone_raw);
        Some(Ok(InputRow {
            row: self.rows,
            line,
            user_raw,
            phone_raw,
            parsed,
        }))
    }

    fn parse_row(&self, user_raw: &str, phone_raw: &str) -> Result<RowRequest, RowInvalid> {
        let c = &self.columns;
        let invalid = |column: &str, message: String| RowInvalid {
            column: column.to_string(),
            message,
        };
        let fields = self.record.len();
        if fields != self.header.len() {
            let column = self.header.get(fields).map_or(WHOLE_ROW, String::as_str);
            return Err(invalid(
                column,
                format!(
                    "the row has {fields} field{} but the header has {}: a delimiter is missing \
                     or extra (is there an unquoted {} inside a value?)",
                    if fields == 1 { "" } else { "s" },
                    self.header.len(),
                    delimiter_name(c.delimiter)
                ),
            ));
        }
        let user = parse_user(user_raw, c.user_kind).map_err(|m| invalid(&c.user_name, m))?;

        let factor_type = self.opts.factor_type;
        let mut warnings = Vec::new();
        let new = phone::normalize_for(phone_raw, &self.opts.phone, factor_type)
            .map_err(|e| invalid(&c.phone_name, e.0))?;
        let mut new_phone = new.phone;
        warnings.extend(
            new.warnings
                .into_iter()
                .map(|w| format!("{}: {w}", c.phone_name)),
        );

        if let Some(i) = c.extension {
            let name = &self.header[i];
            let cell = self.record.get(i).map_or("", str::trim);
            if let Some(ext) = phone::normalize_extension(cell).map_err(|e| invalid(name, e.0))? {
                if factor_type != FactorType::Call {
                    return Err(invalid(
                        name,
                        format!(
                            "the row gives an extension, but {factor_type} factors cannot dial \
                             one: leave the column empty (extensions are only for --factor-type \
                             call)"
                        ),
                    ));
                }
                match &new_phone.extension {
                    Some(in_cell) if *in_cell != ext => {
                        return Err(invalid(
                            name,
                            format!(
                                "the extension {ext:?} differs from the one written in the {:?} \
                                 column ({in_cell:?}): keep only one",
                                c.phone_name
                            ),
                        ));
                    }
                    _ => new_phone.extension = Some(ext),
                }
            }
        }

        let old_phone = match c.old_phone {
            None => None,
            Some(i) => {
                let name = &self.header[i];
                let cell = self.record.get(i).map_or("", str::trim);
                if cell.is_empty() {
                    None
                } else {
                    let old = phone::normalize_for(cell, &self.opts.phone, factor_type)
                        .map_err(|e| invalid(name, e.0))?;
                    warnings.extend(old.warnings.into_iter().map(|w| format!("{name}: {w}")));
                    Some(old.phone)
                }
            }
        };
        Ok(RowRequest {
            user,
            phone: new_phone,
            old_phone,
            warnings,
        })
    }
}

/// Remembers where the line feeds are in the bytes the CSV reader has
/// buffered but not yet parsed. The reader's own line count is taken before
/// it skips blank lines and the `\n` of a CRLF, so it names the wrong line;
/// the end of a record, with this, names the right one.
struct NewlineTap<R> {
    inner: R,
    offset: u64,
    /// Offsets of `\n` bytes at or after the last parsed record's end:
    /// bounded by the reader's read-ahead, not by the file.
    newlines: VecDeque<u64>,
}

impl<R> NewlineTap<R> {
    fn new(inner: R) -> Self {
        NewlineTap {
            inner,
            offset: 0,
            newlines: VecDeque::new(),
        }
    }

    fn is_newline(&self, at: u64) -> bool {
        self.newlines.binary_search(&at).is_ok()
    }

    fn forget_before(&mut self, at: u64) {
        while self.newlines.front().is_some_and(|&n| n < at) {
            self.newlines.pop_front();
        }
    }
}

impl<R: Read> Read for NewlineTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let base = self.offset;
        self.newlines.extend(
            buf[..n]
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'\n')
                .map(|(i, _)| base + i as u64),
        );
        self.offset += n as u64;
        Ok(n)
    }
}

/// The physical line a record just read starts on: the reader's line count
/// after the record, less its `\n` terminator if it consumed one, less the
/// line breaks inside quoted cells.
fn record_line(csv: &mut csv::Reader<NewlineTap<File>>, record: &csv::StringRecord) -> u64 {
    let end = csv.position().byte();
    let after = csv.position().line();
    let tap = csv.get_mut();
    let ended_by_newline = end > 0 && tap.is_newline(end - 1);
    tap.forget_before(end);
    let inside = newlines(record.as_byte_record().as_slice());
    after
        .saturating_sub(u64::from(ended_by_newline))
        .saturating_sub(inside)
        .max(1)
}

/// Reads the user cell. Okta logins may hold `+ # / ? @ %` and more, so
/// only what no login can contain is refused: nothing, whitespace, control
/// and invisible formatting characters (which come from copy-paste and
/// would make the lookup fail with a puzzling "not found").
/// The longest login Okta's user schema allows.
pub const MAX_USER_CHARS: usize = 100;

pub fn parse_user(raw: &str, kind: UserColumnKind) -> Result<UserRef, String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err("the user is empty".to_string());
    }
    // Okta's schema caps a login at 100 characters; anything much longer
    // is a damaged cell, and is not worth a request (or a log line).
    let chars = value.chars().count();
    if chars > MAX_USER_CHARS {
        return Err(format!(
            "the user has {chars} characters; Okta logins have at most {MAX_USER_CHARS}"
        ));
    }
    if let Some(c) = value.chars().find(|&c| c.is_control()) {
        return Err(format!(
            "the user contains a control character (U+{:04X}); remove it",
            u32::from(c)
        ));
    }
    if let Some(c) = value.chars().find(|&c| is_invisible(c)) {
        return Err(format!(
            "the user contains an invisible character (U+{:04X}), probably from copy and \
             paste; remove it",
            u32::from(c)
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace()) {
        return Err(format!(
            "the user {value:?} contains whitespace (U+{:04X}); Okta logins and ids cannot",
            u32::from(c)
        ));
    }
    Ok(if looks_like_user_id(value) {
        UserRef::Id(value.to_string())
    } else {
        match kind {
            UserColumnKind::Email => UserRef::Email(value.to_string()),
            UserColumnKind::IdOrLogin => UserRef::Login(value.to_string()),
        }
    })
}

/// Zero-width and direction marks: not whitespace to Rust, not visible to
/// the person reading the spreadsheet.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
            | '\u{feff}'
    )
}

/// A record with nothing but empty cells: what a blank line, or a row that
/// Excel kept only because it was once formatted (`,,`), looks like.
fn is_blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|f| f.trim().is_empty())
}

fn delimiter_name(d: u8) -> String {
    match d {
        b'\t' => "tab".to_string(),
        other => format!("'{}'", char::from(other)),
    }
}

fn csv_failure(e: &csv::Error) -> String {
    let line = e.position().map(csv::Position::line);
    match (e.kind(), line) {
        (csv::ErrorKind::Io(io), _) => format!("cannot read the input file: {io}"),
        (_, Some(line)) => format!("line {line}: {e}"),
        (_, None) => e.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Encoding

/// Why the bytes of the file are not UTF-8.
#[derive(Debug)]
enum EncodingProblem {
    Io(io::Error),
    Utf16 {
        line: u64,
        big_endian: bool,
        bom: bool,
    },
    NotUtf8 {
        line: u64,
        byte: u8,
    },
}

impl EncodingProblem {
    fn into_message(self) -> String {
        const SAVE_AS: &str = "In Excel choose File > Save As > 'CSV UTF-8 (Comma delimited)'";
        match self {
            EncodingProblem::Io(e) => format!("cannot read the input file: {e}"),
            EncodingProblem::Utf16 {
                line,
                big_endian,
                bom,
            } => {
                let order = if big_endian { "BE" } else { "LE" };
                let evidence = if bom {
                    "it starts with a UTF-16 byte-order mark".to_string()
                } else {
                    format!("line {line} contains NUL bytes")
                };
                format!(
                    "line {line}: the file is UTF-16 {order} ({evidence}; Excel calls this \
                     'Unicode Text'), not UTF-8. {SAVE_AS}, or convert it: \
                     iconv -f UTF-16{order} -t UTF-8 <file> > converted.csv"
                )
            }
            EncodingProblem::NotUtf8 { line, byte } => {
                let guess = windows_1252(byte)
                    .map(|c| format!(", which is {c:?} in Windows-1252"))
                    .unwrap_or_default();
                format!(
                    "line {line} is not valid UTF-8 (byte 0x{byte:02X}{guess}): the file is \
                     probably Windows-1252/Latin-1, as Excel's plain 'CSV (Comma delimited)' \
                     saves it. {SAVE_AS}, or convert it: \
                     iconv -f WINDOWS-1252 -t UTF-8 <file> > converted.csv"
                )
            }
        }
    }
}

impl From<io::Error> for EncodingProblem {
    fn from(e: io::Error) -> Self {
        EncodingProblem::Io(e)
    }
}

const SCAN_CHUNK: usize = 64 * 1024;

/// Checks that the whole file is UTF-8, chunk by chunk. Returns the length
/// of a UTF-8 byte-order mark to skip (0 or 3).
fn scan_encoding(file: &mut impl Read) -> Result<u64, EncodingProblem> {
    // Room for a chunk plus the at most 3 bytes of a character cut in two
    // by the previous chunk's end.
    let mut buf = vec![0u8; SCAN_CHUNK + 4];
    let mut carried = 0usize;
    let mut line = 1u64;
    // File offset of `buf[0]`, to tell UTF-16 LE from BE by where NULs sit.
    let mut offset = 0u64;
    let mut bom_len = 0u64;
    let mut first = true;
    loop {
        let read = read_full(file, &mut buf[carried..carried + SCAN_CHUNK])?;
        let data = &buf[..carried + read];
        if read == 0 {
            if let Some(&byte) = data.first() {
                // The file ends inside a multi-byte sequence: a lone
                // Latin-1 letter at the very end, typically.
                return Err(EncodingProblem::NotUtf8 { line, byte });
            }
            return Ok(bom_len);
        }
        let mut start = 0;
        if first {
            first = false;
            match data {
                [0xff, 0xfe, ..] | [0xfe, 0xff, ..] => {
                    return Err(EncodingProblem::Utf16 {
                        line: 1,
                        big_endian: data[0] == 0xfe,
                        bom: true,
                    });
                }
                [0xef, 0xbb, 0xbf, ..] => {
                    bom_len = 3;
                    start = 3;
                }
                _ => {}
            }
        }
        if let Some(at) = data[start..].iter().position(|&b| b == 0) {
            let at = start + at;
            return Err(EncodingProblem::Utf16 {
                line: line + newlines(&data[start..at]),
                // ASCII in UTF-16 LE has its NUL second (odd offsets).
                big_endian: (offset + at as u64).is_multiple_of(2),
                bom: false,
            });
        }
        match std::str::from_utf8(&data[start..]) {
            Ok(_) => {
                line += newlines(&data[start..]);
                offset += data.len() as u64;
                carried = 0;
            }
            Err(e) => {
                let valid = start + e.valid_up_to();
                line += newlines(&data[start..valid]);
                if e.error_len().is_some() {
                    return Err(EncodingProblem::NotUtf8 {
                        line,
                        byte: data[valid],
                    });
                }
                // A character cut by the chunk's end: finish it next round.
                let len = data.len();
                offset += valid as u64;
                buf.copy_within(valid..len, 0);
                carried = len - valid;
            }
        }
    }
}

/// Fills `buf` unless the file ends first; a short `read` is not the end.
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The printable Windows-1252 character of a byte that is not UTF-8 on its
/// own, to show the user what the byte probably was.
fn windows_1252(byte: u8) -> Option<char> {
    const HIGH: [Option<char>; 32] = [
        Some('€'),
        None,
        Some('‚'),
        Some('ƒ'),
        Some('„'),
        Some('…'),
        Some('†'),
        Some('‡'),
        Some('ˆ'),
        Some('‰'),
        Some('Š'),
        Some('‹'),
        Some('Œ'),
        None,
        Some('Ž'),
        None,
        None,
        Some('\u{2018}'),
        Some('\u{2019}'),
        Some('\u{201c}'),
        Some('\u{201d}'),
        Some('•'),
        Some('–'),
        Some('—'),
        Some('˜'),
        Some('™'),
        Some('š'),
        Some('›'),
        Some('œ'),
        None,
        Some('ž'),
        Some('Ÿ'),
    ];
    match byte {
        0x80..=0x9f => HIGH[usize::from(byte - 0x80)],
        0xa0..=0xff => Some(char::from(byte)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Dialect and header

/// The start of the file as lines, before the CSV reader takes over.
struct FirstLines {
    /// Delimiter from an Excel `sep=;` line.
    sep: Option<u8>,
    /// Line number and text of the header line.
    header: Option<(u64, String)>,
}

/// A header longer than this is not a header (it is a file with no line
/// breaks); refusing it keeps memory bounded.
const MAX_HEADER_BYTES: u64 = 1024 * 1024;

fn first_lines(file: &mut File) -> Result<FirstLines, String> {
    let mut reader = BufReader::new(file).take(MAX_HEADER_BYTES);
    let mut sep = None;
    let mut line_no = 0u64;
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        let read = reader
            .read_until(b'\n', &mut bytes)
            .map_err(|e| format!("cannot read the input file: {e}"))?;
        if read == 0 {
            return Ok(FirstLines { sep, header: None });
        }
        line_no += 1;
        // The encoding scan has already proved the file UTF-8; a cut at the
        // size cap is the only way to get a broken character here.
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.contains('\r') {
            // The CSV reader would cope, but every line number it reports
            // would be 1: useless for finding a bad row.
            return Err(format!(
                "line {line_no} ends in a lone carriage return (classic Mac OS line endings); \
                 save the file as 'CSV UTF-8 (Comma delimited)', or convert it: \
                 tr '\\r' '\\n' < <file> > converted.csv"
            ));
        }
        if !bytes.ends_with(b"\n") && bytes.len() as u64 >= MAX_HEADER_BYTES {
            return Err(format!(
                "line {line_no} is longer than {} KiB without a line break: this is not a CSV \
                 header",
                MAX_HEADER_BYTES / 1024
            ));
        }
        if text
            .chars()
            .all(|c| c.is_whitespace() || matches!(c, ',' | ';' | '"'))
        {
            continue;
        }
        if sep.is_none()
            && let Some(d) = sep_line(text)
        {
            sep = Some(d);
            continue;
        }
        return Ok(FirstLines {
            sep,
            header: Some((line_no, text.to_string())),
        });
    }
}

/// Excel's `sep=;` hint line.
fn sep_line(text: &str) -> Option<u8> {
    let rest = text.trim_start();
    let lower = rest.get(..4)?.to_ascii_lowercase();
    if lower != "sep=" {
        return None;
    }
    match rest[4..].trim_end_matches([' ', '\r']) {
        "," | ",," => Some(b','),
        ";" | ";;" => Some(b';'),
        "\t" | "\t\t" => Some(b'\t'),
        _ => None,
    }
}

const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];

fn split_header(text: &str, delimiter: u8) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => record.iter().map(|f| f.trim().to_string()).collect(),
        _ => vec![text.to_string()],
    }
}

/// Picks the delimiter under which the header names a user and a phone
/// column. Counting delimiters would be fooled by a `;` inside a column
/// name; asking which split makes sense is not.
fn detect_delimiter(text: &str, opts: &InputOptions) -> Result<u8, String> {
    let splits: Vec<(u8, Vec<String>)> = DELIMITERS
        .iter()
        .map(|&d| (d, split_header(text, d)))
        .collect();
    let fitting: Vec<u8> = splits
        .iter()
        .filter(|(_, names)| locatable(names, opts))
        .map(|(d, _)| *d)
        .collect();
    match fitting.as_slice() {
        [one] => Ok(*one),
        [] => {
            let mut best = &splits[0];
            for s in &splits[1..] {
                if s.1.len() > best.1.len() {
                    best = s;
                }
            }
            if best.1.len() == 1 {
                return Err(format!(
                    "the header {:?} is a single column with every delimiter (',', ';', tab): \
                     expected a user column and a phone column; {}; {}",
                    truncate(text, 200),
                    user_help(),
                    phone_help()
                ));
            }
            match choose_columns(&best.1, opts) {
                Err(m) => Err(format!(
                    "{m} (read with delimiter {})",
                    delimiter_name(best.0)
                )),
                // Unreachable in practice: `locatable` is the weaker test.
                Ok(_) => Ok(best.0),
            }
        }
        many => Err(format!(
            "the delimiter is ambiguous: the header names a user and a phone column when split \
             at {}; make the header use one delimiter only",
            many.iter()
                .map(|&d| delimiter_name(d))
                .collect::<Vec<_>>()
                .join(" and when split at ")
        )),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Whether a header could give a user and a phone column at all (ambiguity
/// still counts: it is reported later, with the delimiter settled).
fn locatable(names: &[String], opts: &InputOptions) -> bool {
    let keys: Vec<String> = names.iter().map(|n| header_key(n)).collect();
    let has = |k: &str| keys.iter().any(|h| *h == header_key(k));
    let user = match &opts.user_column {
        Some(name) => has(name),
        None => USER_ALIASES.iter().any(|a| has(a)) || has(EMAIL_ALIAS),
    };
    let phone = match &opts.phone_column {
        Some(name) => has(name),
        None => PHONE_ALIASES.iter().any(|a| has(a)),
    };
    user && phone
}

struct Chosen {
    user: usize,
    user_kind: UserColumnKind,
    phone: usize,
    old_phone: Option<usize>,
    extension: Option<usize>,
}

fn quoted_list(names: &[String]) -> String {
    const SHOWN: usize = 40;
    let mut out = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

fn user_help() -> String {
    format!(
        "name the user column one of {}, {EMAIL_ALIAS}, or pass --user-column NAME",
        USER_ALIASES.join(", ")
    )
}

fn phone_help() -> String {
    format!(
        "name the phone column one of {}, or pass --phone-column NAME",
        PHONE_ALIASES.join(", ")
    )
}

/// Chooses the columns from the header names (trimmed, as written).
fn choose_columns(header: &[String], opts: &InputOptions) -> Result<Chosen, String> {
    let keys: Vec<String> = header.iter().map(|h| header_key(h)).collect();
    for (i, key) in keys.iter().enumerate() {
        // Several unnamed columns are common (trailing empty columns in
        // Excel) and harmless: an unnamed column can never be chosen.
        if key.is_empty() {
            continue;
        }
        if let Some(j) = keys[..i].iter().position(|k| k == key) {
            return Err(format!(
                "the header names the same column twice: {:?} (column {}) and {:?} (column {}); \
                 rename or remove one",
                header[j],
                j + 1,
                header[i],
                i + 1
            ));
        }
    }
    let find = |k: &str| keys.iter().position(|h| *h == header_key(k));
    let all = || quoted_list(header);

    let (user, user_kind) = match &opts.user_column {
        Some(name) => {
            let i = find(name).ok_or_else(|| {
                format!(
                    "--user-column {name:?} is not in the header, which has: {}",
                    all()
                )
            })?;
            let kind = if keys[i] == header_key(EMAIL_ALIAS) {
                UserColumnKind::Email
            } else {
                UserColumnKind::IdOrLogin
            };
            (i, kind)
        }
        None => {
            let mut found: Vec<usize> = USER_ALIASES.iter().filter_map(|a| find(a)).collect();
            found.sort_unstable();
            match found.as_slice() {
                [one] => (*one, UserColumnKind::IdOrLogin),
                [] => match find(EMAIL_ALIAS) {
                    Some(i) => (i, UserColumnKind::Email),
                    None => {
                        return Err(format!(
                            "no user column: {}; the header has: {}",
                            user_help(),
                            all()
                        ));
                    }
                },
                many => {
                    return Err(format!(
                        "more than one column could be the user column ({}): pass \
                         --user-column with the one to use",
                        quoted_list(&many.iter().map(|&i| header[i].clone()).collect::<Vec<_>>())
                    ));
                }
            }
        }
    };

    let phone = match &opts.phone_column {
        Some(name) => find(name).ok_or_else(|| {
            format!(
                "--phone-column {name:?} is not in the header, which has: {}",
                all()
            )
        })?,
        None => {
            // `new_phone` says what it is; next to it, `phone` or `mobile`
            // is more likely the current number than a competing new one.
            let mut found: Vec<usize> = match find(PHONE_ALIASES[0]) {
                Some(i) => vec![i],
                None => PHONE_ALIASES[1..].iter().filter_map(|a| find(a)).collect(),
            };
            found.sort_unstable();
            match found.as_slice() {
                [one] => *one,
                [] => {
                    return Err(format!(
                        "no phone column: {}; the header has: {}",
                        phone_help(),
                        all()
                    ));
                }
                many => {
                    return Err(format!(
                        "more than one column could be the new phone column ({}): pass \
                         --phone-column with the one to use",
                        quoted_list(&many.iter().map(|&i| header[i].clone()).collect::<Vec<_>>())
                    ));
                }
            }
        }
    };
    if user == phone {
        return Err(format!(
            "the user column and the phone column are both {:?}; they must differ",
            header[user]
        ));
    }

    let taken = |i: &usize| *i != user && *i != phone;
    let olds: Vec<usize> = OLD_PHONE_ALIASES
        .iter()
        .filter_map(|a| find(a))
        .filter(taken)
        .collect();
    let old_phone = match olds.as_slice() {
        [] => None,
        [one] => Some(*one),
        many => {
            return Err(format!(
                "more than one column could be the old phone precondition ({}): keep only one",
                quoted_list(&many.iter().map(|&i| header[i].clone()).collect::<Vec<_>>())
            ));
        }
    };
    let extension = find(EXTENSION_ALIAS).filter(taken);
    Ok(Chosen {
        user,
        user_kind,
        phone,
        old_phone,
        extension,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::Region;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write");
        f.flush().expect("flush");
        f
    }

    fn us() -> InputOptions {
        InputOptions {
            phone: PhoneOptions {
                default_region: Some(Region::US),
                allow_unknown_ranges: false,
            },
            ..InputOptions::default()
        }
    }

    fn open_with(
        bytes: &[u8],
        opts: &InputOptions,
    ) -> (tempfile::NamedTempFile, Result<InputReader, InputError>) {
        let f = file_with(bytes);
        let r = InputReader::open(f.path(), opts);
        (f, r)
    }

    fn read_all(bytes: &[u8], opts: &InputOptions) -> (Columns, Vec<InputRow>) {
        let (_f, r) = open_with(bytes, opts);
        let mut reader = match r {
            Ok(r) => r,
            Err(e) => panic!("open failed: {e}"),
        };
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row() {
            rows.push(row.expect("row"));
        }
        assert!(reader.next_row().is_none(), "stays finished");
        (reader.columns().clone(), rows)
    }

    /// The message of a refused file, with the temp path replaced by `F`.
    fn open_error(bytes: &[u8], opts: &InputOptions) -> String {
        let (f, r) = open_with(bytes, opts);
        match r {
            Ok(_) => panic!("file accepted"),
            Err(e) => e.0.replace(&f.path().display().to_string(), "F"),
        }
    }

    fn ok(row: &InputRow) -> &RowRequest {
        match &row.parsed {
            Ok(r) => r,
            Err(e) => panic!("row {} invalid: {e}", row.row),
        }
    }

    fn bad(row: &InputRow) -> &RowInvalid {
        match &row.parsed {
            Ok(r) => panic!("row {} accepted: {r:?}", row.row),
            Err(e) => e,
        }
    }

    fn login(s: &str) -> UserRef {
        UserRef::Login(s.to_string())
    }

    fn phone(e164: &str) -> Phone {
        Phone {
            e164: e164.to_string(),
            extension: None,
        }
    }

    #[test]
    fn plain_comma_file() {
        let (cols, rows) = read_all(
            b"user,new_phone\nann@example.com,+1 213 555 0100\n00u1a2b3c4d5e6f7g8h9,+12135550101\n",
            &InputOptions::default(),
        );
        assert_eq!(cols.user, 0);
        assert_eq!(cols.phone, 1);
        assert_eq!(cols.user_name, "user");
        assert_eq!(cols.phone_name, "new_phone");
        assert_eq!(cols.user_kind, UserColumnKind::IdOrLogin);
        assert_eq!(cols.delimiter, b',');
        assert!(!cols.had_bom);
        assert_eq!(cols.old_phone, None);
        assert_eq!(cols.extension, None);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].row, rows[0].line), (1, 2));
        assert_eq!((rows[1].row, rows[1].line), (2, 3));
        assert_eq!(rows[0].user_raw, "ann@example.com");
        assert_eq!(rows[0].phone_raw, "+1 213 555 0100");
        assert_eq!(
            ok(&rows[0]),
            &RowRequest {
                user: login("ann@example.com"),
                phone: phone("+12135550100"),
                old_phone: None,
                warnings: vec![],
            }
        );
        assert_eq!(
            ok(&rows[1]).user,
            UserRef::Id("00u1a2b3c4d5e6f7g8h9".into())
        );
    }

    #[test]
    fn bom_semicolon_crlf_and_quotes() {
        let (cols, rows) = read_all(
            b"\xef\xbb\xbfName;Login;Phone\r\n\"Doe; Ann\";ann@example.com;\"+1 (213) 555-0100\"\r\n",
            &InputOptions::default(),
        );
        assert!(cols.had_bom);
        assert_eq!(cols.delimiter, b';');
        assert_eq!((cols.user, cols.phone), (1, 2));
        assert_eq!(cols.user_name, "Login");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].phone_raw, "+1 (213) 555-0100");
        assert_eq!(ok(&rows[0]).phone, phone("+12135550100"));
    }

    #[test]
    fn tab_delimited_with_spaces_around_names_and_cells() {
        let (cols, rows) = read_all(
            b"  User ID \t New Phone  \n  00u1a2b3c4d5e6f7g8h9 \t  +1 213 555 0100  \n",
            &InputOptions::default(),
        );
        assert_eq!(cols.delimiter, b'\t');
        assert_eq!(cols.user_name, "User ID");
        assert_eq!(cols.phone_name, "New Phone");
        assert_eq!(rows[0].user_raw, "00u1a2b3c4d5e6f7g8h9");
        assert_eq!(rows[0].phone_raw, "+1 213 555 0100");
        assert_eq!(ok(&rows[0]).phone.e164, "+12135550100");
    }

    #[test]
    fn blank_lines_are_not_rows_but_lines_still_count() {
        let (_, rows) = read_all(
            b"\n\nlogin,phone\n\nann,+12135550100\r\n\r\n  \n,\n , \nbob,+12135550101\n\n",
            &InputOptions::default(),
        );
        let seen: Vec<(u64, u64, &str)> = rows
            .iter()
            .map(|r| (r.row, r.line, r.user_raw.as_str()))
            .collect();
        assert_eq!(seen, vec![(1, 5, "ann"), (2, 10, "bob")]);
    }

    #[test]
    fn quoted_cell_spanning_lines_keeps_the_start_line() {
        let (_, rows) = read_all(
            b"login,note,phone\nann,\"two\nlines\",+12135550100\nbob,x,+12135550101\n",
            &InputOptions::default(),
        );
        assert_eq!((rows[0].row, rows[0].line), (1, 2));
        assert_eq!((rows[1].row, rows[1].line), (2, 4));
    }

    #[test]
    fn excel_sep_line_sets_the_delimiter() {
        let (cols, rows) = read_all(
            b"sep=;\r\nlogin;phone\r\nann;+12135550100\r\n",
            &InputOptions::default(),
        );
        assert_eq!(cols.delimiter, b';');
        assert_eq!((rows[0].row, rows[0].line), (1, 3));
        assert_eq!(ok(&rows[0]).user, login("ann"));
    }

    #[test]
    fn crlf_with_quoted_line_breaks_and_blank_lines() {
        let (_, rows) = read_all(
            b"login,note,phone\r\n\r\nann,\"a\r\nb\r\nc\",+12135550100\r\n\r\n\r\nbob,,+12135550101",
            &InputOptions::default(),
        );
        let seen: Vec<(u64, u64)> = rows.iter().map(|r| (r.row, r.line)).collect();
        assert_eq!(seen, vec![(1, 3), (2, 8)]);
        assert_eq!(rows[1].phone_raw, "+12135550101");
    }

    #[test]
    fn classic_mac_line_endings_are_refused() {
        assert_eq!(
            open_error(b"login,phone\rann,+12135550100\r", &InputOptions::default()),
            "F: line 1 ends in a lone carriage return (classic Mac OS line endings); save the \
             file as 'CSV UTF-8 (Comma delimited)', or convert it: tr '\\r' '\\n' < <file> > \
             converted.csv"
        );
    }

    #[test]
    fn a_first_line_without_end_is_refused() {
        let mut bytes = b"login,phone".to_vec();
        bytes.resize(2 * 1024 * 1024, b'x');
        assert_eq!(
            open_error(&bytes, &InputOptions::default()),
            "F: line 1 is longer than 1024 KiB without a line break: this is not a CSV header"
        );
    }

    #[test]
    fn header_only_gives_no_rows() {
        let (_, rows) = read_all(b"login,phone\n", &InputOptions::default());
        assert!(rows.is_empty());
    }

    #[test]
    fn empty_or_blank_file_is_refused() {
        let want = "F: the file has no header line (it is empty or blank): expected a header such \
                    as user,new_phone followed by one row per user";
        assert_eq!(open_error(b"", &InputOptions::default()), want);
        assert_eq!(open_error(b"\n\r\n ,, \n", &InputOptions::default()), want);
        assert_eq!(open_error(b"\xef\xbb\xbf", &InputOptions::default()), want);
    }

    #[test]
    fn missing_file_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("nope.csv");
        let e = match InputReader::open(&path, &InputOptions::default()) {
            Ok(_) => panic!("opened"),
            Err(e) => e.0,
        };
        assert!(
            e.starts_with(&format!("{}: cannot open the input file: ", path.display())),
            "{e}"
        );
    }

    #[test]
    fn utf16_le_with_bom_is_refused() {
        let mut bytes = vec![0xff, 0xfe];
        for u in "login,phone\r\nann,+12135550100\r\n".encode_utf16() {
            bytes.extend(u.to_le_bytes());
        }
        assert_eq!(
            open_error(&bytes, &InputOptions::default()),
            "F: line 1: the file is UTF-16 LE (it starts with a UTF-16 byte-order mark; Excel \
             calls this 'Unicode Text'), not UTF-8. In Excel choose File > Save As > 'CSV UTF-8 \
             (Comma delimited)', or convert it: iconv -f UTF-16LE -t UTF-8 <file> > converted.csv"
        );
    }

    #[test]
    fn utf16_be_with_bom_is_refused() {
        let mut bytes = vec![0xfe, 0xff];
        for u in "login,phone\n".encode_utf16() {
            bytes.extend(u.to_be_bytes());
        }
        let e = open_error(&bytes, &InputOptions::default());
        assert!(
            e.starts_with(
                "F: line 1: the file is UTF-16 BE (it starts with a UTF-16 byte-order mark;"
            ),
            "{e}"
        );
        assert!(
            e.ends_with("iconv -f UTF-16BE -t UTF-8 <file> > converted.csv"),
            "{e}"
        );
    }

    #[test]
    fn utf16_without_bom_is_found_by_its_nul_bytes() {
        let mut le = Vec::new();
        for u in "login,phone\n".encode_utf16() {
            le.extend(u.to_le_bytes());
        }
        assert_eq!(
            open_error(&le, &InputOptions::default()),
            "F: line 1: the file is UTF-16 LE (line 1 contains NUL bytes; Excel calls this \
             'Unicode Text'), not UTF-8. In Excel choose File > Save As > 'CSV UTF-8 (Comma \
             delimited)', or convert it: iconv -f UTF-16LE -t UTF-8 <file> > converted.csv"
        );
        let mut be = Vec::new();
        for u in "login,phone\n".encode_utf16() {
            be.extend(u.to_be_bytes());
        }
        let e = open_error(&be, &InputOptions::default());
        assert!(
            e.starts_with("F: line 1: the file is UTF-16 BE (line 1 contains NUL bytes;"),
            "{e}"
        );
        // A NUL further down names its own line.
        let e = open_error(
            b"login,phone\nann,+12135550100\nb\0b,+12135550101\n",
            &InputOptions::default(),
        );
        assert!(e.starts_with("F: line 3: the file is UTF-16"), "{e}");
    }

    #[test]
    fn windows_1252_is_refused_with_the_line_and_the_fix() {
        assert_eq!(
            open_error(
                b"login,phone\nann,+12135550100\nren\xe9e,+12135550101\n",
                &InputOptions::default()
            ),
            "F: line 3 is not valid UTF-8 (byte 0xE9, which is '\u{e9}' in Windows-1252): the \
             file is probably Windows-1252/Latin-1, as Excel's plain 'CSV (Comma delimited)' \
             saves it. In Excel choose File > Save As > 'CSV UTF-8 (Comma delimited)', or convert \
             it: iconv -f WINDOWS-1252 -t UTF-8 <file> > converted.csv"
        );
        // A curly quote, from the 0x80-0x9F range Latin-1 lacks.
        let e = open_error(
            b"login,phone\n\x93ann\x94,+12135550100\n",
            &InputOptions::default(),
        );
        assert!(
            e.starts_with(
                "F: line 2 is not valid UTF-8 (byte 0x93, which is '\u{201c}' in Windows-1252)"
            ),
            "{e}"
        );
        // The last byte of the file, where it looks like a cut character.
        let e = open_error(
            b"login,phone\nann,+12135550100\nren\xe9",
            &InputOptions::default(),
        );
        assert!(
            e.starts_with("F: line 3 is not valid UTF-8 (byte 0xE9,"),
            "{e}"
        );
    }

    #[test]
    fn the_whole_file_is_scanned_across_chunks() {
        // Far beyond one scan chunk, with a multi-byte character placed
        // across a chunk boundary (valid) and a bad byte near the end.
        let mut bytes = b"login,phone\n".to_vec();
        let mut lines = 1u64;
        while bytes.len() < 3 * SCAN_CHUNK {
            if bytes.len() > SCAN_CHUNK - 40 && bytes.len() < SCAN_CHUNK {
                bytes.resize(SCAN_CHUNK - 1, b'a');
                bytes.extend("é,+12135550100\n".as_bytes());
            } else {
                bytes.extend(b"someone@example.com,+12135550100\n");
            }
            lines += 1;
        }
        let f = file_with(&bytes);
        assert!(
            InputReader::open(f.path(), &InputOptions::default()).is_ok(),
            "valid UTF-8 split across chunks"
        );
        bytes.extend(b"caf\xe9,+12135550100\n");
        let e = open_error(&bytes, &InputOptions::default());
        assert!(
            e.starts_with(&format!("F: line {} is not valid UTF-8", lines + 1)),
            "{e}"
        );
    }

    #[test]
    fn user_aliases_each_work() {
        for name in [
            "user",
            "user_id",
            "id",
            "login",
            "username",
            "USER-ID",
            "User Name",
            "Login",
        ] {
            let text = format!("{name},new_phone\nann,+12135550100\n");
            let (cols, rows) = read_all(text.as_bytes(), &InputOptions::default());
            assert_eq!(cols.user_kind, UserColumnKind::IdOrLogin, "{name}");
            assert_eq!(cols.user_name, name);
            assert_eq!(ok(&rows[0]).user, login("ann"), "{name}");
        }
    }

    #[test]
    fn phone_aliases_each_work() {
        for name in [
            "new_phone",
            "phone",
            "phone_number",
            "mobile",
            "number",
            "Phone Number",
            "NEW-PHONE",
        ] {
            let text = format!("login,{name}\nann,+12135550100\n");
            let (cols, _) = read_all(text.as_bytes(), &InputOptions::default());
            assert_eq!(cols.phone, 1, "{name}");
            assert_eq!(cols.phone_name, name);
        }
    }

    #[test]
    fn email_column_is_used_only_without_another_user_column() {
        let (cols, rows) = read_all(
            b"email,phone\nann@example.com,+12135550100\n00u1a2b3c4d5e6f7g8h9,+12135550101\n",
            &InputOptions::default(),
        );
        assert_eq!(cols.user_kind, UserColumnKind::Email);
        assert_eq!(ok(&rows[0]).user, UserRef::Email("ann@example.com".into()));
        // An id is an id whatever the column is called.
        assert_eq!(
            ok(&rows[1]).user,
            UserRef::Id("00u1a2b3c4d5e6f7g8h9".into())
        );

        let (cols, rows) = read_all(
            b"email,login,phone\nann@example.com,ann,+12135550100\n",
            &InputOptions::default(),
        );
        assert_eq!((cols.user, cols.user_kind), (1, UserColumnKind::IdOrLogin));
        assert_eq!(ok(&rows[0]).user, login("ann"));
    }

    #[test]
    fn new_phone_wins_over_other_phone_columns() {
        let (cols, _) = read_all(
            b"login,phone,new_phone\nann,x,+12135550100\n",
            &InputOptions::default(),
        );
        assert_eq!((cols.phone, cols.phone_name.as_str()), (2, "new_phone"));
        let (cols, _) = read_all(
            b"login,mobile,new_phone\nann,x,+12135550100\n",
            &InputOptions::default(),
        );
        assert_eq!(cols.phone, 2);
    }

    #[test]
    fn ambiguous_user_column_is_refused() {
        assert_eq!(
            open_error(b"login,user_id,phone\n", &InputOptions::default()),
            "F: header (line 1): more than one column could be the user column (\"login\", \
             \"user_id\"): pass --user-column with the one to use"
        );
    }

    #[test]
    fn ambiguous_phone_column_is_refused() {
        assert_eq!(
            open_error(b"login;Mobile;Phone Number\n", &InputOptions::default()),
            "F: header (line 1): more than one column could be the new phone column (\"Mobile\", \
             \"Phone Number\"): pass --phone-column with the one to use"
        );
    }

    #[test]
    fn overrides_settle_ambiguity() {
        let opts = InputOptions {
            user_column: Some("USER_ID".into()),
            phone_column: Some("mobile".into()),
            ..InputOptions::default()
        };
        let (cols, rows) = read_all(
            b"login,user_id,mobile,phone_number\nann,00u1a2b3c4d5e6f7g8h9,+12135550100,x\n",
            &opts,
        );
        assert_eq!((cols.user, cols.phone), (1, 2));
        assert_eq!(
            ok(&rows[0]).user,
            UserRef::Id("00u1a2b3c4d5e6f7g8h9".into())
        );
    }

    #[test]
    fn overrides_may_name_any_column() {
        let opts = InputOptions {
            user_column: Some("Work Email".into()),
            phone_column: Some("Cell".into()),
            ..InputOptions::default()
        };
        let (cols, rows) = read_all(b"Work Email;Cell\nann@example.com;+12135550100\n", &opts);
        assert_eq!(cols.delimiter, b';');
        assert_eq!(cols.user_kind, UserColumnKind::IdOrLogin);
        assert_eq!(ok(&rows[0]).user, login("ann@example.com"));

        let opts = InputOptions {
            user_column: Some("email".into()),
            ..InputOptions::default()
        };
        let (cols, _) = read_all(
            b"login,email,phone\nann,ann@example.com,+12135550100\n",
            &opts,
        );
        assert_eq!((cols.user, cols.user_kind), (1, UserColumnKind::Email));
    }

    #[test]
    fn override_naming_a_missing_column_lists_the_header() {
        let opts = InputOptions {
            user_column: Some("upn".into()),
            ..InputOptions::default()
        };
        assert_eq!(
            open_error(b"login,phone\n", &opts),
            "F: header (line 1): --user-column \"upn\" is not in the header, which has: \
             \"login\", \"phone\" (read with delimiter ',')"
        );
        let opts = InputOptions {
            phone_column: Some("cell".into()),
            ..InputOptions::default()
        };
        assert_eq!(
            open_error(b"login,phone\n", &opts),
            "F: header (line 1): --phone-column \"cell\" is not in the header, which has: \
             \"login\", \"phone\" (read with delimiter ',')"
        );
    }

    #[test]
    fn override_of_both_to_one_column_is_refused() {
        let opts = InputOptions {
            user_column: Some("x".into()),
            phone_column: Some("x".into()),
            ..InputOptions::default()
        };
        assert_eq!(
            open_error(b"x,y\n", &opts),
            "F: header (line 1): the user column and the phone column are both \"x\"; they must \
             differ"
        );
    }

    #[test]
    fn missing_columns_list_the_header_and_the_accepted_names() {
        assert_eq!(
            open_error(b"name,phone\n", &InputOptions::default()),
            "F: header (line 1): no user column: name the user column one of user, user_id, id, \
             login, username, email, or pass --user-column NAME; the header has: \"name\", \
             \"phone\" (read with delimiter ',')"
        );
        assert_eq!(
            open_error(b"login;cell\n", &InputOptions::default()),
            "F: header (line 1): no phone column: name the phone column one of new_phone, phone, \
             phone_number, mobile, number, or pass --phone-column NAME; the header has: \
             \"login\", \"cell\" (read with delimiter ';')"
        );
        assert_eq!(
            open_error(b"\nlogin|phone\n", &InputOptions::default()),
            "F: header (line 2): the header \"login|phone\" is a single column with every \
             delimiter (',', ';', tab): expected a user column and a phone column; name the user \
             column one of user, user_id, id, login, username, email, or pass --user-column NAME; \
             name the phone column one of new_phone, phone, phone_number, mobile, number, or pass \
             --phone-column NAME"
        );
    }

    #[test]
    fn ambiguous_delimiter_is_refused() {
        assert_eq!(
            open_error(b"user,phone,x;login;mobile\n", &InputOptions::default()),
            "F: header (line 1): the delimiter is ambiguous: the header names a user and a phone \
             column when split at ',' and when split at ';'; make the header use one delimiter \
             only"
        );
    }

    #[test]
    fn duplicate_header_names_are_refused() {
        assert_eq!(
            open_error(b"login,Phone,x,phone\n", &InputOptions::default()),
            "F: header (line 1): the header names the same column twice: \"Phone\" (column 2) and \
             \"phone\" (column 4); rename or remove one"
        );
        // Unnamed trailing columns are not duplicates of anything that matters.
        let (_, rows) = read_all(
            b"login,phone,,\nann,+12135550100,,\n",
            &InputOptions::default(),
        );
        assert_eq!(ok(&rows[0]).phone.e164, "+12135550100");
    }

    #[test]
    fn optional_columns_are_found() {
        let (cols, _) = read_all(
            b"login,new_phone,old_phone,extension\n",
            &InputOptions::default(),
        );
        assert_eq!((cols.old_phone, cols.extension), (Some(2), Some(3)));
        let (cols, _) = read_all(b"Current Phone,login,new_phone\n", &InputOptions::default());
        assert_eq!(cols.old_phone, Some(0));
        assert_eq!(
            open_error(
                b"login,new_phone,old_phone,current_phone\n",
                &InputOptions::default()
            ),
            "F: header (line 1): more than one column could be the old phone precondition \
             (\"old_phone\", \"current_phone\"): keep only one"
        );
    }

    #[test]
    fn wrong_field_count_makes_the_row_invalid_not_the_file() {
        let (_, rows) = read_all(
            b"login,phone,name\nann,+12135550100\nbob,+12135550101,Bob,extra\ncid,+12135550102,Cid\n",
            &InputOptions::default(),
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(
            bad(&rows[0]),
            &RowInvalid {
                column: "name".into(),
                message: "the row has 2 fields but the header has 3: a delimiter is missing or \
                          extra (is there an unquoted ',' inside a value?)"
                    .into(),
            }
        );
        assert_eq!(rows[0].user_raw, "ann");
        assert_eq!(
            bad(&rows[1]),
            &RowInvalid {
                column: WHOLE_ROW.into(),
                message: "the row has 4 fields but the header has 3: a delimiter is missing or \
                          extra (is there an unquoted ',' inside a value?)"
                    .into(),
            }
        );
        assert_eq!(ok(&rows[2]).user, login("cid"));
        assert_eq!(rows[2].row, 3);
    }

    #[test]
    fn user_cells() {
        let (_, rows) = read_all(
            "login,phone\n\
             ,+12135550100\n\
             ann smith,+12135550100\n\
             \"ann\u{a0}smith\",+12135550100\n\
             \"a\u{200b}nn\",+12135550100\n\
             \"a\u{1}nn\",+12135550100\n\
             a+b#c/d?e%f@example.com,+12135550100\n\
             00u1a2b3c4d5e6f7g8h,+12135550100\n"
                .as_bytes(),
            &InputOptions::default(),
        );
        let msg = |i: usize| bad(&rows[i]).message.clone();
        assert_eq!(bad(&rows[0]).column, "login");
        assert_eq!(msg(0), "the user is empty");
        assert_eq!(
            msg(1),
            "the user \"ann smith\" contains whitespace (U+0020); Okta logins and ids cannot"
        );
        assert_eq!(
            msg(2),
            "the user \"ann\\u{a0}smith\" contains whitespace (U+00A0); Okta logins and ids cannot"
        );
        assert_eq!(
            msg(3),
            "the user contains an invisible character (U+200B), probably from copy and paste; \
             remove it"
        );
        assert_eq!(
            msg(4),
            "the user contains a control character (U+0001); remove it"
        );
        assert_eq!(ok(&rows[5]).user, login("a+b#c/d?e%f@example.com"));
        // One character short of an id: a login.
        assert_eq!(ok(&rows[6]).user, login("00u1a2b3c4d5e6f7g8h"));
    }

    #[test]
    fn phone_problems_name_the_phone_column() {
        let (_, rows) = read_all(
            b"login,New Phone\nann,\nbob,4.4770090012E+11\ncid,2135550100\n",
            &InputOptions::default(),
        );
        assert_eq!(
            bad(&rows[0]).to_string(),
            "column \"New Phone\": the phone number is empty"
        );
        assert_eq!(
            bad(&rows[1]).to_string(),
            "column \"New Phone\": the spreadsheet turned the number into scientific notation, \
             which loses digits; format the column as Text and re-export"
        );
        assert!(
            bad(&rows[2])
                .message
                .starts_with("the number has no leading + and no --default-region is set"),
            "{}",
            bad(&rows[2]).message
        );
    }

    #[test]
    fn national_numbers_with_a_default_region_warn() {
        let (_, rows) = read_all(b"login,phone\nann,(213) 555-0100\n", &us());
        let r = ok(&rows[0]);
        assert_eq!(r.phone.e164, "+12135550100");
        assert_eq!(
            r.warnings,
            vec![
                "phone: national number read as US (--default-region US); write +1… to be explicit"
            ]
        );
    }

    #[test]
    fn old_phone_is_an_optional_precondition() {
        let (_, rows) = read_all(
            b"login,new_phone,old_phone\nann,+12135550100,\nbob,+12135550101,213 555 0199\ncid,+12135550102,12\n",
            &us(),
        );
        assert_eq!(ok(&rows[0]).old_phone, None);
        let bob = ok(&rows[1]);
        assert_eq!(bob.old_phone, Some(phone("+12135550199")));
        assert_eq!(
            bob.warnings,
            vec![
                "old_phone: national number read as US (--default-region US); write +1… to be explicit"
            ]
        );
        let cid = bad(&rows[2]);
        assert_eq!(cid.column, "old_phone");
        assert_eq!(cid.message, "the number is too short to be a phone number");
    }

    #[test]
    fn extensions_for_call_from_the_cell_or_the_column() {
        let call = InputOptions {
            factor_type: FactorType::Call,
            ..InputOptions::default()
        };
        let (_, rows) = read_all(
            b"login,phone,extension\n\
              ann,+1 213 555 0100 x12,\n\
              bob,+12135550101,4711\n\
              cid,+12135550102 x12,12\n\
              dan,+12135550103 x12,13\n\
              eve,+12135550104,12a\n\
              fay,+12135550105,1234567890123456\n",
            &call,
        );
        assert_eq!(ok(&rows[0]).phone.extension.as_deref(), Some("12"));
        assert_eq!(ok(&rows[1]).phone.extension.as_deref(), Some("4711"));
        assert_eq!(ok(&rows[2]).phone.extension.as_deref(), Some("12"));
        assert_eq!(
            bad(&rows[3]).to_string(),
            "column \"extension\": the extension \"13\" differs from the one written in the \
             \"phone\" column (\"12\"): keep only one"
        );
        assert_eq!(
            bad(&rows[4]).to_string(),
            "column \"extension\": the extension must be digits only, not \"12a\""
        );
        assert_eq!(
            bad(&rows[5]).to_string(),
            "column \"extension\": the extension has 16 digits; at most 15 are allowed"
        );
    }

    #[test]
    fn extensions_are_refused_for_sms() {
        let (_, rows) = read_all(
            b"login,phone,extension\nann,+1 213 555 0100 x12,\nbob,+12135550101,4711\ncid,+12135550102,\n",
            &InputOptions::default(),
        );
        assert_eq!(
            bad(&rows[0]).to_string(),
            "column \"phone\": the number carries an extension (\"x12\"), but sms factors cannot \
             dial one: remove it (extensions are only for --factor-type call)"
        );
        assert_eq!(
            bad(&rows[1]).to_string(),
            "column \"extension\": the row gives an extension, but sms factors cannot dial one: \
             leave the column empty (extensions are only for --factor-type call)"
        );
        assert_eq!(ok(&rows[2]).phone.extension, None);
    }

    #[test]
    fn header_keys() {
        assert_eq!(header_key("  New  Phone "), "newphone");
        assert_eq!(header_key("new-phone"), "newphone");
        assert_eq!(header_key("NewPhone"), "newphone");
        assert_eq!(header_key("USER_ID"), "userid");
        assert_eq!(header_key("\u{feff}login"), "login");
        assert_eq!(header_key(""), "");
    }

    #[test]
    fn many_rows_stream_through() {
        let mut bytes = b"login,phone\n".to_vec();
        for i in 0..20_000u32 {
            bytes.extend(format!("user{i}@example.com,+1213555{:04}\n", 100 + i % 100).as_bytes());
        }
        let f = file_with(&bytes);
        let mut r = InputReader::open(f.path(), &InputOptions::default()).expect("open");
        let mut n = 0u64;
        while let Some(row) = r.next_row() {
            let row = row.expect("row");
            n += 1;
            assert_eq!(row.row, n);
            assert_eq!(row.line, n + 1);
            assert!(row.parsed.is_ok(), "{:?}", row.parsed);
        }
        assert_eq!(n, 20_000);
    }
}

#[cfg(test)]
mod user_length_tests {
    use super::*;

    #[test]
    fn a_user_longer_than_oktas_login_limit_is_refused_without_echoing_it() {
        let long = format!("{}@example.com", "a".repeat(200));
        let err = parse_user(&long, UserColumnKind::IdOrLogin).unwrap_err();
        assert!(err.contains("at most 100"), "{err}");
        assert!(!err.contains("aaaa"), "{err}");
        let ok = format!("{}@example.com", "a".repeat(80));
        assert!(parse_user(&ok, UserColumnKind::IdOrLogin).is_ok());
    }
}
