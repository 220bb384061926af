//! Diagnostics: rendering read, compile and runtime errors for people.
//!
//! A rendered diagnostic looks like
//!
//! ```text
//! prog.scm:3:10: error: unterminated string: no closing '"'
//!  3 | (display "abc
//!    |          ^
//! ```
//!
//! followed, for runtime errors, by a short backtrace of call-site spans.
//!
//! Invariants:
//! - Rendering never panics, even when a span does not fit the source it is rendered against
//!   (wrong file, offset past the end or inside a UTF-8 sequence): the source excerpt is then
//!   simply left out and only the `file:line:col: severity: message` header is printed.
//! - The header's line and column are the span's own; the excerpt is found from the span's byte
//!   offset, and the caret is aligned by copying the tabs that precede the column on its line.
//! - The caret underlines the span's characters that lie on its first line (at least one `^`).
//! - Backtraces are short: consecutive identical frames are folded into one line with a repeat
//!   count, and at most [`BACKTRACE_LIMIT`] lines of frames are printed.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;

use crate::reader::{ReadError, Span};
use crate::syntax::CompileError;

/// Maximum number of backtrace lines (after folding repeats) that are rendered.
pub const BACKTRACE_LIMIT: usize = 10;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// An error.
    Error,
    /// A warning.
    Warning,
    /// A note.
    Note,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        })
    }
}

/// A secondary message, with or without its own location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Where it applies, if anywhere.
    pub span: Option<Span>,
    /// The text.
    pub message: String,
}

/// One backtrace entry: a call site and, if known, the name of the procedure called there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Where the call was made.
    pub call_site: Span,
    /// The procedure called there, if it has a name.
    pub callee: Option<String>,
}

/// A message about a place in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// The main message.
    pub message: String,
    /// Where it happened, if known.
    pub span: Option<Span>,
    /// Secondary messages.
    pub notes: Vec<Note>,
    /// Innermost call first.
    pub backtrace: Vec<Frame>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span: Some(span),
            notes: Vec::new(),
            backtrace: Vec::new(),
        }
    }

    /// An error with no location.
    pub fn error_nowhere(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span: None,
            notes: Vec::new(),
            backtrace: Vec::new(),
        }
    }

    /// Adds a note.
    pub fn with_note(mut self, span: Option<Span>, message: impl Into<String>) -> Diagnostic {
        self.notes.push(Note {
            span,
            message: message.into(),
        });
        self
    }

    /// Sets the backtrace (innermost call first).
    pub fn with_backtrace(mut self, frames: Vec<Frame>) -> Diagnostic {
        self.backtrace = frames;
        self
    }

    /// Renders the diagnostic with source excerpts taken from `sources`.
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        render_entry(
            &mut out,
            self.severity,
            &self.message,
            self.span.as_ref(),
            sources,
        );
        for note in &self.notes {
            match &note.span {
                Some(_) => render_entry(
                    &mut out,
                    Severity::Note,
                    &note.message,
                    note.span.as_ref(),
                    sources,
                ),
                None => {
                    let _ = writeln!(out, "  = note: {}", note.message);
                }
            }
        }
        render_backtrace(&mut out, &self.backtrace);
        out
    }

    /// Renders against a single source text (used for every span, whatever its file name).
    pub fn render_with_source(&self, src: &str) -> String {
        let mut map = SourceMap::new();
        let mut names: Vec<&str> = Vec::new();
        let spans = self
            .span
            .iter()
            .chain(self.notes.iter().filter_map(|n| n.span.as_ref()));
        for span in spans {
            names.push(&span.file);
        }
        for name in names {
            map.add(name, src);
        }
        self.render(&map)
    }
}

/// The header line only: `file:line:col: error: message`.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.span {
            Some(span) => write!(f, "{span}: {}: {}", self.severity, self.message),
            None => write!(f, "{}: {}", self.severity, self.message),
        }
    }
}

impl From<&ReadError> for Diagnostic {
    fn from(e: &ReadError) -> Diagnostic {
        Diagnostic::error(e.message(), e.span.clone())
    }
}

impl From<ReadError> for Diagnostic {
    fn from(e: ReadError) -> Diagnostic {
        Diagnostic::from(&e)
    }
}

impl From<&CompileError> for Diagnostic {
    fn from(e: &CompileError) -> Diagnostic {
        Diagnostic::error(e.message.clone(), e.span.clone())
    }
}

impl From<CompileError> for Diagnostic {
    fn from(e: CompileError) -> Diagnostic {
        Diagnostic::error(e.message, e.span)
    }
}

/// The source texts that diagnostics quote, by file name.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: HashMap<String, String>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Records (or replaces) the text of `name`.
    pub fn add(&mut self, name: &str, src: &str) {
        self.files.insert(name.to_string(), src.to_string());
    }

    /// The text of `name`, if recorded.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(String::as_str)
    }
}

