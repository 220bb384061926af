//! The reader: source text to [`Datum`] trees, each node carrying the [`Span`] it was read from.
//!
//! Invariants:
//! - The reader never panics, whatever the input: every malformed input is a [`ReadError`] whose
//!   span points into the source (at the offending token, or at the opening delimiter of an
//!   unterminated list, vector, string or block comment).
//! - Positions: `line` and `col` are 1-based; a line ends at `'\n'` only; `col` counts Unicode
//!   scalar values (a tab is one column, `'\r'` is an ordinary column); `offset` and `len` are in
//!   bytes and always fall on `char` boundaries of the source.
//! - Nesting (lists, vectors, quote sugar, datum comments) is limited to [`MAX_DEPTH`] levels,
//!   so reading, printing, comparing, dropping and compiling a datum cannot exhaust the stack.
//! - Lists are canonical: `DatumKind::List` is a proper list (empty for `()`), and
//!   `DatumKind::Dotted` has a non-empty prefix and a tail that is neither a list nor a dotted
//!   list (`(a . (b))` reads as `(a b)`, `(a . ())` as `(a)`).
//! - Integers: decimal (or `#x`/`#o`/`#b`/`#d` prefixed) integer literals are fixnums in the full
//!   `i64` range; an integer literal outside that range is an **error**
//!   ([`ReadErrorKind::FixnumOverflow`]), never silently read as a float. A runtime with narrower
//!   fixnums must check the range itself when it materializes the constant.
//! - Floats: `1.5`, `.5`, `1.`, `1e3`, `-2.5E-3`, `+inf.0`, `-inf.0`, `+nan.0`; a literal too large
//!   for `f64` reads as an infinity.
//! - Symbols are case-sensitive; any token that is not a number is a symbol.
//!
//! Syntax accepted: `( )` and `[ ]` lists (the closer must match the opener), dotted lists,
//! vectors `#( )`, `'x` `` `x `` `,x` `,@x` sugar (read as `(quote x)`, `(quasiquote x)`,
//! `(unquote x)`, `(unquote-splicing x)`), `#t #f #true #false`, characters `#\a #\space
//! #\newline #\tab #\nul #\null #\return #\linefeed #\alarm #\backspace #\delete #\escape #\x41`,
//! strings with escapes `\n \t \r \a \0 \\ \" \x41;` and `\`-newline line continuations, and
//! comments: `;` to end of line, nestable `#| |#` blocks, and `#;` datum comments.

use std::fmt;
use std::sync::Arc;

/// Maximum nesting depth of lists, vectors, quote sugar and datum comments.
pub const MAX_DEPTH: usize = 256;

/// A region of a source file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file name as given to the reader (shared by every span of the file).
    pub file: Arc<str>,
    /// 1-based line of the first character.
    pub line: u32,
    /// 1-based column (in characters) of the first character.
    pub col: u32,
    /// Byte offset of the first character.
    pub offset: usize,
    /// Length in bytes (0 only for a span at end of input).
    pub len: usize,
}

impl Span {
    /// Byte offset one past the last character.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }

