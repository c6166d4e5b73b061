//! The formatter: one canonical layout for every program, comments kept.
//!
//! Layout is a function of the AST alone (plus, when the source is given,
//! where it had blank lines), so formatting is idempotent. Comments are
//! emitted in source order before the item, statement, field or rule they
//! precede, or at the end of the line they trail. A comment written inside
//! an expression moves to the next such place; none is ever dropped.

use crate::ast::*;

const INDENT: &str = "    ";

/// Struct and object literals longer than this (on one line) are broken
/// into one field per line.
const MAX_INLINE_LITERAL: usize = 60;

/// Lists (arrays, `require` conditions) longer than this are broken.
const MAX_INLINE_LIST: usize = 80;

/// A `with` clause that would end past this column is broken.
const MAX_LINE: usize = 100;

/// Formats `program`. `source` is the text it was parsed from, used to
/// keep blank lines and to tell trailing comments from leading ones; pass
/// `None` for a program built in memory.
pub fn format_program(program: &Program, source: Option<&str>) -> String {
    let mut p = Printer {
        out: String::new(),
        indent: 0,
        line_open: false,
        comments: &program.comments,
        next_comment: 0,
        source,
        pending_blank: false,
    };
    for item in &program.items {
        p.pending_blank = !p.out.is_empty();
        p.leading_comments(item.span().start);
        p.separate(item.span().start);
        p.item(item);
        p.trailing_comment(item.span().end);
        p.end_line();
        p.pending_blank = true;
    }
    p.leading_comments(usize::MAX);
    p.end_line();
    p.out
}

struct Printer<'a> {
    out: String,
    indent: usize,
    /// Whether the current line has text (so its indentation is written).
    line_open: bool,
    comments: &'a [Comment],
    next_comment: usize,
    source: Option<&'a str>,
    /// A blank line is owed before the next thing printed.
    pending_blank: bool,
}

