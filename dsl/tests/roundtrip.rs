//! Property: any AST, rendered to source by the formatter, parses back to
//! the same AST (spans aside), and formatting that source changes nothing.

use proptest::prelude::*;
use symbiont_dsl::ast::*;
use symbiont_dsl::{format_program, parse};

const NAMES: &[&str] = &["a", "b", "x", "total", "p_1", "Value", "seniors", "_tmp"];

fn ident() -> impl Strategy<Value = Ident> {
    prop::sample::select(NAMES).prop_map(|n| Ident {
        name: n.to_owned(),
        span: Span::default(),
    })
}

fn idents(max: usize) -> impl Strategy<Value = Vec<Ident>> {
    prop::collection::vec(ident(), 0..=max)
}

fn e(kind: ExprKind) -> Expr {
    Expr {
        kind,
        span: Span::default(),
    }
}

fn literal() -> impl Strategy<Value = Expr> {
    prop_oneof![
        any::<u32>().prop_map(|v| e(ExprKind::Int(i64::from(v)))),
        (0u32..1_000_000, 1u32..64)
            .prop_map(|(n, d)| e(ExprKind::Float(f64::from(n) / f64::from(d)))),
        "[a-z \"\\\\\n\té]{0,8}".prop_map(|s| e(ExprKind::Str(s))),
        any::<bool>().prop_map(|b| e(ExprKind::Bool(b))),
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        3 => ident().prop_map(|i| e(ExprKind::Ident(i.name))),
        1 => Just(e(ExprKind::SelfRef)),
        3 => literal(),
    ]
}

fn field_inits(inner: impl Strategy<Value = Expr>) -> impl Strategy<Value = Vec<FieldInit>> {
    prop::collection::vec(
        (ident(), inner).prop_map(|(name, value)| FieldInit {
            name,
            value,
            span: Span::default(),
        }),
        0..4,
    )
}

fn args(inner: impl Strategy<Value = Expr> + Clone) -> impl Strategy<Value = Vec<Arg>> {
    prop::collection::vec(
        prop_oneof![
            3 => inner.clone().prop_map(Arg::Positional),
            1 => (ident(), inner).prop_map(|(name, value)| Arg::Named {
                name,
                value,
                span: Span::default(),
            }),
        ],
        0..3,
    )
}

fn expr() -> BoxedStrategy<Expr> {
    leaf()
        .prop_recursive(4, 48, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| e(ExprKind::Array(v))),
                field_inits(inner.clone()).prop_map(|f| e(ExprKind::Object(f))),
                (ident(), field_inits(inner.clone()))
                    .prop_map(|(name, fields)| e(ExprKind::Struct { name, fields })),
                (
                    prop::sample::select(BinaryOp::ALL.to_vec()),
                    inner.clone(),
                    inner.clone()
                )
                    .prop_map(|(op, l, r)| e(ExprKind::Binary {
                        op,
                        lhs: Box::new(l),
                        rhs: Box::new(r),
                    })),
                (
                    prop::sample::select(vec![UnaryOp::Not, UnaryOp::Neg, UnaryOp::Plus]),
                    inner.clone()
                )
                    .prop_map(|(op, x)| e(ExprKind::Unary {
                        op,
                        operand: Box::new(x),
                    })),
                (inner.clone(), args(inner.clone())).prop_map(|(c, a)| e(ExprKind::Call {
                    callee: Box::new(c),
                    args: a,
                })),
                (inner.clone(), ident()).prop_map(|(o, p)| e(ExprKind::Member {
                    object: Box::new(o),
                    property: p,
                })),
                (ident(), ident(), args(inner.clone())).prop_map(|(agent, method, args)| e(
                    ExprKind::AgentCall {
                        agent,
                        method,
                        args,
                    }
                )),
                (idents(3), inner.clone()).prop_map(|(params, body)| e(ExprKind::Lambda {
                    params,
                    body: Box::new(LambdaBody::Expr(body)),
                })),
                (idents(2), inner.clone()).prop_map(|(params, body)| e(ExprKind::Lambda {
                    params,
                    body: Box::new(LambdaBody::Block(Block {
                        stmts: vec![Stmt {
                            kind: StmtKind::Return(Some(body)),
                            span: Span::default(),
                        }],
                        span: Span::default(),
                    })),
                })),
            ]
        })
        .boxed()
}

