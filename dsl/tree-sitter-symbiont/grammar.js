/**
 * Tree-sitter grammar for the Symbiont DSL.
 *
 * Follows the EBNF v2 grammar of the specification (§6.1) and the programs
 * printed in §3.3.1 and §6.2–§6.3, which go beyond it (let, lambdas, struct
 * literals, method calls, named arguments, `with` blocks in agent bodies,
 * policy condition objects). `docs/LANGUAGE.md` is the reference.
 *
 * Regenerate `src/` with `tree-sitter generate` after editing this file;
 * the generated parser is committed so that builds need no generator.
 */

/// Operator precedence, loosest first. `||` binds looser than `&&` (the
/// EBNF puts them on one level; every C-family reader expects this order),
/// all six comparisons share one left-associative level as in the EBNF.
const PREC = {
  lambda: -1,
  or: 1,
  and: 2,
  compare: 3,
  additive: 4,
  multiplicative: 5,
  unary: 6,
  postfix: 7,
};

const COMPARISON_OPERATORS = ['==', '!=', '<', '>', '<=', '>='];

/// One or more `rule`s separated by `separator`.
function sep1(rule, separator) {
  return seq(rule, repeat(seq(separator, rule)));
}

/// Zero or more comma-separated `rule`s, with an optional trailing comma.
function commaSep(rule) {
  return optional(seq(sep1(rule, ','), optional(',')));
}

/// One or more comma-separated `rule`s, with an optional trailing comma.
function commaSep1(rule) {
  return seq(sep1(rule, ','), optional(','));
}