impl Printer<'_> {
    /// A printer for measuring how an expression looks on one line.
    fn scratch<'b>() -> Printer<'b> {
        Printer {
            out: String::new(),
            indent: 0,
            line_open: false,
            comments: &[],
            next_comment: 0,
            source: None,
            pending_blank: false,
        }
    }

    fn write(&mut self, s: &str) {
        if !self.line_open {
            for _ in 0..self.indent {
                self.out.push_str(INDENT);
            }
            self.line_open = true;
        }
        self.out.push_str(s);
    }

    fn end_line(&mut self) {
        if self.line_open {
            self.out.push('\n');
            self.line_open = false;
        }
    }

    /// Whether the source had a blank line just before byte `pos`.
    fn blank_in_source_before(&self, pos: usize) -> bool {
        let Some(src) = self.source else {
            return false;
        };
        let before = &src[..pos.min(src.len())];
        let gap = &before[before.trim_end().len()..];
        gap.matches('\n').count() >= 2
    }

    /// Writes a blank line before the thing at `pos` if one is owed or the
    /// source had one, except at the start of a file or block.
    fn separate(&mut self, pos: usize) {
        let at_start = self.out.is_empty() || self.out.ends_with("{\n");
        if !at_start
            && (self.pending_blank || self.blank_in_source_before(pos))
            && !self.out.ends_with("\n\n")
        {
            self.end_line();
            self.out.push('\n');
        }
        self.pending_blank = false;
    }

    /// Emits, each on its own line, the comments that start before `pos`.
    fn leading_comments(&mut self, pos: usize) {
        while let Some(c) = self.comments.get(self.next_comment) {
            if c.span.start >= pos {
                break;
            }
            self.end_line();
            self.separate(c.span.start);
            self.write(&c.text);
            self.end_line();
            self.next_comment += 1;
        }
    }

    /// Emits a comment that starts on the same source line after `end`.
    fn trailing_comment(&mut self, end: usize) {
        let (Some(c), Some(src)) = (self.comments.get(self.next_comment), self.source) else {
            return;
        };
        let same_line = c.span.start >= end
            && src
                .get(end..c.span.start)
                .is_some_and(|gap| !gap.contains('\n'));
        if same_line && !c.text.contains('\n') {
            self.write(" ");
            self.write(&c.text);
            self.next_comment += 1;
        }
    }

    /// Prints `items` one per line, each but the last followed by
    /// `separator`, keeping their comments.
    fn lines<T>(
        &mut self,
        items: &[T],
        span_of: impl Fn(&T) -> Span,
        mut print: impl FnMut(&mut Self, &T),
        separator: &str,
    ) {
        for (i, item) in items.iter().enumerate() {
            let span = span_of(item);
            self.leading_comments(span.start);
            self.separate(span.start);
            print(self, item);
            if i + 1 < items.len() {
                self.write(separator);
            }
            self.trailing_comment(span.end);
            self.end_line();
        }
    }

    /// Opens a `{`-delimited body on the current line.
    fn open(&mut self) {
        self.write("{");
        self.end_line();
        self.indent += 1;
    }

    /// Closes a body, first emitting the comments that lie inside it.
    fn close(&mut self, end: usize) {
        self.leading_comments(end);
        self.end_line();
        self.indent -= 1;
        self.write("}");
    }

    fn comma_list<T>(&mut self, items: &[T], mut print: impl FnMut(&mut Self, &T)) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.write(", ");
            }
            print(self, item);
        }
    }

    // ------------------------------------------------------------- items

    fn item(&mut self, item: &Item) {
        match item {
            Item::Import(i) => {
                self.write("import ");
                let path: Vec<&str> = i.path.iter().map(|s| s.name.as_str()).collect();
                self.write(&path.join("."));
                if let Some(alias) = &i.alias {
                    self.write(" as ");
                    self.write(&alias.name);
                }
                self.write(";");
            }
            Item::Agent(a) => self.agent(a),
            Item::Policy(p) => self.policy(p),
            Item::TypeAlias(t) => {
                self.write("type ");
                self.write(&t.name.name);
                self.type_params(&t.params);
                self.write(" = ");
                self.ty(&t.ty);
                if !t.annotations.is_empty() {
                    self.write(" with ");
                    self.comma_list(&t.annotations, |p, a| {
                        p.write(&a.name.name);
                        p.args(&a.args);
                    });
                }
                self.write(";");
            }
            Item::Struct(s) => {
                self.write("struct ");
                self.write(&s.name.name);
                self.type_params(&s.params);
                self.write(" ");
                self.field_decls(&s.fields, s.span.end);
            }
            Item::Enum(e) => {
                self.write("enum ");
                self.write(&e.name.name);
                self.write(" ");
                self.variants(&e.variants, e.span.end);
            }
        }
    }

    fn type_params(&mut self, params: &[Ident]) {
        if !params.is_empty() {
            self.write("<");
            self.comma_list(params, |p, i| p.write(&i.name));
            self.write(">");
        }
    }

    fn field_decls(&mut self, fields: &[FieldDecl], end: usize) {
        if fields.is_empty() {
            self.write("{}");
            return;
        }
        self.open();
        self.lines(
            fields,
            |f| f.span,
            |p, f| {
                p.write(&f.name.name);
                p.write(": ");
                p.ty(&f.ty);
            },
            ",",
        );
        self.close(end);
    }

    fn variants(&mut self, variants: &[Ident], end: usize) {
        if variants.is_empty() {
            self.write("{}");
            return;
        }
        self.open();
        self.lines(variants, |v| v.span, |p, v| p.write(&v.name), ",");
        self.close(end);
    }

    fn agent(&mut self, a: &Agent) {
        for annotation in &a.annotations {
            self.write("@");
            self.write(&annotation.name.name);
            if let Some(args) = &annotation.args {
                self.args(args);
            }
            self.end_line();
        }
        self.write("agent ");
        self.write(&a.name.name);
        if let Some(params) = &a.params {
            self.write("(");
            self.comma_list(params, |p, param| {
                p.write(&param.name.name);
                p.write(": ");
                p.ty(&param.ty);
                if let Some(default) = &param.default {
                    p.write(" = ");
                    p.expr(default, 0);
                }
            });
            self.write(")");
            if let Some(ret) = &a.return_type {
                self.write(" -> ");
                self.ty(ret);
            }
        }
        if a.metadata.is_empty() {
            self.write(" ");
        } else {
            self.end_line();
            self.indent += 1;
            self.write("with ");
            self.metadata(&a.metadata);
            self.write(" ");
            self.indent -= 1;
        }
        self.block(&a.body);
    }

    /// The column the next character will be written at.
    fn column(&self) -> usize {
        if self.line_open {
            let line_start = self.out.rfind('\n').map_or(0, |i| i + 1);
            self.out[line_start..].chars().count()
        } else {
            self.indent * INDENT.len()
        }
    }

    /// Prints `with` entries on one line, or one per line (aligned after
    /// `with `) when the line would end past `MAX_LINE`.
    fn metadata(&mut self, entries: &[MetaEntry]) {
        let mut flat: Self = Printer::scratch();
        flat.metadata_entries(entries, ", ");
        // The entries are followed by ` {`.
        if self.column() + flat.out.chars().count() + 2 <= MAX_LINE && !flat.out.contains('\n') {
            self.write(&flat.out);
        } else {
            self.metadata_entries(entries, ",\n");
        }
    }

    fn metadata_entries(&mut self, entries: &[MetaEntry], separator: &str) {
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                match separator.strip_suffix('\n') {
                    Some(sep) => {
                        self.write(sep);
                        self.end_line();
                        self.write("     ");
                    }
                    None => self.write(separator),
                }
            }
            self.metadata_entry(entry);
        }
    }

    fn metadata_entry(&mut self, entry: &MetaEntry) {
        match entry {
            MetaEntry::Pair { key, value, .. } => {
                self.write(&key.name);
                self.write(" = ");
                self.expr(value, 0);
            }
            MetaEntry::Policy { policies, .. } => {
                self.write("policy(");
                self.comma_list(policies, |p, e| p.expr(e, 0));
                self.write(")");
            }
            MetaEntry::Crypto { kind, args, .. } => {
                self.write(kind.as_str());
                self.args(args);
            }
        }
    }

    fn policy(&mut self, policy: &Policy) {
        self.write("policy ");
        self.write(&policy.name.name);
        if !policy.extends.is_empty() {
            self.write(" extends ");
            self.comma_list(&policy.extends, |p, i| p.write(&i.name));
        }
        self.write(" ");
        if policy.rules.is_empty() && self.next_comment_before(policy.span.end).is_none() {
            self.write("{}");
            return;
        }
        self.open();
        self.lines(
            &policy.rules,
            |r| r.span,
            |p, rule| match &rule.kind {
                PolicyRuleKind::Allow(actions) => {
                    p.write("allow: ");
                    p.array(actions);
                    p.write(";");
                }
                PolicyRuleKind::Deny(actions) => {
                    p.write("deny: ");
                    p.array(actions);
                    p.write(";");
                }
                PolicyRuleKind::Require(conditions) => {
                    p.write("require: ");
                    p.list(
                        "[",
                        "]",
                        conditions,
                        Condition::span,
                        |p, c| match c {
                            Condition::Expr(e) => p.expr(e, 0),
                            Condition::Assign { name, value, .. } => {
                                p.write(&name.name);
                                p.write(" = ");
                                p.expr(value, 0);
                            }
                        },
                        MAX_INLINE_LIST,
                    );
                    p.write(";");
                }
                PolicyRuleKind::Conditions(entries) => {
                    p.write("conditions: ");
                    if entries.is_empty() {
                        p.write("{}");
                        return;
                    }
                    p.open();
                    p.lines(
                        entries,
                        |e| e.span,
                        |p, entry| {
                            p.write(&entry.key.name);
                            p.write(": ");
                            if let Some(op) = entry.op {
                                p.write(op.as_str());
                                p.write(" ");
                            }
                            p.expr(&entry.value, 0);
                        },
                        ",",
                    );
                    p.close(rule.span.end);
                }
            },
            "",
        );
        self.close(policy.span.end);
    }

    fn next_comment_before(&self, pos: usize) -> Option<&Comment> {
        self.comments
            .get(self.next_comment)
            .filter(|c| c.span.start < pos)
    }

    // ------------------------------------------------------------- types

    fn ty(&mut self, ty: &Type) {
        match &ty.kind {
            TypeKind::Primitive(p) => self.write(p.as_str()),
            TypeKind::Named(n) => self.write(&n.name),
            TypeKind::Generic { name, args } => {
                self.write(&name.name);
                self.write("<");
                self.comma_list(args, |p, t| p.ty(t));
                self.write(">");
            }
            TypeKind::Function { params, ret } => {
                self.write("(");
                self.comma_list(params, |p, t| p.ty(t));
                self.write(") -> ");
                self.ty(ret);
            }
            TypeKind::Agent(cap) => {
                self.write("agent<");
                self.write(&cap.name);
                self.write(">");
            }
            TypeKind::Record(fields) => self.field_decls(fields, ty.span.end),
            TypeKind::Enum(variants) => {
                self.write("enum ");
                self.variants(variants, ty.span.end);
            }
        }
    }

    // -------------------------------------------------------- statements

    fn block(&mut self, block: &Block) {
        if block.stmts.is_empty() && self.next_comment_before(block.span.end).is_none() {
            self.write("{}");
            return;
        }
        self.open();
        self.lines(&block.stmts, |s| s.span, Self::stmt, "");
        self.close(block.span.end);
    }

    fn stmt(&mut self, stmt: &Stmt) {
        match &stmt.kind {
            StmtKind::Let { name, ty, value } => {
                self.write("let ");
                self.write(&name.name);
                if let Some(ty) = ty {
                    self.write(": ");
                    self.ty(ty);
                }
                self.write(" = ");
                self.expr(value, 0);
                self.write(";");
            }
            StmtKind::Assign { target, value } => {
                self.expr(target, 0);
                self.write(" = ");
                self.expr(value, 0);
                self.write(";");
            }
            StmtKind::Destructure { targets, value } => {
                self.write("(");
                self.comma_list(targets, |p, t| p.write(&t.name));
                self.write(") = ");
                self.expr(value, 0);
                self.write(";");
            }
            StmtKind::Return(value) => {
                self.write("return");
                if let Some(value) = value {
                    self.write(" ");
                    self.expr(value, 0);
                }
                self.write(";");
            }
            StmtKind::If {
                cond,
                then,
                otherwise,
            } => {
                self.write("if (");
                self.expr(cond, 0);
                self.write(") ");
                self.block(then);
                match otherwise.as_deref() {
                    None => {}
                    Some(Else::Block(b)) => {
                        self.write(" else ");
                        self.block(b);
                    }
                    Some(Else::If(s)) => {
                        self.write(" else ");
                        self.stmt(s);
                    }
                }
            }
            StmtKind::While { cond, body } => {
                self.write("while (");
                self.expr(cond, 0);
                self.write(") ");
                self.block(body);
            }
            StmtKind::For {
                var,
                iterable,
                body,
            } => {
                self.write("for ");
                self.write(&var.name);
                self.write(" in ");
                // A struct literal here could read as the loop body.
                let wrap = contains_struct_literal(iterable);
                self.expr(iterable, if wrap { u8::MAX } else { 0 });
                self.write(" ");
                self.block(body);
            }
            StmtKind::Try {
                body,
                error,
                handler,
            } => {
                self.write("try ");
                self.block(body);
                self.write(" catch (");
                self.write(&error.name);
                self.write(") ");
                self.block(handler);
            }
            StmtKind::With { metadata, body } => {
                self.write("with ");
                self.metadata(metadata);
                self.write(" ");
                self.block(body);
            }
            StmtKind::Block(b) => self.block(b),
            StmtKind::Expr(e) => {
                // `{ ... };` at the start of a statement would read as a block.
                self.expr(e, if starts_with_brace(e) { u8::MAX } else { 0 });
                self.write(";");
            }
        }
    }

    // ------------------------------------------------------- expressions

    /// Prints `e`, in parentheses if it binds looser than `min_prec`.
    fn expr(&mut self, e: &Expr, min_prec: u8) {
        let parens = precedence(e) < min_prec;
        if parens {
            self.write("(");
        }
        match &e.kind {
            ExprKind::Ident(name) => self.write(name),
            ExprKind::SelfRef => self.write("self"),
            ExprKind::Int(v) => self.write(&v.to_string()),
            ExprKind::Float(v) => self.write(&format_float(*v)),
            ExprKind::Str(s) => self.write(&quote(s)),
            ExprKind::Bool(b) => self.write(if *b { "true" } else { "false" }),
            ExprKind::Array(items) => self.array(items),
            ExprKind::Object(fields) => self.field_inits(fields, e.span.end),
            ExprKind::Struct { name, fields } => {
                self.write(&name.name);
                self.write(" ");
                self.field_inits(fields, e.span.end);
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let prec = op.precedence();
                self.expr(lhs, prec);
                self.write(" ");
                self.write(op.as_str());
                self.write(" ");
                self.expr(rhs, prec + 1);
            }
            ExprKind::Unary { op, operand } => {
                self.write(op.as_str());
                self.expr(operand, PREC_UNARY);
            }
            ExprKind::Call { callee, args } => {
                self.expr(callee, PREC_POSTFIX);
                self.args(args);
            }
            ExprKind::Member { object, property } => {
                self.expr(object, PREC_POSTFIX);
                self.write(".");
                self.write(&property.name);
            }
            ExprKind::AgentCall {
                agent,
                method,
                args,
            } => {
                self.write("agent ");
                self.write(&agent.name);
                self.write(".");
                self.write(&method.name);
                self.args(args);
            }
            ExprKind::Lambda { params, body } => {
                if let [single] = params.as_slice() {
                    self.write(&single.name);
                } else {
                    self.write("(");
                    self.comma_list(params, |p, i| p.write(&i.name));
                    self.write(")");
                }
                self.write(" => ");
                match body.as_ref() {
                    // `x => { ... }` would read as a block body.
                    LambdaBody::Expr(body) => {
                        self.expr(body, if starts_with_brace(body) { u8::MAX } else { 0 })
                    }
                    LambdaBody::Block(b) => self.block(b),
                }
            }
        }
        if parens {
            self.write(")");
        }
    }

    fn args(&mut self, args: &[Arg]) {
        self.write("(");
        self.comma_list(args, |p, arg| match arg {
            Arg::Positional(e) => p.expr(e, 0),
            Arg::Named { name, value, .. } => {
                p.write(&name.name);
                p.write("=");
                p.expr(value, 0);
            }
        });
        self.write(")");
    }

    fn array(&mut self, items: &[Expr]) {
        self.list(
            "[",
            "]",
            items,
            |e| e.span,
            |p, e| p.expr(e, 0),
            MAX_INLINE_LIST,
        );
    }

    /// A delimited, comma-separated list: on one line if that is at most
    /// `max_inline` characters, else one element per line.
    fn list<T>(
        &mut self,
        open: &str,
        close: &str,
        items: &[T],
        span_of: impl Fn(&T) -> Span,
        print: impl Fn(&mut Self, &T),
        max_inline: usize,
    ) {
        let mut flat: Self = Printer::scratch();
        flat.write(open);
        flat.comma_list(items, |p, item| print(p, item));
        flat.write(close);
        if items.is_empty() || (flat.out.len() <= max_inline && !flat.out.contains('\n')) {
            self.write(&flat.out);
            return;
        }
        self.write(open);
        self.end_line();
        self.indent += 1;
        self.lines(items, span_of, print, ",");
        self.indent -= 1;
        self.write(close);
    }

    fn field_inits(&mut self, fields: &[FieldInit], end: usize) {
        if fields.is_empty() {
            self.write("{}");
            return;
        }
        let print = |p: &mut Self, f: &FieldInit| {
            p.write(&f.name.name);
            p.write(": ");
            p.expr(&f.value, 0);
        };
        let mut flat: Self = Printer::scratch();
        flat.write("{ ");
        flat.comma_list(fields, print);
        flat.write(" }");
        if fields.len() <= 2 && flat.out.len() <= MAX_INLINE_LITERAL && !flat.out.contains('\n') {
            self.write(&flat.out);
            return;
        }
        self.open();
        self.lines(fields, |f| f.span, print, ",");
        self.close(end);
    }
}