fn ty() -> impl Strategy<Value = Type> {
    let t = |kind| Type {
        kind,
        span: Span::default(),
    };
    let leaf = prop_oneof![
        prop::sample::select(vec![
            Primitive::Int,
            Primitive::Float,
            Primitive::String,
            Primitive::Bool,
            Primitive::Bytes
        ])
        .prop_map(move |p| t(TypeKind::Primitive(p))),
        ident().prop_map(move |i| t(TypeKind::Named(i))),
        ident().prop_map(move |i| t(TypeKind::Agent(i))),
        idents(3).prop_map(move |v| t(TypeKind::Enum(v))),
    ];
    leaf.prop_recursive(3, 16, 3, move |inner| {
        prop_oneof![
            (ident(), prop::collection::vec(inner.clone(), 1..3))
                .prop_map(move |(name, args)| t(TypeKind::Generic { name, args })),
            (prop::collection::vec(inner.clone(), 0..3), inner.clone()).prop_map(
                move |(params, ret)| t(TypeKind::Function {
                    params,
                    ret: Box::new(ret),
                })
            ),
            field_decls(inner).prop_map(move |f| t(TypeKind::Record(f))),
        ]
    })
}

fn field_decls(ty: impl Strategy<Value = Type>) -> impl Strategy<Value = Vec<FieldDecl>> {
    prop::collection::vec(
        (ident(), ty).prop_map(|(name, ty)| FieldDecl {
            name,
            ty,
            span: Span::default(),
        }),
        0..4,
    )
}

fn s(kind: StmtKind) -> Stmt {
    Stmt {
        kind,
        span: Span::default(),
    }
}

fn block_of(stmts: Vec<Stmt>) -> Block {
    Block {
        stmts,
        span: Span::default(),
    }
}

fn meta_entries() -> impl Strategy<Value = Vec<MetaEntry>> {
    let literal_value = prop_oneof![
        3 => literal(),
        1 => prop::collection::vec(expr(), 0..3).prop_map(|v| e(ExprKind::Array(v))),
        1 => field_inits(expr()).prop_map(|f| e(ExprKind::Object(f))),
    ];
    prop::collection::vec(
        prop_oneof![
            (ident(), literal_value).prop_map(|(key, value)| MetaEntry::Pair {
                key,
                value,
                span: Span::default(),
            }),
            prop::collection::vec(expr(), 1..3).prop_map(|policies| MetaEntry::Policy {
                policies,
                span: Span::default(),
            }),
            (
                prop::sample::select(vec![
                    CryptoKind::Encrypt,
                    CryptoKind::Sign,
                    CryptoKind::Prove
                ]),
                args(expr())
            )
                .prop_map(|(kind, args)| MetaEntry::Crypto {
                    kind,
                    args,
                    span: Span::default(),
                }),
        ],
        0..3,
    )
}

fn stmt() -> impl Strategy<Value = Stmt> {
    let simple =
        prop_oneof![
            (ident(), prop::option::of(ty()), expr())
                .prop_map(|(name, ty, value)| s(StmtKind::Let { name, ty, value })),
            (
                prop_oneof![
                    ident().prop_map(|i| e(ExprKind::Ident(i.name))),
                    (leaf(), ident()).prop_map(|(o, p)| e(ExprKind::Member {
                        object: Box::new(o),
                        property: p,
                    })),
                ],
                expr()
            )
                .prop_map(|(target, value)| s(StmtKind::Assign { target, value })),
            (prop::collection::vec(ident(), 1..3), expr())
                .prop_map(|(targets, value)| s(StmtKind::Destructure { targets, value })),
            prop::option::of(expr()).prop_map(|v| s(StmtKind::Return(v))),
            expr().prop_map(|x| s(StmtKind::Expr(x))),
        ];
    simple.prop_recursive(3, 24, 4, |inner| {
        let block = prop::collection::vec(inner.clone(), 0..3).prop_map(block_of);
        prop_oneof![
            (expr(), block.clone(), prop::option::of(block.clone())).prop_map(
                |(cond, then, otherwise)| s(StmtKind::If {
                    cond,
                    then,
                    otherwise: otherwise.map(|b| Box::new(Else::Block(b))),
                })
            ),
            (expr(), block.clone(), expr(), block.clone()).prop_map(|(c1, b1, c2, b2)| s(
                StmtKind::If {
                    cond: c1,
                    then: b1,
                    otherwise: Some(Box::new(Else::If(Box::new(s(StmtKind::If {
                        cond: c2,
                        then: b2,
                        otherwise: None,
                    }))))),
                }
            )),
            (expr(), block.clone()).prop_map(|(cond, body)| s(StmtKind::While { cond, body })),
            (ident(), expr(), block.clone()).prop_map(|(var, iterable, body)| s(StmtKind::For {
                var,
                iterable,
                body
            })),
            (block.clone(), ident(), block.clone()).prop_map(|(body, error, handler)| s(
                StmtKind::Try {
                    body,
                    error,
                    handler,
                }
            )),
            (
                meta_entries().prop_filter("non-empty", |m| !m.is_empty()),
                block.clone()
            )
                .prop_map(|(metadata, body)| s(StmtKind::With { metadata, body })),
            block.prop_map(|b| s(StmtKind::Block(b))),
        ]
    })
}