module.exports = grammar({
  name: 'symbiont',

  extras: $ => [/\s/, $.line_comment, $.block_comment],

  word: $ => $.identifier,

  supertypes: $ => [$._item, $._statement, $._expression, $._type],

  conflicts: $ => [
    // `(a, b)` opening a statement is a destructuring assignment when `=`
    // follows and a lambda's parameter list when `=>` follows; `(a)` may
    // also be a parenthesized expression.
    [$.destructuring_assignment, $.lambda_parameters],
    [$.destructuring_assignment, $._expression, $.lambda_parameters],
    // `(a)` is a parenthesized expression or a one-parameter lambda list;
    // `=>` after the `)` decides.
    [$._expression, $.lambda_parameters],
    // `for x in items { ... }`: `items {` may open a struct literal or the
    // loop body. Both are tried; the struct literal loses ties (see
    // `struct_expression`).
    [$._expression, $.struct_expression],
    // `{ }` as a statement is an empty block or an empty object literal;
    // the block wins (see `object`).
    [$.block, $.object],
  ],

  rules: {
    source_file: $ => repeat($._item),

    _item: $ => choice(
      $.import_declaration,
      $.agent_definition,
      $.policy_definition,
      $.type_definition,
      $.struct_definition,
      $.enum_definition,
    ),

    // ---------------------------------------------------------------- imports

    import_declaration: $ => seq(
      'import',
      field('path', $.module_path),
      optional(seq('as', field('alias', $.identifier))),
      ';',
    ),

    module_path: $ => sep1($.identifier, choice('.', '::')),

    // ----------------------------------------------------------------- agents

    agent_definition: $ => seq(
      repeat(field('annotation', $.annotation)),
      'agent',
      field('name', $.identifier),
      optional(seq(
        field('parameters', $.parameters),
        optional(seq('->', field('return_type', $._type))),
      )),
      optional(field('metadata', $.metadata)),
      field('body', $.block),
    ),

    annotation: $ => seq(
      '@',
      field('name', $.identifier),
      optional(field('arguments', $.arguments)),
    ),

    parameters: $ => seq('(', commaSep($.parameter), ')'),

    parameter: $ => seq(
      field('name', $.identifier),
      ':',
      field('type', $._type),
      optional(seq('=', field('default', $._expression))),
    ),

    metadata: $ => seq('with', sep1($._metadata_entry, ',')),

    _metadata_entry: $ => choice(
      $.metadata_pair,
      $.policy_reference,
      $.crypto_directive,
    ),

    metadata_pair: $ => seq(
      field('key', $.identifier),
      '=',
      field('value', $._literal),
    ),

    policy_reference: $ => seq(
      'policy',
      '(',
      sep1(field('policy', $._expression), ','),
      ')',
    ),

    crypto_directive: $ => seq(
      field('kind', choice('encrypt', 'sign', 'prove')),
      field('arguments', $.arguments),
    ),

    // --------------------------------------------------------------- policies

    policy_definition: $ => seq(
      'policy',
      field('name', $.identifier),
      optional(seq('extends', sep1(field('parent', $.identifier), ','))),
      '{',
      repeat(field('rule', $._policy_rule)),
      '}',
    ),

    _policy_rule: $ => choice(
      $.allow_rule,
      $.deny_rule,
      $.require_rule,
      $.conditions_rule,
    ),

    allow_rule: $ => seq('allow', ':', field('actions', $.array), optional(';')),

    deny_rule: $ => seq('deny', ':', field('actions', $.array), optional(';')),

    require_rule: $ => seq(
      'require',
      ':',
      '[',
      commaSep(field('condition', choice($._expression, $.condition_assignment))),
      ']',
      optional(';'),
    ),

    /// `audit_trail = true` inside `require: [...]` (spec §6.3.2): an
    /// equality requirement written with `=`.
    condition_assignment: $ => seq(
      field('name', $.identifier),
      '=',
      field('value', $._expression),
    ),

    conditions_rule: $ => seq(
      'conditions',
      ':',
      '{',
      commaSep(field('condition', $.condition_entry)),
      '}',
      optional(';'),
    ),

    /// A namespaced attribute in a condition: `principal.role`,
    /// `resource.retention_period`, `record.class`.
    attribute_path: $ => seq($.identifier, repeat1(seq('.', $.identifier))),

    /// `key: value` or `key: >= value` inside `conditions: {...}`.
    condition_entry: $ => seq(
      field('key', choice($.identifier, $.attribute_path)),
      ':',
      optional(field('operator', choice(...COMPARISON_OPERATORS))),
      field('value', $._expression),
    ),

    // ------------------------------------------------------------------ types

    type_definition: $ => seq(
      'type',
      field('name', $.identifier),
      optional(field('type_parameters', $.type_parameters)),
      '=',
      field('type', $._type),
      optional(seq('with', sep1(field('annotation', $.type_annotation), ','))),
      ';',
    ),

    /// `encryption("AES-256-GCM")` in `type X = T with encryption(...)`.
    type_annotation: $ => seq(
      field('name', $.identifier),
      field('arguments', $.arguments),
    ),

    struct_definition: $ => seq(
      'struct',
      field('name', $.identifier),
      optional(field('type_parameters', $.type_parameters)),
      field('body', $.field_declarations),
    ),

    enum_definition: $ => seq(
      'enum',
      field('name', $.identifier),
      field('body', $.enum_variants),
    ),

    type_parameters: $ => seq('<', commaSep1($.identifier), '>'),

    field_declarations: $ => seq('{', commaSep($.field_declaration), '}'),

    field_declaration: $ => seq(
      field('name', $.identifier),
      ':',
      field('type', $._type),
    ),

    enum_variants: $ => seq('{', commaSep($.enum_variant), '}'),

    enum_variant: $ => field('name', $.identifier),

    _type: $ => choice(
      $.primitive_type,
      alias($.identifier, $.type_identifier),
      $.generic_type,
      $.function_type,
      $.agent_type,
      $.record_type,
      $.enum_type,
    ),

    primitive_type: _ => choice('int', 'float', 'string', 'bool', 'bytes'),

    generic_type: $ => seq(
      field('name', $.identifier),
      field('arguments', $.type_arguments),
    ),

    type_arguments: $ => seq('<', commaSep1($._type), '>'),

    function_type: $ => prec.right(seq(
      field('parameters', $.function_type_parameters),
      '->',
      field('return_type', $._type),
    )),

    function_type_parameters: $ => seq('(', commaSep($._type), ')'),

    agent_type: $ => seq('agent', '<', field('capability', $.identifier), '>'),

    record_type: $ => field('body', $.field_declarations),

    enum_type: $ => seq('enum', field('body', $.enum_variants)),

    // ------------------------------------------------------------- statements

    block: $ => seq('{', repeat($._statement), '}'),

    _statement: $ => choice(
      $.let_statement,
      $.assignment,
      $.destructuring_assignment,
      $.return_statement,
      $.if_statement,
      $.while_statement,
      $.for_statement,
      $.try_statement,
      $.with_statement,
      $.block,
      $.expression_statement,
    ),

    let_statement: $ => seq(
      'let',
      field('name', $.identifier),
      optional(seq(':', field('type', $._type))),
      '=',
      field('value', $._expression),
      ';',
    ),

    assignment: $ => seq(
      field('target', choice($.identifier, $.member_expression)),
      '=',
      field('value', $._expression),
      ';',
    ),

    destructuring_assignment: $ => seq(
      '(',
      commaSep1(field('target', $.identifier)),
      ')',
      '=',
      field('value', $._expression),
      ';',
    ),

    return_statement: $ => seq('return', optional(field('value', $._expression)), ';'),

    if_statement: $ => seq(
      'if',
      '(',
      field('condition', $._expression),
      ')',
      field('consequence', $.block),
      optional(seq('else', field('alternative', choice($.block, $.if_statement)))),
    ),

    while_statement: $ => seq(
      'while',
      '(',
      field('condition', $._expression),
      ')',
      field('body', $.block),
    ),

    for_statement: $ => seq(
      'for',
      field('variable', $.identifier),
      'in',
      field('iterable', $._expression),
      field('body', $.block),
    ),

    try_statement: $ => seq(
      'try',
      field('body', $.block),
      'catch',
      '(',
      field('error', $.identifier),
      ')',
      field('handler', $.block),
    ),

    /// `with policy(p), memory = "ephemeral" { ... }` inside an agent body
    /// (spec §6.2.1): the metadata applies to the statements of the block.
    with_statement: $ => seq(
      field('metadata', $.metadata),
      field('body', $.block),
    ),

    expression_statement: $ => seq($._expression, ';'),

    // ------------------------------------------------------------ expressions

    _expression: $ => choice(
      $.identifier,
      $.self,
      $._literal,
      $.binary_expression,
      $.unary_expression,
      $.call_expression,
      $.member_expression,
      $.agent_call,
      $.lambda_expression,
      $.struct_expression,
      $.parenthesized_expression,
    ),

    binary_expression: $ => choice(
      ...[
        ['||', PREC.or],
        ['&&', PREC.and],
        ...COMPARISON_OPERATORS.map(op => [op, PREC.compare]),
        ['+', PREC.additive],
        ['-', PREC.additive],
        ['*', PREC.multiplicative],
        ['/', PREC.multiplicative],
        ['%', PREC.multiplicative],
      ].map(([operator, precedence]) => prec.left(precedence, seq(
        field('left', $._expression),
        field('operator', operator),
        field('right', $._expression),
      ))),
    ),

    unary_expression: $ => prec(PREC.unary, seq(
      field('operator', choice('!', '-', '+')),
      field('operand', $._expression),
    )),

    call_expression: $ => prec(PREC.postfix, seq(
      field('function', $._expression),
      field('arguments', $.arguments),
    )),

    arguments: $ => seq('(', commaSep(choice($._expression, $.named_argument)), ')'),

    /// `epsilon=1.0` in a call (spec §6.2.3).
    named_argument: $ => seq(
      field('name', $.identifier),
      '=',
      field('value', $._expression),
    ),

    member_expression: $ => prec(PREC.postfix, seq(
      field('object', $._expression),
      '.',
      field('property', $.identifier),
    )),

    /// `agent security_analyzer.analyze(code)` (spec §6.2.2).
    agent_call: $ => seq(
      'agent',
      field('agent', $.identifier),
      '.',
      field('method', $.identifier),
      field('arguments', $.arguments),
    ),

    lambda_expression: $ => prec.right(PREC.lambda, seq(
      field('parameters', choice($.identifier, $.lambda_parameters)),
      '=>',
      field('body', choice($._expression, $.block)),
    )),

    lambda_parameters: $ => seq('(', commaSep($.identifier), ')'),

    /// `CostReport { patients: count(patients) }`. Loses a tie against a
    /// block (`for x in items {}`), as in Rust.
    struct_expression: $ => prec.dynamic(-1, seq(
      field('name', alias($.identifier, $.type_identifier)),
      '{',
      commaSep($.field_initializer),
      '}',
    )),

    field_initializer: $ => seq(
      field('name', $.identifier),
      ':',
      field('value', $._expression),
    ),

    parenthesized_expression: $ => seq('(', $._expression, ')'),

    // --------------------------------------------------------------- literals

    _literal: $ => choice(
      $.string,
      $.number,
      $.boolean,
      $.array,
      $.object,
    ),

    array: $ => seq('[', commaSep($._expression), ']'),

    object: $ => prec.dynamic(-1, seq('{', commaSep($.field_initializer), '}')),

    string: _ => token(seq('"', repeat(choice(/[^"\\\n]/, /\\./)), '"')),

    number: _ => /\d+(\.\d+)?/,

    boolean: _ => choice('true', 'false'),

    self: _ => 'self',

    identifier: _ => /[a-zA-Z_][a-zA-Z0-9_]*/,

    line_comment: _ => token(seq('//', /[^\n]*/)),

    block_comment: _ => token(seq('/*', /[^*]*\*+([^/*][^*]*\*+)*/, '/')),
  },
});
