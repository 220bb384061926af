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
pub const MAX_DEPTH: usize = 128;

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
        self.offset.saturating_add(self.len)
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
    /// What was read.
    pub kind: DatumKind,
    /// Where it was read from.
    pub span: Span,
}

/// The shape of a [`Datum`].
#[derive(Clone, Debug, PartialEq)]
pub enum DatumKind {
    /// An integer literal (full `i64` range).
    Fixnum(i64),
    /// A float literal.
    Float(f64),
    /// `#t` / `#f`.
    Bool(bool),
    /// A character literal.
    Char(char),
    /// A string literal (escapes resolved).
    Str(String),
    /// A symbol.
    Symbol(String),
    /// A proper list; `()` is the empty one.
    List(Vec<Datum>),
    /// An improper list `(a b . c)`: non-empty prefix; the tail is never a (dotted) list.
    Dotted(Vec<Datum>, Box<Datum>),
    /// A vector `#(...)`.
    Vector(Vec<Datum>),
}

impl Datum {
    /// A datum of `kind` read from `span`.
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
    MismatchedClose {
        /// The opening delimiter.
        open: char,
        /// The closing delimiter met.
        close: char,
    },
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
        /// The prefix.
        after: &'static str,
        /// The closer met instead, `None` at end of input.
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
            BadDot => {
                f.write_str("unexpected '.': a dot must come before the last datum of a list")
            }
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
    /// What went wrong.
    pub kind: ReadErrorKind,
    /// Where.
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

/// Reads the first datum of `src` (`Ok(None)` if there is none); what follows it is not examined.
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
    /// A reader at the start of `src`, whose spans name `file`.
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
                        return self.err(
                            ReadErrorKind::MismatchedClose { open, close: c },
                            self.span_here(),
                        );
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
                    // A control character (a newline after '#') is shown escaped: the message
                    // is one line, under which the diagnostic draws its caret.
                    Some(c) if c.is_control() => format!("#{}", c.escape_debug()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rd(src: &str) -> Vec<Datum> {
        read_all("t.scm", src).unwrap_or_else(|e| panic!("read error for {src:?}: {e}"))
    }

    fn rd1(src: &str) -> Datum {
        let mut v = rd(src);
        assert_eq!(v.len(), 1, "expected one datum in {src:?}");
        v.pop().unwrap()
    }

    fn err(src: &str) -> ReadError {
        match read_all("t.scm", src) {
            Ok(d) => panic!("expected an error for {src:?}, read {d:?}"),
            Err(e) => e,
        }
    }

    /// (line, col) of a span.
    fn lc(span: &Span) -> (u32, u32) {
        (span.line, span.col)
    }

    fn text<'a>(src: &'a str, span: &Span) -> &'a str {
        &src[span.offset..span.end()]
    }

    /// Recomputes line:col from the byte offset and checks the span agrees.
    fn check_span(src: &str, span: &Span) {
        assert!(span.end() <= src.len(), "span {span:?} past end of {src:?}");
        assert!(src.is_char_boundary(span.offset) && src.is_char_boundary(span.end()));
        let before = &src[..span.offset];
        let line = 1 + before.matches('\n').count() as u32;
        let col = 1 + before.rsplit('\n').next().unwrap().chars().count() as u32;
        assert_eq!(
            (span.line, span.col),
            (line, col),
            "span {span:?} in {src:?}"
        );
    }

    fn check_spans(src: &str, d: &Datum) {
        check_span(src, &d.span);
        match &d.kind {
            DatumKind::List(xs) | DatumKind::Vector(xs) => {
                xs.iter().for_each(|x| check_spans(src, x))
            }
            DatumKind::Dotted(xs, t) => {
                xs.iter().for_each(|x| check_spans(src, x));
                check_spans(src, t);
            }
            _ => {}
        }
    }

    #[test]
    fn fixnums() {
        assert_eq!(rd1("42").kind, DatumKind::Fixnum(42));
        assert_eq!(rd1("-7").kind, DatumKind::Fixnum(-7));
        assert_eq!(rd1("+5").kind, DatumKind::Fixnum(5));
        assert_eq!(rd1("0").kind, DatumKind::Fixnum(0));
        assert_eq!(rd1("9223372036854775807").kind, DatumKind::Fixnum(i64::MAX));
        assert_eq!(
            rd1("-9223372036854775808").kind,
            DatumKind::Fixnum(i64::MIN)
        );
        let d = rd1("  123 ");
        assert_eq!((lc(&d.span), d.span.offset, d.span.len), ((1, 3), 2, 3));
    }

    #[test]
    fn fixnum_overflow_is_an_error() {
        let e = err("(a\n  9223372036854775808)");
        assert_eq!(
            e.kind,
            ReadErrorKind::FixnumOverflow("9223372036854775808".into())
        );
        assert_eq!(lc(&e.span), (2, 3));
        assert_eq!(e.span.len, 19);
        assert!(e
            .to_string()
            .starts_with("t.scm:2:3: integer literal 9223372036854775808 does not fit"));
        let e = err("-9223372036854775809");
        assert!(matches!(e.kind, ReadErrorKind::FixnumOverflow(_)));
    }

    #[test]
    fn floats() {
        let f = |s: &str| match rd1(s).kind {
            DatumKind::Float(x) => x,
            k => panic!("{s}: {k:?}"),
        };
        assert_eq!(f("1.5"), 1.5);
        assert_eq!(f(".5"), 0.5);
        assert_eq!(f("-.5"), -0.5);
        assert_eq!(f("1."), 1.0);
        assert_eq!(f("-2.5e-3"), -2.5e-3);
        assert_eq!(f("1e3"), 1000.0);
        assert_eq!(f("1E3"), 1000.0);
        assert_eq!(f("+inf.0"), f64::INFINITY);
        assert_eq!(f("-inf.0"), f64::NEG_INFINITY);
        assert!(f("+nan.0").is_nan());
        assert_eq!(f("1e999"), f64::INFINITY);
    }

    #[test]
    fn symbols() {
        for s in [
            "x", "+", "-", "...", "->x", "a.b", "1+", "set!", "<=?", "λ", "1e", ".b", "-x", "+a",
            "inf", "nan", "a#b",
        ] {
            assert_eq!(rd1(s).kind, DatumKind::Symbol(s.into()), "{s}");
        }
        // Case-sensitive.
        assert_ne!(rd1("Foo").kind, rd1("foo").kind);
        let d = rd(" foo bar");
        assert_eq!(lc(&d[1].span), (1, 6));
        assert_eq!(d[1].span.len, 3);
    }

    #[test]
    fn booleans() {
        for (s, b) in [
            ("#t", true),
            ("#f", false),
            ("#true", true),
            ("#false", false),
        ] {
            let d = rd1(s);
            assert_eq!(d.kind, DatumKind::Bool(b));
            assert_eq!(d.span.len, s.len());
        }
        let e = err("  #tru");
        assert_eq!(e.kind, ReadErrorKind::BadHashSyntax("#tru".into()));
        assert_eq!(lc(&e.span), (1, 3));
    }

    #[test]
    fn characters() {
        for (s, c) in [
            (r"#\a", 'a'),
            (r"#\A", 'A'),
            (r"#\space", ' '),
            (r"#\newline", '\n'),
            (r"#\tab", '\t'),
            (r"#\nul", '\0'),
            (r"#\null", '\0'),
            (r"#\return", '\r'),
            (r"#\alarm", '\u{7}'),
            (r"#\delete", '\u{7f}'),
            (r"#\escape", '\u{1b}'),
            (r"#\backspace", '\u{8}'),
            (r"#\x41", 'A'),
            (r"#\x3bb", 'λ'),
            (r"#\x", 'x'),
            (r"#\λ", 'λ'),
            (r"#\(", '('),
            (r"#\)", ')'),
            (r"#\;", ';'),
            ("#\\ ", ' '),
        ] {
            let d = rd1(s);
            assert_eq!(d.kind, DatumKind::Char(c), "{s}");
            assert_eq!(d.span.len, s.len(), "{s}");
        }
        // A character literal ends at a delimiter.
        let d = rd1(r"(#\) #\a)");
        assert_eq!(d.to_string(), r"(#\) #\a)");
        let e = err("x #\\foo");
        assert_eq!(e.kind, ReadErrorKind::BadCharName("foo".into()));
        assert_eq!((lc(&e.span), e.span.len), ((1, 3), 5));
        let e = err(r"#\xZZ");
        assert_eq!(e.kind, ReadErrorKind::BadCharName("xZZ".into()));
        let e = err(r"#\xD800");
        assert!(matches!(e.kind, ReadErrorKind::BadCharName(_)));
        let e = err("\n#\\");
        assert_eq!(e.kind, ReadErrorKind::BadHashSyntax("#\\".into()));
        assert_eq!(lc(&e.span), (2, 1));
    }

    #[test]
    fn strings() {
        let s = |src: &str| match rd1(src).kind {
            DatumKind::Str(s) => s,
            k => panic!("{src}: {k:?}"),
        };
        assert_eq!(s(r#""abc""#), "abc");
        assert_eq!(s(r#""""#), "");
        assert_eq!(s(r#""a\nb\tc\\d\"e""#), "a\nb\tc\\d\"e");
        assert_eq!(s(r#""\r\a\0""#), "\r\u{7}\0");
        assert_eq!(s(r#""\x41;\x3bb;""#), "Aλ");
        assert_eq!(s("\"line1\nline2\""), "line1\nline2");
        assert_eq!(s("\"ab\\\n    cd\""), "abcd");
        assert_eq!(s("\"ab\\  \n\tcd\""), "abcd");
        assert_eq!(s("\"héllo ☃\""), "héllo ☃");
        let d = rd("x \"a\nb\" y");
        assert_eq!((lc(&d[1].span), d[1].span.len), ((1, 3), 5));
        assert_eq!(lc(&d[2].span), (2, 4));
    }

    #[test]
    fn string_errors() {
        let e = err("(display \"abc\\q\")");
        assert_eq!(e.kind, ReadErrorKind::BadEscape("\\q".into()));
        assert_eq!((lc(&e.span), e.span.len), ((1, 14), 2));
        let e = err(r#""\x41""#);
        assert!(matches!(e.kind, ReadErrorKind::BadEscape(_)));
        let e = err(r#""\xFFFFFFFF;""#);
        assert!(matches!(e.kind, ReadErrorKind::BadEscape(_)));
        let e = err("(f\n  \"abc\ndef");
        assert_eq!(e.kind, ReadErrorKind::UnterminatedString);
        assert_eq!((lc(&e.span), e.span.len), ((2, 3), 1));
        assert!(e.is_incomplete());
        let e = err("\"abc\\");
        assert_eq!(e.kind, ReadErrorKind::UnterminatedString);
        assert_eq!(lc(&e.span), (1, 1));
    }

    #[test]
    fn lists_and_positions() {
        let src = "(a\n  bb\n\tλ c)";
        let d = rd1(src);
        let xs = d.as_list().unwrap();
        assert_eq!(xs.len(), 4);
        assert_eq!(lc(&xs[0].span), (1, 2));
        assert_eq!(lc(&xs[1].span), (2, 3));
        assert_eq!(lc(&xs[2].span), (3, 2));
        assert_eq!(lc(&xs[3].span), (3, 4));
        assert_eq!(xs[3].span.offset, src.find(" c").unwrap() + 1);
        assert_eq!(text(src, &d.span), src);
        check_spans(src, &d);

        assert_eq!(rd1("()").kind, DatumKind::List(vec![]));
        assert_eq!(rd1("( )").to_string(), "()");
        assert_eq!(rd1("(a (b (c)) d)").to_string(), "(a (b (c)) d)");
        assert_eq!(rd1("[a [b] (c)]").to_string(), "(a (b) (c))");
        // CRLF line endings: '\r' is an ordinary column.
        let d = rd("a\r\nbc");
        assert_eq!(lc(&d[1].span), (2, 1));
    }

    #[test]
    fn dotted_lists() {
        let d = rd1("(a . b)");
        match &d.kind {
            DatumKind::Dotted(xs, t) => {
                assert_eq!(xs.len(), 1);
                assert!(t.is_symbol("b"));
                assert_eq!(lc(&t.span), (1, 6));
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(rd1("(a b . c)").to_string(), "(a b . c)");
        assert_eq!(rd1("(a . (b c))").to_string(), "(a b c)");
        assert!(matches!(rd1("(a . (b c))").kind, DatumKind::List(_)));
        assert_eq!(rd1("(a . ())").to_string(), "(a)");
        assert_eq!(rd1("(a . (b . c))").to_string(), "(a b . c)");
        assert_eq!(rd1("(a .b)").to_string(), "(a .b)");
        assert_eq!(rd1("(a . 1.5)").to_string(), "(a . 1.5)");
        assert_eq!(rd1("(a .5)").to_string(), "(a 0.5)");
        assert_eq!(rd1("(a ...)").to_string(), "(a ...)");
        assert_eq!(rd1("(a . #;x b)").to_string(), "(a . b)");
    }

    #[test]
    fn dot_errors() {
        for (src, at) in [
            ("(. a)", (1, 2)),
            ("(a .)", (1, 4)),
            ("(a . b c)", (1, 4)),
            ("(a . . b)", (1, 6)),
            (" . a", (1, 2)),
            ("#(a . b)", (1, 5)),
        ] {
            let e = err(src);
            assert_eq!(e.kind, ReadErrorKind::BadDot, "{src}");
            assert_eq!(lc(&e.span), at, "{src}");
        }
        let e = err("(a . ");
        assert_eq!(e.kind, ReadErrorKind::UnterminatedList);
        let e = err("(a . b");
        assert_eq!(e.kind, ReadErrorKind::UnterminatedList);
    }

    #[test]
    fn vectors() {
        let d = rd1("#(1 \"two\" (3) #(4))");
        match &d.kind {
            DatumKind::Vector(xs) => {
                assert_eq!(xs.len(), 4);
                assert_eq!(lc(&xs[1].span), (1, 5));
                assert!(matches!(xs[3].kind, DatumKind::Vector(_)));
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(rd1("#()").kind, DatumKind::Vector(vec![]));
        let e = err("(x\n #(1 2");
        assert_eq!(e.kind, ReadErrorKind::UnterminatedVector);
        assert_eq!((lc(&e.span), e.span.len), ((2, 2), 2));
        let e = err("#(1]");
        assert_eq!(
            e.kind,
            ReadErrorKind::MismatchedClose {
                open: '(',
                close: ']'
            }
        );
    }

    #[test]
    fn quote_sugar() {
        let src = "  'x";
        let d = rd1(src);
        let xs = d.as_list().unwrap();
        assert!(xs[0].is_symbol("quote"));
        assert!(xs[1].is_symbol("x"));
        assert_eq!(text(src, &d.span), "'x");
        assert_eq!(text(src, &xs[0].span), "'");
        assert_eq!(lc(&xs[1].span), (1, 4));
        assert_eq!(rd1("'(a b)").to_string(), "'(a b)");
        assert_eq!(rd1("' x").to_string(), "'x");
        assert_eq!(rd1("''x").to_string(), "''x");
        assert_eq!(rd1("`(a ,b ,@c)").to_string(), "`(a ,b ,@c)");
        let d = rd1("`(a ,b ,@c)");
        let inner = d.as_list().unwrap()[1].as_list().unwrap();
        assert!(inner[1].as_list().unwrap()[0].is_symbol("unquote"));
        assert!(inner[2].as_list().unwrap()[0].is_symbol("unquote-splicing"));
        assert_eq!(rd1("(quote x)").to_string(), "'x");
        assert_eq!(rd1("(quote x y)").to_string(), "(quote x y)");
        // `'` is a delimiter: two data.
        let two: Vec<String> = rd("a'b").iter().map(Datum::to_string).collect();
        assert_eq!(two, ["a", "'b"]);
    }

    #[test]
    fn missing_datum_after_prefix() {
        let e = err("(a\n 'x ')");
        assert_eq!(
            e.kind,
            ReadErrorKind::MissingDatum {
                after: "'",
                found: Some(')')
            }
        );
        assert_eq!(lc(&e.span), (2, 5));
        assert!(!e.is_incomplete());
        let e = err("x '");
        assert_eq!(
            e.kind,
            ReadErrorKind::MissingDatum {
                after: "'",
                found: None
            }
        );
        assert!(e.is_incomplete());
        let e = err("(a #;)");
        assert_eq!(
            e.kind,
            ReadErrorKind::MissingDatum {
                after: "#;",
                found: Some(')')
            }
        );
        assert_eq!(lc(&e.span), (1, 4));
        let e = err(",@");
        assert!(matches!(
            e.kind,
            ReadErrorKind::MissingDatum { after: ",@", .. }
        ));
    }

    #[test]
    fn comments() {
        assert_eq!(rd("; only a comment").len(), 0);
        assert_eq!(rd("").len(), 0);
        let src =
            "; c1\na ; c2\n#| block\n #| nested |# still |# b #;(ignored (data)) c #; #; d e f";
        let d = rd(src);
        let names: Vec<String> = d.iter().map(|x| x.to_string()).collect();
        assert_eq!(names, ["a", "b", "c", "f"]);
        assert_eq!(lc(&d[0].span), (2, 1));
        assert_eq!(lc(&d[1].span), (4, 24));
        assert_eq!(rd1("(a #| x |# b ; y\n c)").to_string(), "(a b c)");
        assert_eq!(rd1("(a #;b)").to_string(), "(a)");
        assert_eq!(rd1("(a#|x|#b)").to_string(), "(a#|x|#b)"); // `#` inside a token
        assert_eq!(rd1("#|a|#x").to_string(), "x");
    }

    #[test]
    fn comment_errors() {
        let e = err("a\n  #| open #| nested |# ");
        assert_eq!(e.kind, ReadErrorKind::UnterminatedBlockComment);
        assert_eq!((lc(&e.span), e.span.len), ((2, 3), 2));
        assert!(e.is_incomplete());
        let e = err("#;");
        assert!(matches!(
            e.kind,
            ReadErrorKind::MissingDatum { found: None, .. }
        ));
    }

    #[test]
    fn list_errors() {
        let e = err("(define (f x)\n  (+ x 1)");
        assert_eq!(e.kind, ReadErrorKind::UnterminatedList);
        assert_eq!((lc(&e.span), e.span.len), ((1, 1), 1));
        assert!(e.is_incomplete());
        assert_eq!(e.message(), "unterminated list: no matching ')'");
        // The innermost unterminated list is reported.
        let e = err("(a\n (b");
        assert_eq!(lc(&e.span), (2, 2));
        let e = err("a ) b");
        assert_eq!(e.kind, ReadErrorKind::UnexpectedClose(')'));
        assert_eq!((lc(&e.span), e.span.len), ((1, 3), 1));
        assert!(!e.is_incomplete());
        let e = err("(a b))");
        assert_eq!(lc(&e.span), (1, 6));
        let e = err("]");
        assert_eq!(e.kind, ReadErrorKind::UnexpectedClose(']'));
        let e = err("(a\n  b]");
        assert_eq!(
            e.kind,
            ReadErrorKind::MismatchedClose {
                open: '(',
                close: ']'
            }
        );
        assert_eq!(lc(&e.span), (2, 4));
        let e = err("[a)");
        assert_eq!(
            e.kind,
            ReadErrorKind::MismatchedClose {
                open: '[',
                close: ')'
            }
        );
    }

    #[test]
    fn hash_syntax() {
        assert_eq!(rd1("#xFF").kind, DatumKind::Fixnum(255));
        assert_eq!(rd1("#x-ff").kind, DatumKind::Fixnum(-255));
        assert_eq!(rd1("#b101").kind, DatumKind::Fixnum(5));
        assert_eq!(rd1("#o17").kind, DatumKind::Fixnum(15));
        assert_eq!(rd1("#d10").kind, DatumKind::Fixnum(10));
        assert_eq!(rd1("#X7fffffffffffffff").kind, DatumKind::Fixnum(i64::MAX));
        let e = err("#x8000000000000000");
        assert_eq!(
            e.kind,
            ReadErrorKind::FixnumOverflow("#x8000000000000000".into())
        );
        for (src, kind) in [
            ("#xZZ", ReadErrorKind::BadNumber("#xZZ".into())),
            ("#x", ReadErrorKind::BadNumber("#x".into())),
            ("#b102", ReadErrorKind::BadNumber("#b102".into())),
            ("#x+", ReadErrorKind::BadNumber("#x+".into())),
            ("#q", ReadErrorKind::BadHashSyntax("#q".into())),
            ("#", ReadErrorKind::BadHashSyntax("#".into())),
            ("#\n", ReadErrorKind::BadHashSyntax("#\\n".into())),
            ("#[", ReadErrorKind::BadHashSyntax("#[".into())),
            ("# a", ReadErrorKind::BadHashSyntax("# ".into())),
            ("#é", ReadErrorKind::BadHashSyntax("#é".into())),
        ] {
            let e = err(src);
            assert_eq!(e.kind, kind, "{src}");
            assert_eq!(lc(&e.span), (1, 1), "{src}");
        }
        let e = err("(list 1\n   #z)");
        assert_eq!(lc(&e.span), (2, 4));
        assert_eq!(e.to_string(), "t.scm:2:4: bad '#' syntax '#z'");
    }

    #[test]
    fn nesting_limit() {
        let ok = format!("{}x{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(rd(&ok).len(), 1);
        let deep = format!(
            "{}x{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        let e = err(&deep);
        assert_eq!(e.kind, ReadErrorKind::TooDeep);
        assert_eq!(lc(&e.span), (1, MAX_DEPTH as u32 + 1));
        assert_eq!(err(&"(".repeat(100_000)).kind, ReadErrorKind::TooDeep);
        assert_eq!(
            err(&format!("{}x", "'".repeat(100_000))).kind,
            ReadErrorKind::TooDeep
        );
        assert_eq!(
            err(&format!("{}x", "#;".repeat(100_000))).kind,
            ReadErrorKind::TooDeep
        );
        assert_eq!(err(&"#(".repeat(100_000)).kind, ReadErrorKind::TooDeep);
    }

    #[test]
    fn incremental_reader() {
        let mut r = Reader::new("repl", "1 (a) \"s\" ; done\n");
        assert_eq!(&**r.file(), "repl");
        assert_eq!(r.read().unwrap().unwrap().to_string(), "1");
        assert_eq!(r.read().unwrap().unwrap().to_string(), "(a)");
        let s = r.read().unwrap().unwrap();
        assert_eq!(&*s.span.file, "repl");
        assert!(r.read().unwrap().is_none());
        assert!(r.read().unwrap().is_none());
        assert_eq!(read_one("f", "a b").unwrap().unwrap().to_string(), "a");
        assert!(read_one("f", "  ").unwrap().is_none());
    }

    #[test]
    fn display_writes_readable_data() {
        let src = r#"(1 -2 1.5 -0.0 1e100 +inf.0 -inf.0 +nan.0 #t #f #\a #\space #\newline #\x0 "a\"b\\c\nd\x1;" sym (a . b) #(1 (2)) 'q `(a ,b ,@c) ())"#;
        let d = rd1(src);
        let printed = d.to_string();
        assert_eq!(
            printed,
            r#"(1 -2 1.5 -0.0 1e100 +inf.0 -inf.0 +nan.0 #t #f #\a #\space #\newline #\nul "a\"b\\c\nd\x1;" sym (a . b) #(1 (2)) 'q `(a ,b ,@c) ())"#
        );
        assert!(rd1(&printed).same_as(&d));
        assert_eq!(rd1("1.0").to_string(), "1.0");
        assert_eq!(rd1("#\\x7").to_string(), "#\\alarm");
        assert_eq!(rd1("#\\x1").to_string(), "#\\x1");
    }

    #[test]
    fn same_as_ignores_spans() {
        assert!(rd1("(a   b)").same_as(&rd1("\n(a b)")));
        assert!(!rd1("(a b)").same_as(&rd1("(a . b)")));
        assert!(!rd1("1").same_as(&rd1("1.0")));
        assert!(!rd1("\"a\"").same_as(&rd1("a")));
        assert!(!rd1("#(a)").same_as(&rd1("(a)")));
        assert_ne!(rd1("(a   b)"), rd1("(a b)")); // `==` compares spans too
    }

    #[test]
    fn span_helpers() {
        let d = rd1("(ab cd)");
        let xs = d.as_list().unwrap();
        let joined = xs[0].span.to(&xs[1].span);
        assert_eq!((joined.offset, joined.len), (1, 5));
        assert_eq!(xs[1].span.to(&xs[0].span), xs[1].span);
        assert_eq!(d.span.to_string(), "t.scm:1:1");
    }

    /// A datum with a dummy span.
    fn mk(kind: DatumKind) -> Datum {
        Datum::new(
            kind,
            Span {
                file: Arc::from("gen"),
                line: 1,
                col: 1,
                offset: 0,
                len: 0,
            },
        )
    }

    fn arb_leaf() -> impl Strategy<Value = Datum> {
        prop_oneof![
            any::<i64>().prop_map(|n| mk(DatumKind::Fixnum(n))),
            any::<f64>().prop_map(|x| mk(DatumKind::Float(x))),
            prop::sample::select(vec![0.0, -0.0, 1.5, 1e300, 5e-324, f64::INFINITY, f64::NAN])
                .prop_map(|x| mk(DatumKind::Float(x))),
            any::<bool>().prop_map(|b| mk(DatumKind::Bool(b))),
            any::<char>().prop_map(|c| mk(DatumKind::Char(c))),
            any::<String>().prop_map(|s| mk(DatumKind::Str(s))),
            "[a-zA-Z!$%&*/:<=>?^_~λ][a-zA-Z0-9!$%&*/:<=>?^_~+.@-]{0,8}"
                .prop_map(|s| mk(DatumKind::Symbol(s))),
        ]
    }

    fn arb_datum() -> impl Strategy<Value = Datum> {
        arb_leaf().prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(|v| mk(DatumKind::List(v))),
                prop::collection::vec(inner.clone(), 0..6).prop_map(|v| mk(DatumKind::Vector(v))),
                (prop::collection::vec(inner, 1..5), arb_leaf())
                    .prop_map(|(v, t)| mk(DatumKind::Dotted(v, Box::new(t)))),
            ]
        })
    }

    proptest! {
        #[test]
        fn write_then_read_round_trips(d in arb_datum()) {
            let printed = d.to_string();
            let back = read_all("rt", &printed).map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
            prop_assert_eq!(back.len(), 1, "{:?}", printed);
            prop_assert!(back[0].same_as(&d), "{:?} read back as {}", printed, back[0]);
            check_spans(&printed, &back[0]);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let src = String::from_utf8_lossy(&bytes);
            match read_all("fuzz", &src) {
                Ok(data) => data.iter().for_each(|d| check_spans(&src, d)),
                Err(e) => check_span(&src, &e.span),
            }
        }

        #[test]
        fn random_token_soup_never_panics(
            toks in prop::collection::vec(prop::sample::select(vec![
                "(", ")", "[", "]", "#(", "'", "`", ",", ",@", ".", "#;", "#|", "|#", ";", "\n",
                "\"", "\\", "#\\", "#\\space", "#t", "#x", "1", "-", "1.5e", "a", " ", "\t", "λ",
                "#", "\"a\\", "x\"",
            ]), 0..40)
        ) {
            let src: String = toks.concat();
            match read_all("fuzz", &src) {
                Ok(data) => data.iter().for_each(|d| check_spans(&src, d)),
                Err(e) => check_span(&src, &e.span),
            }
        }
    }
}