fn item() -> impl Strategy<Value = Item> {
    let annotation =
        (ident(), prop::option::of(args(expr()))).prop_map(|(name, args)| Annotation {
            name,
            args,
            span: Span::default(),
        });
    let param = (ident(), ty(), prop::option::of(expr())).prop_map(|(name, ty, default)| Param {
        name,
        ty,
        default,
        span: Span::default(),
    });
    let signature = prop::option::of((prop::collection::vec(param, 0..3), prop::option::of(ty())));
    let agent = (
        prop::collection::vec(annotation, 0..3),
        ident(),
        signature,
        meta_entries(),
        prop::collection::vec(stmt(), 0..4),
    )
        .prop_map(|(annotations, name, signature, metadata, stmts)| {
            let (params, return_type) = match signature {
                Some((p, r)) => (Some(p), r),
                None => (None, None),
            };
            Item::Agent(Agent {
                annotations,
                name,
                params,
                return_type,
                metadata,
                body: block_of(stmts),
                span: Span::default(),
            })
        });
    let condition = prop_oneof![
        expr().prop_map(Condition::Expr),
        (ident(), expr()).prop_map(|(name, value)| Condition::Assign {
            name,
            value,
            span: Span::default(),
        }),
    ];
    let entry = (
        ident(),
        prop::option::of(prop::sample::select(vec![
            BinaryOp::Eq,
            BinaryOp::Ne,
            BinaryOp::Lt,
            BinaryOp::Gt,
            BinaryOp::Le,
            BinaryOp::Ge,
        ])),
        expr(),
    )
        .prop_map(|(key, op, value)| ConditionEntry {
            key,
            op,
            value,
            span: Span::default(),
        });
    let rule = prop_oneof![
        prop::collection::vec(expr(), 0..3).prop_map(PolicyRuleKind::Allow),
        prop::collection::vec(expr(), 0..3).prop_map(PolicyRuleKind::Deny),
        prop::collection::vec(condition, 0..3).prop_map(PolicyRuleKind::Require),
        prop::collection::vec(entry, 0..3).prop_map(PolicyRuleKind::Conditions),
    ]
    .prop_map(|kind| PolicyRule {
        kind,
        span: Span::default(),
    });
    let policy = (ident(), idents(2), prop::collection::vec(rule, 0..4)).prop_map(
        |(name, extends, rules)| {
            Item::Policy(Policy {
                name,
                extends,
                rules,
                span: Span::default(),
            })
        },
    );
    let type_annotation = (ident(), args(expr())).prop_map(|(name, args)| TypeAnnotation {
        name,
        args,
        span: Span::default(),
    });
    let alias = (
        ident(),
        idents(2),
        ty(),
        prop::collection::vec(type_annotation, 0..2),
    )
        .prop_map(|(name, params, ty, annotations)| {
            Item::TypeAlias(TypeAlias {
                name,
                params,
                ty,
                annotations,
                span: Span::default(),
            })
        });
    let structure = (ident(), idents(2), field_decls(ty())).prop_map(|(name, params, fields)| {
        Item::Struct(StructDef {
            name,
            params,
            fields,
            span: Span::default(),
        })
    });
    let enumeration = (ident(), idents(4)).prop_map(|(name, variants)| {
        Item::Enum(EnumDef {
            name,
            variants,
            span: Span::default(),
        })
    });
    let import = (
        prop::collection::vec(ident(), 1..4),
        prop::option::of(ident()),
    )
        .prop_map(|(path, alias)| {
            Item::Import(Import {
                path,
                alias,
                span: Span::default(),
            })
        });
    prop_oneof![
        4 => agent,
        2 => policy,
        1 => alias,
        1 => structure,
        1 => enumeration,
        1 => import,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn formatted_asts_parse_back_to_themselves(items in prop::collection::vec(item(), 0..4)) {
        let program = Program { items, comments: Vec::new() };
        let source = format_program(&program, None);
        let (reparsed, diagnostics) = parse(&source);
        prop_assert!(diagnostics.is_empty(), "{diagnostics:?}\n{source}");
        let reparsed = reparsed.unwrap();
        prop_assert_eq!(reparsed.shape(), program.shape(), "\n{}", source);
        prop_assert_eq!(format_program(&reparsed, Some(&source)), source);
    }
}
