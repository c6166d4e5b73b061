//! Diagnostics: what went wrong, where, rendered for people or as JSON.
//!
//! Every problem has its own [`Code`]; `docs/DIAGNOSTICS.md` explains each.
//! Human output starts with `file:line:col: error[CODE]: message` and
//! shows the source with a caret under the offending span.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, DisplayStyle, termcolor};
use serde::Serialize;

use crate::ast::Span;

/// The identity of a kind of problem. Codes never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Code {
    /// Input the grammar does not accept.
    E0001,
    /// A token the grammar needs is missing.
    E0002,
    /// The file is not valid UTF-8.
    E0003,
    /// Nesting deeper than [`crate::MAX_NESTING`].
    E0004,
    /// The file is larger than [`crate::MAX_SOURCE_BYTES`].
    E0005,
    /// A literal that cannot be represented (integer overflow, bad escape).
    E0006,
    /// A type name that is not defined.
    E0101,
    /// A field that the struct or record does not have.
    E0102,
    /// A name that is not in scope.
    E0103,
    /// An agent that is not defined.
    E0104,
    /// A policy that is not defined.
    E0105,
    /// A function or method that does not exist.
    E0106,
    /// Two top-level definitions with one name.
    E0107,
    /// Two fields, parameters, variants or bindings with one name.
    E0108,
    /// Wrong number of arguments or type arguments.
    E0201,
    /// Operands of the wrong type for an operator.
    E0202,
    /// A returned value does not match the declared return type.
    E0203,
    /// An argument of the wrong type.
    E0204,
    /// A condition that is not `bool`.
    E0205,
    /// A struct literal without all of the struct's fields.
    E0206,
    /// A value of the wrong type bound or assigned.
    E0207,
    /// A classifier that can return something other than a class name.
    E0208,
    /// Calling something that is not callable.
    E0209,
    /// Agent metadata that does not make sense (`classifier`, `prove`).
    E0210,
    /// An agent with a return type whose body can end without returning.
    E0211,
    /// A malformed policy rule.
    E0212,
    /// Iterating over something that is not an `Array` or a `Stream`.
    E0213,
    /// A type annotation that does not make sense (`range` on a type
    /// other than `int`, or not two ordered integer literals).
    E0214,
    /// A valid program that cannot (yet) run as a pipeline.
    E0301,
    /// An action the program performs is denied by a policy.
    E0401,
    /// A policy requirement that cannot be met.
    E0402,
    /// A policy condition or requirement that is not `attribute op value`.
    E0403,
}

impl Code {
    /// Whether the code is a policy decision (exit 2) rather than an
    /// invalid program (exit 3).
    pub fn is_policy(self) -> bool {
        matches!(self, Code::E0401 | Code::E0402)
    }

    /// The code as printed, e.g. `"E0101"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::E0001 => "E0001",
            Code::E0002 => "E0002",
            Code::E0003 => "E0003",
            Code::E0004 => "E0004",
            Code::E0005 => "E0005",
            Code::E0006 => "E0006",
            Code::E0101 => "E0101",
            Code::E0102 => "E0102",
            Code::E0103 => "E0103",
            Code::E0104 => "E0104",
            Code::E0105 => "E0105",
            Code::E0106 => "E0106",
            Code::E0107 => "E0107",
            Code::E0108 => "E0108",
            Code::E0201 => "E0201",
            Code::E0202 => "E0202",
            Code::E0203 => "E0203",
            Code::E0204 => "E0204",
            Code::E0205 => "E0205",
            Code::E0206 => "E0206",
            Code::E0207 => "E0207",
            Code::E0208 => "E0208",
            Code::E0209 => "E0209",
            Code::E0210 => "E0210",
            Code::E0211 => "E0211",
            Code::E0212 => "E0212",
            Code::E0213 => "E0213",
            Code::E0214 => "E0214",
            Code::E0301 => "E0301",
            Code::E0401 => "E0401",
            Code::E0402 => "E0402",
            Code::E0403 => "E0403",
        }
    }
}

/// One problem in one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// What kind of problem.
    pub code: Code,
    /// One sentence saying what is wrong.
    pub message: String,
    /// Where: the caret goes under this span.
    pub span: Span,
    /// Text next to the caret, if any.
    pub label: Option<String>,
    /// Further spans worth showing (e.g. the first definition of a duplicate).
    pub secondary: Vec<(Span, String)>,
    /// Notes printed after the snippet: how to fix it.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error with `code` and `message` at `span`.
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            span,
            label: None,
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a label under the caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    /// Adds a secondary span.
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
}

/// A source file: its name as the user gave it and its text.
///
/// Text that is not UTF-8 is held lossily converted, so that a diagnostic
/// about it can still show a snippet.
#[derive(Debug)]
pub struct SourceFile {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// A file named `name` holding `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// The file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The 1-based line and column (in characters) of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    /// Renders `diagnostics` for a terminal (`color`) or a plain stream.
    pub fn render(&self, diagnostics: &[Diagnostic], color: bool) -> String {
        let files = SimpleFile::new(self.name.as_str(), self.text.as_str());
        let mut out = String::new();
        for d in diagnostics {
            let (line, col) = self.line_col(d.span.start);
            out.push_str(&format!(
                "{}:{line}:{col}: error[{}]: {}\n",
                self.name,
                d.code.as_str(),
                d.message
            ));
            // The snippet comes from codespan's rich style, without its own
            // header line (ours above is the CLI contract's).
            let mut buffer = if color {
                termcolor::Buffer::ansi()
            } else {
                termcolor::Buffer::no_color()
            };
            let config = term::Config {
                display_style: DisplayStyle::Rich,
                ..term::Config::default()
            };
            let rendered = term::emit(&mut buffer, &config, &files, &self.to_codespan(d));
            let snippet = String::from_utf8_lossy(buffer.as_slice());
            if rendered.is_ok() {
                out.extend(snippet.split_inclusive('\n').skip(1));
            }
        }
        out
    }

    /// The diagnostics as JSON objects with file, line, column, code and
    /// message.
    pub fn to_json(&self, diagnostics: &[Diagnostic]) -> Vec<serde_json::Value> {
        diagnostics
            .iter()
            .map(|d| {
                let (line, column) = self.line_col(d.span.start);
                let (end_line, end_column) = self.line_col(d.span.end);
                serde_json::json!({
                    "file": self.name,
                    "line": line,
                    "column": column,
                    "end_line": end_line,
                    "end_column": end_column,
                    "severity": "error",
                    "code": d.code.as_str(),
                    "message": d.message,
                    "label": d.label,
                    "notes": d.notes,
                })
            })
            .collect()
    }

    fn to_codespan(&self, d: &Diagnostic) -> CsDiagnostic<()> {
        let clamp = |s: Span| {
            let end = s.end.min(self.text.len());
            s.start.min(end)..end
        };
        let mut labels = vec![
            Label::primary((), clamp(d.span)).with_message(d.label.clone().unwrap_or_default()),
        ];
        labels.extend(
            d.secondary
                .iter()
                .map(|(s, m)| Label::secondary((), clamp(*s)).with_message(m.clone())),
        );
        CsDiagnostic::error()
            .with_code(d.code.as_str())
            .with_message(d.message.clone())
            .with_labels(labels)
            .with_notes(d.notes.clone())
    }
}