const PREC_UNARY: u8 = 6;
const PREC_POSTFIX: u8 = 7;

/// How tightly `e` binds; see `BinaryOp::precedence`. Lambdas bind loosest.
fn precedence(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Lambda { .. } => 0,
        ExprKind::Binary { op, .. } => op.precedence(),
        ExprKind::Unary { .. } => PREC_UNARY,
        _ => PREC_POSTFIX,
    }
}

/// Whether `e` prints starting with `{` (an object literal leftmost).
fn starts_with_brace(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Object(_) => true,
        ExprKind::Binary { lhs: inner, .. }
        | ExprKind::Call { callee: inner, .. }
        | ExprKind::Member { object: inner, .. } => starts_with_brace(inner),
        _ => false,
    }
}

/// Whether a struct literal occurs anywhere in `e` (lambda bodies aside).
fn contains_struct_literal(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Struct { .. } => true,
        ExprKind::Binary { lhs, rhs, .. } => {
            contains_struct_literal(lhs) || contains_struct_literal(rhs)
        }
        ExprKind::Unary { operand: inner, .. } | ExprKind::Member { object: inner, .. } => {
            contains_struct_literal(inner)
        }
        ExprKind::Call { callee, args } => {
            contains_struct_literal(callee)
                || args.iter().any(|a| contains_struct_literal(a.value()))
        }
        ExprKind::Array(items) => items.iter().any(contains_struct_literal),
        ExprKind::Object(fields) => fields.iter().any(|f| contains_struct_literal(&f.value)),
        ExprKind::AgentCall { args, .. } => args.iter().any(|a| contains_struct_literal(a.value())),
        ExprKind::Lambda { body, .. } => match body.as_ref() {
            LambdaBody::Expr(b) => contains_struct_literal(b),
            LambdaBody::Block(_) => true,
        },
        _ => false,
    }
}

/// A float as a Symbiont literal: always with a decimal point, never in
/// exponent notation (`Display` for `f64` gives the shortest digits that
/// read back to the same value).
fn format_float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// A string as a Symbiont literal, with the escapes the lexer decodes.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