fn render_entry(
    out: &mut String,
    severity: Severity,
    message: &str,
    span: Option<&Span>,
    sources: &SourceMap,
) {
    match span {
        Some(span) => {
            let _ = writeln!(out, "{span}: {severity}: {message}");
            if let Some(src) = sources.get(&span.file) {
                if let Some(snippet) = excerpt(span, src) {
                    out.push_str(&snippet);
                }
            }
        }
        None => {
            let _ = writeln!(out, "{severity}: {message}");
        }
    }
}

/// The source line of `span` with a caret line under it, or `None` if the span does not fit
/// `src`.
pub fn excerpt(span: &Span, src: &str) -> Option<String> {
    let start = span.offset;
    if start > src.len() || !src.is_char_boundary(start) {
        return None;
    }
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let line = src[line_start..line_end].trim_end_matches('\r');
    let prefix = &src[line_start..start];
    let pad: String = prefix
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let span_end = span.end().min(line_end).max(start);
    let underlined = src
        .get(start..span_end)
        .map_or(0, |s| s.trim_end_matches('\r').chars().count());
    let carets = "^".repeat(underlined.max(1));
    let number = span.line.to_string();
    let gutter = " ".repeat(number.len());
    Some(format!(
        " {number} | {line}\n {gutter} | {pad}{carets}\n",
        line = line
    ))
}

