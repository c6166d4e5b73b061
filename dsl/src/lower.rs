//! From bytes to the typed AST: size and encoding checks, the tree-sitter
//! parse, syntax diagnostics, and the conversion of the concrete syntax tree.
//!
//! The conversion only runs on a tree without errors whose nesting is
//! bounded by [`MAX_NESTING`], so it can rely on the grammar's shape and its
//! recursion cannot overflow the stack.

use tree_sitter::{Node, TreeCursor};

use crate::ast::*;
use crate::diagnostic::{Code, Diagnostic};
use crate::syntax::parse_cst;

/// The largest source file accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 8 * 1024 * 1024;

/// The deepest nesting of syntax nodes accepted (each parenthesis, call,
/// operator, block or type argument is one level).
pub const MAX_NESTING: usize = 256;

/// At most this many syntax errors are reported per file.
const MAX_SYNTAX_ERRORS: usize = 25;

/// The result of parsing one file.
#[derive(Debug)]
pub struct Parsed {
    /// The text that was parsed (invalid UTF-8 replaced by U+FFFD).
    pub text: String,
    /// The program, when the file parsed without errors.
    pub program: Option<Program>,
    /// Every problem found.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses a file's raw bytes.
pub fn parse_bytes(bytes: &[u8]) -> Parsed {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let (program, diagnostics) = parse(text);
            Parsed {
                text: text.to_owned(),
                program,
                diagnostics,
            }
        }
        Err(e) => {
            let at = e.valid_up_to();
            let len = e.error_len().unwrap_or(1).max(1);
            let text = String::from_utf8_lossy(bytes).into_owned();
            // The lossy text equals the input up to `at`, where it holds a
            // three-byte U+FFFD.
            let diagnostic = Diagnostic::error(
                Code::E0003,
                Span::new(at, at + 3),
                format!("the file is not valid UTF-8: {len} invalid byte(s) at byte offset {at}"),
            )
            .with_note("Symbiont programs are UTF-8 text; re-save the file as UTF-8");
            Parsed {
                text,
                program: None,
                diagnostics: vec![diagnostic],
            }
        }
    }
}

/// Parses program text into the AST, or the reasons it cannot be.
pub fn parse(text: &str) -> (Option<Program>, Vec<Diagnostic>) {
    if text.len() > MAX_SOURCE_BYTES {
        let d = Diagnostic::error(
            Code::E0005,
            Span::new(0, 0),
            format!(
                "the file is {} bytes; programs may be at most {MAX_SOURCE_BYTES} bytes",
                text.len()
            ),
        )
        .with_note("split the program, or keep data in datasets rather than in source");
        return (None, vec![d]);
    }
    let tree = parse_cst(text);
    let root = tree.root_node();
    let mut diagnostics = syntax_errors(root, text);
    if diagnostics.is_empty()
        && let Some(d) = too_deep(root)
    {
        diagnostics.push(d);
    }
    if !diagnostics.is_empty() {
        return (None, diagnostics);
    }
    let mut lowerer = Lowerer {
        src: text,
        diagnostics: Vec::new(),
        comments: Vec::new(),
    };
    let items = lowerer.children(root).map(|n| lowerer.item(n)).collect();
    collect_comments(root, text, &mut lowerer.comments);
    if !lowerer.diagnostics.is_empty() {
        return (None, lowerer.diagnostics);
    }
    let program = Program {
        items,
        comments: lowerer.comments,
    };
    (Some(program), Vec::new())
}

fn span(node: Node<'_>) -> Span {
    Span::new(node.start_byte(), node.end_byte())
}

/// Visits every node in document order without recursion. `visit` returns
/// whether to descend into the node's children.
fn walk(root: Node<'_>, mut visit: impl FnMut(Node<'_>, usize) -> bool) {
    let mut cursor: TreeCursor<'_> = root.walk();
    let mut depth = 0usize;
    loop {
        let descend = visit(cursor.node(), depth);
        if descend && cursor.goto_first_child() {
            depth += 1;
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
            depth -= 1;
        }
    }
}