    /// The span from the start of `self` to the end of `other` (same file, `other` not before
    /// `self`; otherwise `self` is returned unchanged).
    pub fn to(&self, other: &Span) -> Span {
        if other.end() < self.offset || self.file != other.file {
            return self.clone();
        }
        Span {
            len: other.end() - self.offset,
            ..self.clone()
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A datum read from source: a value and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Datum {
    pub kind: DatumKind,
    pub span: Span,
}

/// The shape of a [`Datum`].
#[derive(Clone, Debug, PartialEq)]
pub enum DatumKind {
    Fixnum(i64),
    Float(f64),
    Bool(bool),
    Char(char),
    Str(String),
    Symbol(String),
    /// A proper list; `()` is the empty one.
    List(Vec<Datum>),
    /// An improper list `(a b . c)`: non-empty prefix; the tail is never a (dotted) list.
    Dotted(Vec<Datum>, Box<Datum>),
    Vector(Vec<Datum>),
}

impl Datum {
    pub fn new(kind: DatumKind, span: Span) -> Datum {
        Datum { kind, span }
    }

    /// The symbol's name, if this is a symbol.
    pub fn as_symbol(&self) -> Option<&str> {
        match &self.kind {
            DatumKind::Symbol(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is a proper list (including `()`).
    pub fn as_list(&self) -> Option<&[Datum]> {
        match &self.kind {
            DatumKind::List(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is the symbol `name`.
    pub fn is_symbol(&self, name: &str) -> bool {
        self.as_symbol() == Some(name)
    }

    /// Structural equality ignoring spans (floats compared bitwise, so `+nan.0` equals itself).
    pub fn same_as(&self, other: &Datum) -> bool {
        use DatumKind::*;
        fn all(a: &[Datum], b: &[Datum]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
        }
        match (&self.kind, &other.kind) {
            (Fixnum(a), Fixnum(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Bool(a), Bool(b)) => a == b,
            (Char(a), Char(b)) => a == b,
            (Str(a), Str(b)) | (Symbol(a), Symbol(b)) => a == b,
            (List(a), List(b)) | (Vector(a), Vector(b)) => all(a, b),
            (Dotted(a, ta), Dotted(b, tb)) => all(a, b) && ta.same_as(tb),
            _ => false,
        }
    }
}

fn char_name(c: char) -> Option<&'static str> {
    Some(match c {
        ' ' => "space",
        '\n' => "newline",
        '\t' => "tab",
        '\0' => "nul",
        '\r' => "return",
        '\u{7}' => "alarm",
        '\u{8}' => "backspace",
        '\u{7f}' => "delete",
        '\u{1b}' => "escape",
        _ => return None,
    })
}

fn named_char(name: &str) -> Option<char> {
    Some(match name {
        "space" => ' ',
        "newline" | "linefeed" => '\n',
        "tab" => '\t',
        "nul" | "null" => '\0',
        "return" => '\r',
        "alarm" => '\u{7}',
        "backspace" => '\u{8}',
        "delete" => '\u{7f}',
        "escape" => '\u{1b}',
        _ => return None,
    })
}

/// Writes the datum in `write` style, so that reading the output gives the same datum back
/// (for symbols that are themselves readable).
impl fmt::Display for Datum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, items: &[Datum]) -> fmt::Result {
            for (i, d) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{d}")?;
            }
            Ok(())
        }
        match &self.kind {
            DatumKind::Fixnum(n) => write!(f, "{n}"),
            DatumKind::Float(x) => {
                if x.is_nan() {
                    f.write_str("+nan.0")
                } else if x.is_infinite() {
                    f.write_str(if *x > 0.0 { "+inf.0" } else { "-inf.0" })
                } else {
                    write!(f, "{x:?}")
                }
            }
            DatumKind::Bool(b) => f.write_str(if *b { "#t" } else { "#f" }),
            DatumKind::Char(c) => match char_name(*c) {
                Some(name) => write!(f, "#\\{name}"),
                None if c.is_control() => write!(f, "#\\x{:x}", *c as u32),
                None => write!(f, "#\\{c}"),
            },
            DatumKind::Str(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\t' => f.write_str("\\t")?,
                        '\r' => f.write_str("\\r")?,
                        c if c.is_control() => write!(f, "\\x{:x};", c as u32)?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
            DatumKind::Symbol(s) => f.write_str(s),
            DatumKind::List(items) => {
                if let [head, x] = items.as_slice() {
                    let sugar = match head.as_symbol() {
                        Some("quote") => Some("'"),
                        Some("quasiquote") => Some("`"),
                        Some("unquote") => Some(","),
                        Some("unquote-splicing") => Some(",@"),
                        _ => None,
                    };
                    if let Some(sugar) = sugar {
                        return write!(f, "{sugar}{x}");
                    }
                }
                f.write_str("(")?;
                seq(f, items)?;
                f.write_str(")")
            }
            DatumKind::Dotted(items, tail) => {
                f.write_str("(")?;
                seq(f, items)?;
                write!(f, " . {tail})")
            }
            DatumKind::Vector(items) => {
                f.write_str("#(")?;
                seq(f, items)?;
                f.write_str(")")
            }
        }
    }
}

/// What went wrong while reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadErrorKind {
    /// End of input inside a list; the span is the opening delimiter.
    UnterminatedList,
    /// End of input inside a vector; the span is the `#(`.
    UnterminatedVector,
    /// End of input inside a string; the span is the opening quote.
    UnterminatedString,
    /// End of input inside `#| |#`; the span is the `#|`.
    UnterminatedBlockComment,
    /// A closing delimiter with no list open.
    UnexpectedClose(char),
    /// A closing delimiter of the wrong kind, e.g. `(a]`.
    MismatchedClose { open: char, close: char },
    /// An unknown or malformed string escape (the text of the escape).
    BadEscape(String),
    /// A `#` not followed by valid syntax (the text read).
    BadHashSyntax(String),
    /// An unknown character name after `#\` (the name).
    BadCharName(String),
    /// A malformed number after a radix prefix (the text).
    BadNumber(String),
    /// An integer literal outside the `i64` range (the text).
    FixnumOverflow(String),
    /// A `.` that is not between the last two data of a list.
    BadDot,
    /// A prefix (`'`, `#;`, ...) with no datum after it; `found` is the closer met, `None` at EOF.
    MissingDatum {
        after: &'static str,
        found: Option<char>,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for ReadErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ReadErrorKind::*;
        match self {
            UnterminatedList => f.write_str("unterminated list: no matching ')'"),
            UnterminatedVector => f.write_str("unterminated vector: no matching ')'"),
            UnterminatedString => f.write_str("unterminated string: no closing '\"'"),
            UnterminatedBlockComment => f.write_str("unterminated block comment: no closing '|#'"),
            UnexpectedClose(c) => write!(f, "unexpected '{c}'"),
            MismatchedClose { open, close } => {
                write!(f, "mismatched '{close}': the list was opened with '{open}'")
            }
            BadEscape(e) => write!(f, "bad escape '{e}' in string"),
            BadHashSyntax(t) => write!(f, "bad '#' syntax '{t}'"),
            BadCharName(n) => write!(f, "unknown character name '#\\{n}'"),
            BadNumber(t) => write!(f, "bad number '{t}'"),
            FixnumOverflow(t) => write!(
                f,
                "integer literal {t} does not fit in a fixnum ({}..={})",
                i64::MIN,
                i64::MAX
            ),
            BadDot => f.write_str("unexpected '.': a dot must come before the last datum of a list"),
            MissingDatum { after, found: None } => {
                write!(f, "expected a datum after '{after}', found end of input")
            }
            MissingDatum {
                after,
                found: Some(c),
            } => write!(f, "expected a datum after '{after}', found '{c}'"),
            TooDeep => write!(f, "data nested more than {MAX_DEPTH} levels deep"),
        }
    }
}

/// A read error and where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    pub kind: ReadErrorKind,
    pub span: Span,
}

impl ReadError {
    /// Whether more input could complete the datum (useful for a REPL's continuation prompt).
    pub fn is_incomplete(&self) -> bool {
        matches!(
            self.kind,
            ReadErrorKind::UnterminatedList
                | ReadErrorKind::UnterminatedVector
                | ReadErrorKind::UnterminatedString
                | ReadErrorKind::UnterminatedBlockComment
                | ReadErrorKind::MissingDatum { found: None, .. }
        )
    }

    /// The message without the position.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.span, self.kind)
    }
}

impl std::error::Error for ReadError {}

/// Reads every datum of `src`, attributing spans to `file`.
pub fn read_all(file: &str, src: &str) -> Result<Vec<Datum>, ReadError> {
    let mut reader = Reader::new(file, src);
    let mut out = Vec::new();
    while let Some(d) = reader.read()? {
        out.push(d);
    }
    Ok(out)
}

/// Reads exactly one datum from `src` (trailing atmosphere allowed; further data are an error
/// reported as an unexpected datum via [`ReadErrorKind::BadDot`]-free message). Returns `Ok(None)`
/// on empty input.
pub fn read_one(file: &str, src: &str) -> Result<Option<Datum>, ReadError> {
    Reader::new(file, src).read()
}

/// Position marker: byte offset, line, column.
#[derive(Clone, Copy)]
struct Mark {
    offset: usize,
    line: u32,
    col: u32,
}

/// An incremental reader over one source text.
pub struct Reader<'a> {
    file: Arc<str>,
    src: &'a str,
    pos: usize,
    line: u32,
    col: u32,
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"' | ';' | '\'' | '`' | ',')
}

fn closer_for(open: char) -> char {
    if open == '[' {
        ']'
    } else {
        ')'
    }
}

impl<'a> Reader<'a> {
    pub fn new(file: &str, src: &'a str) -> Reader<'a> {
        Reader {
            file: Arc::from(file),
            src,
            pos: 0,
            line: 1,
            col: 1,
        }
    }

    /// The shared file name of the spans this reader produces.
    pub fn file(&self) -> &Arc<str> {
        &self.file
    }

    /// Reads the next datum; `Ok(None)` at end of input.
    pub fn read(&mut self) -> Result<Option<Datum>, ReadError> {
        self.skip_atmosphere(0)?;
        match self.peek() {
            None => Ok(None),
            Some(_) => self.read_datum(0).map(Some),
        }
    }

    // ---- low level ----

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn mark(&self) -> Mark {
        Mark {
            offset: self.pos,
            line: self.line,
            col: self.col,
        }
    }

    /// The span from `m` to the current position.
    fn span_from(&self, m: Mark) -> Span {
        Span {
            file: self.file.clone(),
            line: m.line,
            col: m.col,
            offset: m.offset,
            len: self.pos - m.offset,
        }
    }

    /// The span of the next character (empty at end of input).
    fn span_here(&self) -> Span {
        let m = self.mark();
        Span {
            len: self.peek().map_or(0, char::len_utf8),
            ..self.span_from(m)
        }
    }

    fn err<T>(&self, kind: ReadErrorKind, span: Span) -> Result<T, ReadError> {
        Err(ReadError { kind, span })
    }

    /// Consumes characters up to the next delimiter and returns them.
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_delimiter(c) {
                break;
            }
            self.bump();
        }
        &self.src[start..self.pos]
    }

    // ---- atmosphere ----

    /// Skips whitespace and comments (including `#;` datum comments, whose datum is read at
    /// `depth + 1` and discarded).
    fn skip_atmosphere(&mut self, depth: usize) -> Result<(), ReadError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some(';') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('#') if self.peek2() == Some('|') => self.skip_block_comment()?,
                Some('#') if self.peek2() == Some(';') => {
                    let m = self.mark();
                    self.bump();
                    self.bump();
                    let prefix = self.span_from(m);
                    self.read_after_prefix("#;", prefix, depth)?;
                }
                _ => return Ok(()),
            }
        }
    }

    fn skip_block_comment(&mut self) -> Result<(), ReadError> {
        let m = self.mark();
        self.bump();
        self.bump();
        let open = self.span_from(m);
        let mut nesting = 1usize;
        loop {
            match self.bump() {
                None => return self.err(ReadErrorKind::UnterminatedBlockComment, open),
                Some('|') if self.peek() == Some('#') => {
                    self.bump();
                    nesting -= 1;
                    if nesting == 0 {
                        return Ok(());
                    }
                }
                Some('#') if self.peek() == Some('|') => {
                    self.bump();
                    nesting += 1;
                }
                Some(_) => {}
            }
        }
    }

    /// Reads the datum following a prefix such as `'` or `#;` (whose span is `prefix`).
    fn read_after_prefix(
        &mut self,
        after: &'static str,
        prefix: Span,
        depth: usize,
    ) -> Result<Datum, ReadError> {
        if depth >= MAX_DEPTH {
            return self.err(ReadErrorKind::TooDeep, prefix);
        }
        self.skip_atmosphere(depth + 1)?;
        match self.peek() {
            None => self.err(ReadErrorKind::MissingDatum { after, found: None }, prefix),
            Some(c @ (')' | ']')) => self.err(
                ReadErrorKind::MissingDatum {
                    after,
                    found: Some(c),
                },
                prefix,
            ),
            Some(_) => self.read_datum(depth + 1),
        }
    }

    // ---- data ----

    /// Reads one datum; atmosphere has been skipped and input is not at its end.
    fn read_datum(&mut self, depth: usize) -> Result<Datum, ReadError> {
        let m = self.mark();
        let Some(c) = self.peek() else {
            return self.err(
                ReadErrorKind::MissingDatum {
                    after: "",
                    found: None,
                },
                self.span_here(),
            );
        };
        match c {
            '(' | '[' => {
                self.bump();
                self.read_seq(m, c, depth, false)
            }
            ')' | ']' => self.err(ReadErrorKind::UnexpectedClose(c), self.span_here()),
            '\'' | '`' | ',' => {
                self.bump();
                let (sym, after) = match c {
                    '\'' => ("quote", "'"),
                    '`' => ("quasiquote", "`"),
                    _ if self.peek() == Some('@') => {
                        self.bump();
                        ("unquote-splicing", ",@")
                    }
                    _ => ("unquote", ","),
                };
                let prefix = self.span_from(m);
                let inner = self.read_after_prefix(after, prefix.clone(), depth)?;
                let span = prefix.to(&inner.span);
                let head = Datum::new(DatumKind::Symbol(sym.to_string()), prefix);
                Ok(Datum::new(DatumKind::List(vec![head, inner]), span))
            }
            '"' => self.read_string(),
            '#' => self.read_hash(depth),
            _ => {
                let tok = self.token();
                let span = self.span_from(m);
                if tok == "." {
                    return self.err(ReadErrorKind::BadDot, span);
                }
                match parse_decimal(tok) {
                    Some(Ok(kind)) => Ok(Datum::new(kind, span)),
                    Some(Err(kind)) => self.err(kind, span),
                    None => Ok(Datum::new(DatumKind::Symbol(tok.to_string()), span)),
                }
            }
        }
    }

    /// Reads list or vector elements after the opener `open` (already consumed, started at `m`).
    fn read_seq(
        &mut self,
        m: Mark,
        open: char,
        depth: usize,
        vector: bool,
    ) -> Result<Datum, ReadError> {
        let open_span = self.span_from(m);
        if depth >= MAX_DEPTH {
            return self.err(ReadErrorKind::TooDeep, open_span);
        }
        let close = closer_for(open);
        let mut items = Vec::new();
        let mut tail: Option<Datum> = None;
        loop {
            self.skip_atmosphere(depth + 1)?;
            match self.peek() {
                None => {
                    let kind = if vector {
                        ReadErrorKind::UnterminatedVector
                    } else {
                        ReadErrorKind::UnterminatedList
                    };
                    return self.err(kind, open_span);
                }
                Some(c @ (')' | ']')) => {
                    if c != close {
                        return self.err(ReadErrorKind::MismatchedClose { open, close: c }, self.span_here());
                    }
                    self.bump();
                    break;
                }
                Some('.') if !vector && self.peek2().is_none_or(is_delimiter) => {
                    let dot = self.span_here();
                    if items.is_empty() || tail.is_some() {
                        return self.err(ReadErrorKind::BadDot, dot);
                    }
                    self.bump();
                    self.skip_atmosphere(depth + 1)?;
                    match self.peek() {
                        None => {
                            return self.err(ReadErrorKind::UnterminatedList, open_span);
                        }
                        Some(')' | ']') => return self.err(ReadErrorKind::BadDot, dot),
                        Some(_) => {}
                    }
                    tail = Some(self.read_datum(depth + 1)?);
                    self.skip_atmosphere(depth + 1)?;
                    match self.peek() {
                        None => return self.err(ReadErrorKind::UnterminatedList, open_span),
                        Some(')' | ']') => {}
                        Some(_) => return self.err(ReadErrorKind::BadDot, dot),
                    }
                }
                Some(_) => {
                    if tail.is_some() {
                        // Unreachable in practice: after a tail only a closer is accepted above.
                        return self.err(ReadErrorKind::BadDot, self.span_here());
                    }
                    items.push(self.read_datum(depth + 1)?);
                }
            }
        }
        let span = self.span_from(m);
        let kind = if vector {
            DatumKind::Vector(items)
        } else {
            match tail {
                None => DatumKind::List(items),
                Some(t) => match t.kind {
                    DatumKind::List(rest) => {
                        items.extend(rest);
                        DatumKind::List(items)
                    }
                    DatumKind::Dotted(rest, t2) => {
                        items.extend(rest);
                        DatumKind::Dotted(items, t2)
                    }
                    _ => DatumKind::Dotted(items, Box::new(t)),
                },
            }
        };
        Ok(Datum::new(kind, span))
    }

    fn read_string(&mut self) -> Result<Datum, ReadError> {
        let m = self.mark();
        self.bump();
        let open = self.span_from(m);
        let mut s = String::new();
        loop {
            let esc = self.mark();
            match self.bump() {
                None => return self.err(ReadErrorKind::UnterminatedString, open),
                Some('"') => break,
                Some('\\') => {
                    let Some(c) = self.bump() else {
                        return self.err(ReadErrorKind::UnterminatedString, open);
                    };
                    match c {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'r' => s.push('\r'),
                        'a' => s.push('\u{7}'),
                        '0' => s.push('\0'),
                        '\\' => s.push('\\'),
                        '"' => s.push('"'),
                        'x' | 'X' => {
                            let start = self.pos;
                            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                self.bump();
                            }
                            let hex = &self.src[start..self.pos];
                            let ok = self.peek() == Some(';');
                            if ok {
                                self.bump();
                            }
                            let ch = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
                            match ch {
                                Some(ch) if ok => s.push(ch),
                                _ => {
                                    let span = self.span_from(esc);
                                    let text = self.src[esc.offset..self.pos].to_string();
                                    return self.err(ReadErrorKind::BadEscape(text), span);
                                }
                            }
                        }
                        c if c == '\n' || (c.is_whitespace() && self.rest_of_line_blank()) => {
                            // Line continuation: `\`, optional blanks, newline, leading blanks.
                            if c != '\n' {
                                while let Some(c) = self.bump() {
                                    if c == '\n' {
                                        break;
                                    }
                                }
                            }
                            while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
                                self.bump();
                            }
                        }
                        _ => {
                            let span = self.span_from(esc);
                            let text = self.src[esc.offset..self.pos].to_string();
                            return self.err(ReadErrorKind::BadEscape(text), span);
                        }
                    }
                }
                Some(c) => s.push(c),
            }
        }
        Ok(Datum::new(DatumKind::Str(s), self.span_from(m)))
    }

    /// Whether only spaces/tabs remain before the next newline (which must exist).
    fn rest_of_line_blank(&self) -> bool {
        for c in self.src[self.pos..].chars() {
            match c {
                '\n' => return true,
                ' ' | '\t' | '\r' => {}
                _ => return false,
            }
        }
        false
    }

    fn read_hash(&mut self, depth: usize) -> Result<Datum, ReadError> {
        let m = self.mark();
        self.bump(); // '#'
        match self.peek() {
            Some('(') => {
                self.bump();
                self.read_seq(m, '(', depth, true)
            }
            Some('\\') => {
                self.bump();
                self.read_char(m)
            }
            Some(c) if !is_delimiter(c) => {
                let tok = self.token();
                let span = self.span_from(m);
                let kind = match tok {
                    "t" | "true" => DatumKind::Bool(true),
                    "f" | "false" => DatumKind::Bool(false),
                    _ => {
                        let radix = match tok.as_bytes()[0] {
                            b'x' | b'X' => 16,
                            b'o' | b'O' => 8,
                            b'b' | b'B' => 2,
                            b'd' | b'D' => 10,
                            _ => {
                                let text = format!("#{tok}");
                                return self.err(ReadErrorKind::BadHashSyntax(text), span);
                            }
                        };
                        parse_radix(&tok[1..], radix).map_err(|kind| ReadError {
                            kind,
                            span: span.clone(),
                        })?
                    }
                };
                Ok(Datum::new(kind, span))
            }
            _ => {
                let span = self.span_from(m);
                let text = match self.peek() {
                    Some(c) => format!("#{c}"),
                    None => "#".to_string(),
                };
                self.err(ReadErrorKind::BadHashSyntax(text), span)
            }
        }
    }

    /// Reads a character literal; `#\` has been consumed (started at `m`).
    fn read_char(&mut self, m: Mark) -> Result<Datum, ReadError> {
        let Some(first) = self.bump() else {
            let span = self.span_from(m);
            return self.err(ReadErrorKind::BadHashSyntax("#\\".to_string()), span);
        };
        let start = self.pos - first.len_utf8();
        self.token();
        let name = &self.src[start..self.pos];
        let span = self.span_from(m);
        let c = if name.chars().count() == 1 {
            Some(first)
        } else if let Some(c) = named_char(name) {
            Some(c)
        } else if let Some(hex) = name.strip_prefix('x').or_else(|| name.strip_prefix('X')) {
            u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
        } else {
            None
        };
        match c {
            Some(c) => Ok(Datum::new(DatumKind::Char(c), span)),
            None => self.err(ReadErrorKind::BadCharName(name.to_string()), span),
        }
    }
}