fn render_backtrace(out: &mut String, frames: &[Frame]) {
    if frames.is_empty() {
        return;
    }
    out.push_str("backtrace (innermost call first):\n");
    // Fold runs of identical frames.
    let mut folded: Vec<(&Frame, usize)> = Vec::new();
    for f in frames {
        match folded.last_mut() {
            Some((last, n)) if *last == f => *n += 1,
            _ => folded.push((f, 1)),
        }
    }
    for (frame, count) in folded.iter().take(BACKTRACE_LIMIT) {
        let _ = write!(out, "  {}", frame.call_site);
        if let Some(name) = &frame.callee {
            let _ = write!(out, ": in call to `{name}`");
        }
        if *count > 1 {
            let _ = write!(out, " (repeated {count} times)");
        }
        out.push('\n');
    }
    if folded.len() > BACKTRACE_LIMIT {
        let hidden: usize = folded[BACKTRACE_LIMIT..].iter().map(|(_, n)| n).sum();
        let _ = writeln!(out, "  ... {hidden} more frames");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::read_all;
    use crate::symbols::SymbolTable;
    use crate::syntax::compile_program;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn span(file: &str, line: u32, col: u32, offset: usize, len: usize) -> Span {
        Span {
            file: Arc::from(file),
            line,
            col,
            offset,
            len,
        }
    }

    fn read_diag(src: &str) -> Diagnostic {
        Diagnostic::from(read_all("prog.scm", src).unwrap_err())
    }

    #[test]
    fn renders_header_line_and_caret() {
        let src = "(define x 1)\n(display \"abc\n";
        let d = read_diag(src);
        assert_eq!(
            d.render_with_source(src),
            "prog.scm:2:10: error: unterminated string: no closing '\"'\n 2 | (display \"abc\n   |          ^\n"
        );
        assert_eq!(
            d.to_string(),
            "prog.scm:2:10: error: unterminated string: no closing '\"'"
        );
    }

    #[test]
    fn caret_spans_the_token_and_keeps_tabs() {
        let src = "\t(f\t9999999999999999999999)";
        let d = read_diag(src);
        assert_eq!(
            d.render_with_source(src),
            format!(
                "prog.scm:1:5: error: {}\n 1 | {src}\n   | \t  \t{}\n",
                d.message,
                "^".repeat(22)
            )
        );
    }

    #[test]
    fn multi_line_span_underlines_first_line_only() {
        let src = "(a\r\n b)";
        let d = Diagnostic::error("whole list", span("f", 1, 1, 0, src.len()));
        assert_eq!(
            d.render_with_source(src),
            "f:1:1: error: whole list\n 1 | (a\n   | ^^\n"
        );
    }

    #[test]
    fn gutter_widens_with_line_number() {
        let src = format!("{}(oops", "\n".repeat(11));
        let d = read_diag(&src);
        assert_eq!(
            d.render_with_source(&src),
            "prog.scm:12:1: error: unterminated list: no matching ')'\n 12 | (oops\n    | ^\n"
        );
    }

    #[test]
    fn caret_at_end_of_input() {
        let src = "abc";
        let d = Diagnostic::error("here", span("f", 1, 4, 3, 0));
        assert_eq!(
            d.render_with_source(src),
            "f:1:4: error: here\n 1 | abc\n   |    ^\n"
        );
    }

    #[test]
    fn compile_errors_render_too() {
        let src = "(define (f x)\n  (if))";
        let data = read_all("prog.scm", src).unwrap();
        let e = compile_program(&data, &mut SymbolTable::new()).unwrap_err();
        let d = Diagnostic::from(&e);
        assert_eq!(
            d.render_with_source(src),
            format!(
                "prog.scm:2:3: error: {}\n 2 |   (if))\n   |   ^^^^\n",
                e.message
            )
        );
        assert_eq!(Diagnostic::from(e.clone()), d);
    }

    #[test]
    fn unknown_source_or_bad_span_gives_header_only() {
        let d = Diagnostic::error("boom", span("other.scm", 3, 2, 10, 1));
        let mut map = SourceMap::new();
        map.add("prog.scm", "(a b)");
        assert_eq!(d.render(&map), "other.scm:3:2: error: boom\n");
        // Offset past the end, and offset inside a UTF-8 sequence.
        let src = "λ";
        let past = Diagnostic::error("past", span("f", 1, 9, 99, 1));
        assert_eq!(past.render_with_source(src), "f:1:9: error: past\n");
        let inside = Diagnostic::error("inside", span("f", 1, 1, 1, 1));
        assert_eq!(inside.render_with_source(src), "f:1:1: error: inside\n");
        let huge = Diagnostic::error("huge", span("f", 1, 1, 0, usize::MAX));
        assert_eq!(
            huge.render_with_source(src),
            "f:1:1: error: huge\n 1 | λ\n   | ^\n"
        );
        assert_eq!(map.get("prog.scm"), Some("(a b)"));
        assert_eq!(map.get("nope"), None);
    }

    #[test]
    fn notes_and_no_span() {
        let src = "(let ((x 1) (x 2)) x)";
        let d = Diagnostic::error("duplicate binding `x`", span("f", 1, 14, 13, 1))
            .with_note(Some(span("f", 1, 8, 7, 1)), "first bound here")
            .with_note(None, "bindings of one `let` must be distinct");
        assert_eq!(
            d.render_with_source(src),
            "f:1:14: error: duplicate binding `x`\n 1 | (let ((x 1) (x 2)) x)\n   |              ^\n\
             f:1:8: note: first bound here\n 1 | (let ((x 1) (x 2)) x)\n   |        ^\n\
             \x20 = note: bindings of one `let` must be distinct\n"
        );
        let nowhere = Diagnostic::error_nowhere("out of memory");
        assert_eq!(nowhere.render(&SourceMap::new()), "error: out of memory\n");
        assert_eq!(nowhere.to_string(), "error: out of memory");
        assert_eq!(Severity::Warning.to_string(), "warning");
    }

    #[test]
    fn backtrace_folds_repeats_and_is_short() {
        let site = |line| span("p.scm", line, 3, 0, 1);
        let frame = |line, name: Option<&str>| Frame {
            call_site: site(line),
            callee: name.map(String::from),
        };
        let mut frames = vec![frame(2, Some("car"))];
        frames.extend(vec![frame(5, Some("loop")); 1000]);
        frames.push(frame(9, None));
        let d = Diagnostic::error("car: not a pair", site(2)).with_backtrace(frames);
        assert_eq!(
            d.render(&SourceMap::new()),
            "p.scm:2:3: error: car: not a pair\nbacktrace (innermost call first):\n  \
             p.scm:2:3: in call to `car`\n  p.scm:5:3: in call to `loop` (repeated 1000 times)\n  \
             p.scm:9:3\n"
        );
        let many: Vec<Frame> = (1..=30).map(|l| frame(l, None)).collect();
        let r = Diagnostic::error("deep", site(1))
            .with_backtrace(many)
            .render(&SourceMap::new());
        assert_eq!(r.lines().count(), 2 + BACKTRACE_LIMIT + 1);
        assert!(r.ends_with("  p.scm:10:3\n  ... 20 more frames\n"), "{r}");
    }

    proptest! {
        #[test]
        fn rendering_never_panics(
            src in "(\\PC|\t|\n|\r){0,40}",
            offset in 0usize..60,
            len in 0usize..60,
            line in 0u32..5,
            col in 0u32..5,
        ) {
            let d = Diagnostic::error("m", span("f", line, col, offset, len))
                .with_note(Some(span("f", line, col, len, offset)), "n");
            let out = d.render_with_source(&src);
            let header = format!("f:{line}:{col}: error: m\n");
            prop_assert!(out.starts_with(&header));
        }

        #[test]
        fn every_read_error_renders_with_a_caret(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let src = String::from_utf8_lossy(&bytes);
            if let Err(e) = read_all("fz", &src) {
                let out = Diagnostic::from(&e).render_with_source(&src);
                prop_assert!(out.lines().count() == 3, "{}", out);
                prop_assert!(out.lines().nth(2).unwrap().ends_with('^'), "{}", out);
            }
        }
    }
}