/// One diagnostic per error or missing node, outermost first.
fn syntax_errors(root: Node<'_>, text: &str) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    if !root.has_error() {
        return diagnostics;
    }
    let mut suppressed = 0usize;
    walk(root, |node, _| {
        if !node.has_error() {
            return false;
        }
        let diagnostic = if node.is_error() {
            Some(unexpected(node, text))
        } else if node.is_missing() {
            let what = node.kind();
            Some(
                Diagnostic::error(
                    Code::E0002,
                    Span::new(node.start_byte(), node.start_byte()),
                    format!("expected `{what}`"),
                )
                .with_label(format!("`{what}` is missing here")),
            )
        } else {
            None
        };
        match diagnostic {
            Some(d) if diagnostics.len() < MAX_SYNTAX_ERRORS => diagnostics.push(d),
            Some(_) => suppressed += 1,
            None => {}
        }
        // Inside an error node, everything is part of that one error.
        !node.is_error()
    });
    if suppressed > 0
        && let Some(last) = diagnostics.last_mut()
    {
        last.notes
            .push(format!("{suppressed} further syntax error(s) not shown"));
    }
    diagnostics
}

fn unexpected(node: Node<'_>, text: &str) -> Diagnostic {
    // Point at the first token of the unexpected input.
    let mut first = node;
    while let Some(child) = first.child(0) {
        first = child;
    }
    let start = first.start_byte();
    let token = text.get(first.byte_range()).unwrap_or("");
    let shown: String = token.chars().take(24).collect();
    let message = if token.is_empty() {
        "unexpected end of input".to_owned()
    } else if shown.chars().all(|c| c.is_ascii_graphic()) {
        format!("unexpected `{shown}`")
    } else {
        format!("unexpected input {shown:?}")
    };
    Diagnostic::error(
        Code::E0001,
        Span::new(start, first.end_byte().max(start)),
        message,
    )
    .with_label("the grammar does not allow this here")
    .with_secondary(span(node), "in this part of the program")
}

fn too_deep(root: Node<'_>) -> Option<Diagnostic> {
    let mut found = None;
    walk(root, |node, depth| {
        if found.is_some() {
            return false;
        }
        if depth > MAX_NESTING {
            found = Some(
                Diagnostic::error(
                    Code::E0004,
                    Span::new(node.start_byte(), node.start_byte()),
                    format!("the program nests deeper than {MAX_NESTING} levels here"),
                )
                .with_note("split the expression with `let` bindings"),
            );
            return false;
        }
        true
    });
    found
}

fn collect_comments(root: Node<'_>, text: &str, out: &mut Vec<Comment>) {
    walk(root, |node, _| {
        if matches!(node.kind(), "line_comment" | "block_comment") {
            out.push(Comment {
                text: text[node.byte_range()].trim_end().to_owned(),
                span: span(node),
            });
            return false;
        }
        true
    });
}

/// Converts an error-free concrete syntax tree into the AST.
struct Lowerer<'s> {
    src: &'s str,
    diagnostics: Vec<Diagnostic>,
    comments: Vec<Comment>,
}

impl<'s> Lowerer<'s> {
    fn text(&self, node: Node<'_>) -> &'s str {
        &self.src[node.byte_range()]
    }

    /// Named children that are not comments.
    fn children<'t>(&self, node: Node<'t>) -> impl Iterator<Item = Node<'t>> + use<'t> {
        let mut cursor = node.walk();
        let children: Vec<_> = node
            .named_children(&mut cursor)
            .filter(|c| !c.is_extra())
            .collect();
        children.into_iter()
    }