/// Classifies a token: `None` if it is not a number (so a symbol), otherwise the number or a
/// number error.
fn parse_decimal(tok: &str) -> Option<Result<DatumKind, ReadErrorKind>> {
    match tok {
        "+inf.0" => return Some(Ok(DatumKind::Float(f64::INFINITY))),
        "-inf.0" => return Some(Ok(DatumKind::Float(f64::NEG_INFINITY))),
        "+nan.0" | "-nan.0" => return Some(Ok(DatumKind::Float(f64::NAN))),
        _ => {}
    }
    let b = tok.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    let mut is_float = false;
    if i < b.len() && b[i] == b'.' {
        is_float = true;
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - s;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        is_float = true;
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    if is_float {
        Some(
            tok.parse::<f64>()
                .map(DatumKind::Float)
                .map_err(|_| ReadErrorKind::BadNumber(tok.to_string())),
        )
    } else {
        Some(
            tok.parse::<i64>()
                .map(DatumKind::Fixnum)
                .map_err(|_| ReadErrorKind::FixnumOverflow(tok.to_string())),
        )
    }
}

/// Parses the digits of a `#x`/`#o`/`#b`/`#d` integer.
fn parse_radix(digits: &str, radix: u32) -> Result<DatumKind, ReadErrorKind> {
    let prefix = match radix {
        16 => "#x",
        8 => "#o",
        2 => "#b",
        _ => "#d",
    };
    let body = digits.strip_prefix(['+', '-']).unwrap_or(digits);
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return Err(ReadErrorKind::BadNumber(format!("{prefix}{digits}")));
    }
    i64::from_str_radix(digits, radix)
        .map(DatumKind::Fixnum)
        .map_err(|_| ReadErrorKind::FixnumOverflow(format!("{prefix}{digits}")))
}