    fn field<'t>(&self, node: Node<'t>, name: &str) -> Node<'t> {
        node.child_by_field_name(name)
            .unwrap_or_else(|| panic!("grammar invariant: `{}` has a `{name}` child", node.kind()))
    }

    fn fields<'t>(&self, node: Node<'t>, name: &str) -> Vec<Node<'t>> {
        let mut cursor = node.walk();
        node.children_by_field_name(name, &mut cursor).collect()
    }

    fn ident(&self, node: Node<'_>) -> Ident {
        Ident {
            name: self.text(node).to_owned(),
            span: span(node),
        }
    }

    /// A condition's key: a name, or a namespaced `principal.role` (its
    /// parts joined by dots, whatever the spacing).
    fn attribute(&self, node: Node<'_>) -> Ident {
        if node.kind() != "attribute_path" {
            return self.ident(node);
        }
        let parts: Vec<&str> = self.children(node).map(|n| self.text(n)).collect();
        Ident {
            name: parts.join("."),
            span: span(node),
        }
    }

    fn item(&mut self, node: Node<'_>) -> Item {
        match node.kind() {
            "import_declaration" => Item::Import(Import {
                path: self
                    .children(self.field(node, "path"))
                    .map(|n| self.ident(n))
                    .collect(),
                alias: node.child_by_field_name("alias").map(|n| self.ident(n)),
                span: span(node),
            }),
            "agent_definition" => Item::Agent(self.agent(node)),
            "policy_definition" => Item::Policy(self.policy(node)),
            "type_definition" => Item::TypeAlias(TypeAlias {
                name: self.ident(self.field(node, "name")),
                params: self.type_params(node),
                ty: self.ty(self.field(node, "type")),
                annotations: self
                    .fields(node, "annotation")
                    .into_iter()
                    .map(|n| TypeAnnotation {
                        name: self.ident(self.field(n, "name")),
                        args: self.args(self.field(n, "arguments")),
                        span: span(n),
                    })
                    .collect(),
                span: span(node),
            }),
            "struct_definition" => Item::Struct(StructDef {
                name: self.ident(self.field(node, "name")),
                params: self.type_params(node),
                fields: self.field_decls(self.field(node, "body")),
                span: span(node),
            }),
            "enum_definition" => Item::Enum(EnumDef {
                name: self.ident(self.field(node, "name")),
                variants: self.variants(self.field(node, "body")),
                span: span(node),
            }),
            other => unreachable!("grammar invariant: `{other}` is not an item"),
        }
    }

    fn agent(&mut self, node: Node<'_>) -> Agent {
        let annotations = self
            .fields(node, "annotation")
            .into_iter()
            .map(|n| Annotation {
                name: self.ident(self.field(n, "name")),
                args: n.child_by_field_name("arguments").map(|a| self.args(a)),
                span: span(n),
            })
            .collect();
        let params = node.child_by_field_name("parameters").map(|p| {
            self.children(p)
                .map(|param| Param {
                    name: self.ident(self.field(param, "name")),
                    ty: self.ty(self.field(param, "type")),
                    default: param.child_by_field_name("default").map(|d| self.expr(d)),
                    span: span(param),
                })
                .collect()
        });
        Agent {
            annotations,
            name: self.ident(self.field(node, "name")),
            params,
            return_type: node.child_by_field_name("return_type").map(|t| self.ty(t)),
            metadata: node
                .child_by_field_name("metadata")
                .map(|m| self.metadata(m))
                .unwrap_or_default(),
            body: self.block(self.field(node, "body")),
            span: span(node),
        }
    }

    fn metadata(&mut self, node: Node<'_>) -> Vec<MetaEntry> {
        self.children(node)
            .map(|entry| match entry.kind() {
                "metadata_pair" => MetaEntry::Pair {
                    key: self.ident(self.field(entry, "key")),
                    value: self.expr(self.field(entry, "value")),
                    span: span(entry),
                },
                "policy_reference" => MetaEntry::Policy {
                    policies: self
                        .fields(entry, "policy")
                        .into_iter()
                        .map(|p| self.expr(p))
                        .collect(),
                    span: span(entry),
                },
                "crypto_directive" => MetaEntry::Crypto {
                    kind: match self.text(self.field(entry, "kind")) {
                        "encrypt" => CryptoKind::Encrypt,
                        "sign" => CryptoKind::Sign,
                        _ => CryptoKind::Prove,
                    },
                    args: self.args(self.field(entry, "arguments")),
                    span: span(entry),
                },
                other => unreachable!("grammar invariant: `{other}` is not metadata"),
            })
            .collect()
    }

    fn policy(&mut self, node: Node<'_>) -> Policy {
        let rules = self
            .fields(node, "rule")
            .into_iter()
            .map(|rule| {
                let kind = match rule.kind() {
                    "allow_rule" => PolicyRuleKind::Allow(self.array(self.field(rule, "actions"))),
                    "deny_rule" => PolicyRuleKind::Deny(self.array(self.field(rule, "actions"))),
                    "require_rule" => PolicyRuleKind::Require(
                        self.fields(rule, "condition")
                            .into_iter()
                            .map(|c| {
                                if c.kind() == "condition_assignment" {
                                    Condition::Assign {
                                        name: self.ident(self.field(c, "name")),
                                        value: self.expr(self.field(c, "value")),
                                        span: span(c),
                                    }
                                } else {
                                    Condition::Expr(self.expr(c))
                                }
                            })
                            .collect(),
                    ),
                    "conditions_rule" => PolicyRuleKind::Conditions(
                        self.fields(rule, "condition")
                            .into_iter()
                            .map(|c| ConditionEntry {
                                key: self.attribute(self.field(c, "key")),
                                op: c
                                    .child_by_field_name("operator")
                                    .and_then(|o| BinaryOp::from_token(self.text(o))),
                                value: self.expr(self.field(c, "value")),
                                span: span(c),
                            })
                            .collect(),
                    ),
                    other => unreachable!("grammar invariant: `{other}` is not a policy rule"),
                };
                PolicyRule {
                    kind,
                    span: span(rule),
                }
            })
            .collect();
        Policy {
            name: self.ident(self.field(node, "name")),
            extends: self
                .fields(node, "parent")
                .into_iter()
                .map(|p| self.ident(p))
                .collect(),
            rules,
            span: span(node),
        }
    }

    fn array(&mut self, node: Node<'_>) -> Vec<Expr> {
        self.children(node).map(|e| self.expr(e)).collect()
    }

    fn type_params(&self, node: Node<'_>) -> Vec<Ident> {
        node.child_by_field_name("type_parameters")
            .map(|p| self.children(p).map(|n| self.ident(n)).collect())
            .unwrap_or_default()
    }

    fn field_decls(&mut self, node: Node<'_>) -> Vec<FieldDecl> {
        self.children(node)
            .map(|f| FieldDecl {
                name: self.ident(self.field(f, "name")),
                ty: self.ty(self.field(f, "type")),
                span: span(f),
            })
            .collect()
    }

    fn variants(&self, node: Node<'_>) -> Vec<Ident> {
        self.children(node)
            .map(|v| self.ident(self.field(v, "name")))
            .collect()
    }

    fn ty(&mut self, node: Node<'_>) -> Type {
        let kind = match node.kind() {
            "primitive_type" => TypeKind::Primitive(match self.text(node) {
                "int" => Primitive::Int,
                "float" => Primitive::Float,
                "string" => Primitive::String,
                "bool" => Primitive::Bool,
                _ => Primitive::Bytes,
            }),
            "type_identifier" => TypeKind::Named(self.ident(node)),
            "generic_type" => TypeKind::Generic {
                name: self.ident(self.field(node, "name")),
                args: self
                    .children(self.field(node, "arguments"))
                    .map(|t| self.ty(t))
                    .collect(),
            },
            "function_type" => TypeKind::Function {
                params: self
                    .children(self.field(node, "parameters"))
                    .map(|t| self.ty(t))
                    .collect(),
                ret: Box::new(self.ty(self.field(node, "return_type"))),
            },
            "agent_type" => TypeKind::Agent(self.ident(self.field(node, "capability"))),
            "record_type" => TypeKind::Record(self.field_decls(self.field(node, "body"))),
            "enum_type" => TypeKind::Enum(self.variants(self.field(node, "body"))),
            other => unreachable!("grammar invariant: `{other}` is not a type"),
        };
        Type {
            kind,
            span: span(node),
        }
    }

    fn block(&mut self, node: Node<'_>) -> Block {
        Block {
            stmts: self.children(node).map(|s| self.stmt(s)).collect(),
            span: span(node),
        }
    }

    fn stmt(&mut self, node: Node<'_>) -> Stmt {
        let kind = match node.kind() {
            "let_statement" => StmtKind::Let {
                name: self.ident(self.field(node, "name")),
                ty: node.child_by_field_name("type").map(|t| self.ty(t)),
                value: self.expr(self.field(node, "value")),
            },
            "assignment" => StmtKind::Assign {
                target: self.expr(self.field(node, "target")),
                value: self.expr(self.field(node, "value")),
            },
            "destructuring_assignment" => StmtKind::Destructure {
                targets: self
                    .fields(node, "target")
                    .into_iter()
                    .map(|t| self.ident(t))
                    .collect(),
                value: self.expr(self.field(node, "value")),
            },
            "return_statement" => {
                StmtKind::Return(node.child_by_field_name("value").map(|v| self.expr(v)))
            }
            "if_statement" => StmtKind::If {
                cond: self.expr(self.field(node, "condition")),
                then: self.block(self.field(node, "consequence")),
                otherwise: node.child_by_field_name("alternative").map(|alt| {
                    Box::new(if alt.kind() == "block" {
                        Else::Block(self.block(alt))
                    } else {
                        Else::If(Box::new(self.stmt(alt)))
                    })
                }),
            },
            "while_statement" => StmtKind::While {
                cond: self.expr(self.field(node, "condition")),
                body: self.block(self.field(node, "body")),
            },
            "for_statement" => StmtKind::For {
                var: self.ident(self.field(node, "variable")),
                iterable: self.expr(self.field(node, "iterable")),
                body: self.block(self.field(node, "body")),
            },
            "try_statement" => StmtKind::Try {
                body: self.block(self.field(node, "body")),
                error: self.ident(self.field(node, "error")),
                handler: self.block(self.field(node, "handler")),
            },
            "with_statement" => StmtKind::With {
                metadata: self.metadata(self.field(node, "metadata")),
                body: self.block(self.field(node, "body")),
            },
            "block" => StmtKind::Block(self.block(node)),
            "expression_statement" => {
                let inner = self
                    .children(node)
                    .next()
                    .expect("grammar invariant: an expression statement holds an expression");
                StmtKind::Expr(self.expr(inner))
            }
            other => unreachable!("grammar invariant: `{other}` is not a statement"),
        };
        Stmt {
            kind,
            span: span(node),
        }
    }

    fn args(&mut self, node: Node<'_>) -> Vec<Arg> {
        self.children(node)
            .map(|a| {
                if a.kind() == "named_argument" {
                    Arg::Named {
                        name: self.ident(self.field(a, "name")),
                        value: self.expr(self.field(a, "value")),
                        span: span(a),
                    }
                } else {
                    Arg::Positional(self.expr(a))
                }
            })
            .collect()
    }

    fn field_inits(&mut self, node: Node<'_>) -> Vec<FieldInit> {
        self.children(node)
            .filter(|f| f.kind() == "field_initializer")
            .map(|f| FieldInit {
                name: self.ident(self.field(f, "name")),
                value: self.expr(self.field(f, "value")),
                span: span(f),
            })
            .collect()
    }

    fn expr(&mut self, node: Node<'_>) -> Expr {
        let kind = match node.kind() {
            "identifier" => ExprKind::Ident(self.text(node).to_owned()),
            "self" => ExprKind::SelfRef,
            "number" => self.number(node),
            "string" => ExprKind::Str(self.string(node)),
            "boolean" => ExprKind::Bool(self.text(node) == "true"),
            "array" => ExprKind::Array(self.array(node)),
            "object" => ExprKind::Object(self.field_inits(node)),
            "struct_expression" => ExprKind::Struct {
                name: self.ident(self.field(node, "name")),
                fields: self.field_inits(node),
            },
            "binary_expression" => ExprKind::Binary {
                op: BinaryOp::from_token(self.text(self.field(node, "operator")))
                    .expect("grammar invariant: binary operators are the thirteen of BinaryOp"),
                lhs: Box::new(self.expr(self.field(node, "left"))),
                rhs: Box::new(self.expr(self.field(node, "right"))),
            },
            "unary_expression" => ExprKind::Unary {
                op: match self.text(self.field(node, "operator")) {
                    "!" => UnaryOp::Not,
                    "-" => UnaryOp::Neg,
                    _ => UnaryOp::Plus,
                },
                operand: Box::new(self.expr(self.field(node, "operand"))),
            },
            "call_expression" => ExprKind::Call {
                callee: Box::new(self.expr(self.field(node, "function"))),
                args: self.args(self.field(node, "arguments")),
            },
            "member_expression" => ExprKind::Member {
                object: Box::new(self.expr(self.field(node, "object"))),
                property: self.ident(self.field(node, "property")),
            },
            "agent_call" => ExprKind::AgentCall {
                agent: self.ident(self.field(node, "agent")),
                method: self.ident(self.field(node, "method")),
                args: self.args(self.field(node, "arguments")),
            },
            "lambda_expression" => {
                let params = self.field(node, "parameters");
                let params = if params.kind() == "identifier" {
                    vec![self.ident(params)]
                } else {
                    self.children(params).map(|p| self.ident(p)).collect()
                };
                let body = self.field(node, "body");
                let body = if body.kind() == "block" {
                    LambdaBody::Block(self.block(body))
                } else {
                    LambdaBody::Expr(self.expr(body))
                };
                ExprKind::Lambda {
                    params,
                    body: Box::new(body),
                }
            }
            "parenthesized_expression" => {
                let inner = self
                    .children(node)
                    .next()
                    .expect("grammar invariant: parentheses hold an expression");
                // Parentheses only group; the AST keeps the grouping in its
                // shape and the outer span.
                let mut e = self.expr(inner);
                e.span = span(node);
                return e;
            }
            other => unreachable!("grammar invariant: `{other}` is not an expression"),
        };
        Expr {
            kind,
            span: span(node),
        }
    }

    fn number(&mut self, node: Node<'_>) -> ExprKind {
        let text = self.text(node);
        if text.contains('.') {
            // `\d+\.\d+` always parses as f64 (possibly to infinity).
            let value: f64 = text.parse().unwrap_or(f64::INFINITY);
            if value.is_finite() {
                return ExprKind::Float(value);
            }
            self.diagnostics.push(
                Diagnostic::error(
                    Code::E0006,
                    span(node),
                    "this number is too large for a float",
                )
                .with_label("exceeds 1.8e308"),
            );
            return ExprKind::Float(0.0);
        }
        match text.parse::<i64>() {
            Ok(v) => ExprKind::Int(v),
            Err(_) => {
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::E0006,
                        span(node),
                        "this integer does not fit in 64 bits",
                    )
                    .with_label(format!("the largest int is {}", i64::MAX)),
                );
                ExprKind::Int(0)
            }
        }
    }

    /// Decodes a string literal's escapes: `\"`, `\\`, `\n`, `\t`, `\r`, `\0`.
    fn string(&mut self, node: Node<'_>) -> String {
        let text = self.text(node);
        let inner = &text[1..text.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let (_, escaped) = chars
                .next()
                .expect("grammar invariant: a backslash in a string is followed by a character");
            match escaped {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                other => {
                    let at = node.start_byte() + 1 + i;
                    self.diagnostics.push(
                        Diagnostic::error(
                            Code::E0006,
                            Span::new(at, at + 1 + other.len_utf8()),
                            format!("unknown escape `\\{other}` in a string"),
                        )
                        .with_note("the escapes are \\\" \\\\ \\n \\t \\r \\0"),
                    );
                }
            }
        }
        out
    }
}
