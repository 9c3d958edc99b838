//! A small, safe interpreter for the arithmetic subset of Python that `program` asks
//! the model to write: assignments of numbers, `if` and loops, no functions of its
//! own. Running the model's code in a real Python would hand a language model the
//! user's machine; this subset cannot do anything but compute numbers, and stops after
//! [`MAX_STEPS`] statements, so a loop that never ends is an error, not a hang.
//!
//! What it takes:
//! - statements, one per line: `name = expr`, `a, b = x, y`, `name += expr` (and
//!   `-= *= /= //= %= **=`), `print(...)`, `import math`, `from math import …`,
//!   `pass`, `break`, `continue`; `#` comments; lines joined inside brackets;
//! - blocks, by indentation as Python has them: `if`/`elif`/`else`, `for NAME in
//!   ITERABLE` over `range(…)` or a list, `while`; a block's body may follow its `:`
//!   on the same line;
//! - expressions: numbers (`1_000`, `2.5`, `1e3`), names, `True`/`False`, `+ - * /
//!   // % **` with Python's precedence and semantics (true division, floor division,
//!   the divisor's sign for `%`, `-2 ** 2 == -4`), comparisons, `and`/`or`/`not`,
//!   `x if c else y`, list literals, and the calls `round` (half to even, as Python),
//!   `int`, `float`, `abs`, `min`, `max`, `sum`, `len`, `pow`, `range`, `math.ceil`,
//!   `math.floor`, `math.sqrt`, plus `math.pi`.
//!
//! Both sides of `and`, `or` and `x if c else y` are evaluated (the value is Python's),
//! so an error in the side Python would skip (`x and 10 / x` with `x = 0`) is an error
//! here too.
//!
//! Anything else (`def`, `class`, `with`, `try`, a method call, a string outside
//! `print`, an unknown name or function) is an [`Unsupported`] error naming the line,
//! and the caller answers another way. Numbers are `f64`: the subset is for word problems,
//! not for exact big-integer arithmetic.

use std::collections::HashMap;

/// Why a program could not be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct Unsupported {
    pub line: usize,
    pub message: String,
}

/// What running a program left behind.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// Every variable holding a number at the end.
    pub variables: HashMap<String, f64>,
    /// The numbers printed, in order.
    pub printed: Vec<f64>,
    /// The name the program's last top-level assignment set (`initial = given + left`
    /// at the end of a program that never names its result `answer`).
    pub last_assigned: Option<String>,
}

impl Outcome {
    /// The program's answer: the variable `name` if it was assigned a number, else the
    /// last number printed, else the number its last top-level assignment set.
    pub fn answer(&self, name: &str) -> Option<f64> {
        self.variables
            .get(name)
            .copied()
            .or_else(|| self.printed.last().copied())
            .or_else(|| {
                self.last_assigned
                    .as_ref()
                    .and_then(|n| self.variables.get(n).copied())
            })
    }
}

/// Deepest nesting of brackets and operators the parser follows, and of blocks (hostile
/// input cannot overflow the stack).
const MAX_DEPTH: usize = 64;

/// Most statements (loop conditions included) one run executes.
pub const MAX_STEPS: usize = 100_000;

/// Runs `source`; see the module documentation for what it takes.
pub fn run(source: &str) -> Result<Outcome, Unsupported> {
    let statements = statements(source)?;
    let mut at = 0;
    let base = statements.first().map_or(0, |s| s.indent);
    let program = block(&statements, &mut at, base, 0)?;
    if let Some(s) = statements.get(at) {
        return Err(Unsupported {
            line: s.line,
            message: "a line indented less than the first".into(),
        });
    }
    let mut machine = Machine::default();
    match machine.exec(&program)? {
        Flow::Next => {}
        Flow::Break(line) | Flow::Continue(line) => {
            return Err(Unsupported {
                line,
                message: "'break' or 'continue' outside a loop".into(),
            })
        }
    }
    let mut outcome = machine.outcome;
    outcome.last_assigned = program.iter().rev().find_map(|node| match node {
        Node::Simple(statement) => statement.assigned_name(),
        _ => None,
    });
    outcome.variables = machine
        .values
        .into_iter()
        .filter_map(|(name, v)| match v {
            Value::Num(x) => Some((name, x)),
            Value::List(_) => None,
        })
        .collect();
    Ok(outcome)
}

/// A program as blocks: what indentation nests.
#[derive(Debug)]
enum Node {
    Simple(Statement),
    /// `if`, then each `elif`: a condition (the tokens between keyword and `:`) and
    /// its body; `orelse` is the `else` body.
    If {
        branches: Vec<(Statement, Vec<Node>)>,
        orelse: Vec<Node>,
    },
    For {
        line: usize,
        target: String,
        iterable: Statement,
        body: Vec<Node>,
    },
    While {
        condition: Statement,
        body: Vec<Node>,
    },
}

/// The block of statements at `indent` from `at` on, nested bodies included.
fn block(
    statements: &[Statement],
    at: &mut usize,
    indent: usize,
    depth: usize,
) -> Result<Vec<Node>, Unsupported> {
    let mut nodes = Vec::new();
    while let Some(statement) = statements.get(*at) {
        if statement.indent < indent {
            break;
        }
        let err = |message: &str| Unsupported {
            line: statement.line,
            message: message.into(),
        };
        if statement.indent > indent {
            return Err(err("an indented line that opens no block"));
        }
        *at += 1;
        let Some(keyword) = statement.header() else {
            nodes.push(Node::Simple(statement.clone()));
            continue;
        };
        let body = |at: &mut usize| -> Result<Vec<Node>, Unsupported> {
            if depth >= MAX_DEPTH {
                return Err(err("blocks nested too deeply"));
            }
            match statements.get(*at) {
                Some(next) if next.indent > indent => block(statements, at, next.indent, depth + 1),
                _ => Err(err("a block without an indented body")),
            }
        };
        match keyword {
            "if" => {
                let mut branches = vec![(statement.between_keyword_and_colon(), body(at)?)];
                let mut orelse = Vec::new();
                while let Some(next) = statements.get(*at).filter(|n| n.indent == indent) {
                    match next.header() {
                        Some("elif") => {
                            *at += 1;
                            branches.push((next.between_keyword_and_colon(), body(at)?));
                        }
                        Some("else") => {
                            *at += 1;
                            orelse = body(at)?;
                            break;
                        }
                        _ => break,
                    }
                }
                nodes.push(Node::If { branches, orelse });
            }
            "for" => {
                let inside = statement.between_keyword_and_colon();
                let (target, iterable) = match inside.tokens.as_slice() {
                    [Token::Name(target), Token::Name(word), rest @ ..]
                        if word == "in" && !is_keyword(target) && !rest.is_empty() =>
                    {
                        (target.clone(), rest.to_vec())
                    }
                    _ => return Err(err("a `for` other than `for NAME in …:`")),
                };
                nodes.push(Node::For {
                    line: statement.line,
                    target,
                    iterable: Statement {
                        tokens: iterable,
                        ..inside
                    },
                    body: body(at)?,
                });
            }
            "while" => nodes.push(Node::While {
                condition: statement.between_keyword_and_colon(),
                body: body(at)?,
            }),
            "elif" | "else" => return Err(err("an `elif` or `else` without its `if`")),
            _ => {
                return Err(err(
                    "a block other than if, for and while (def, class, with, try, …)",
                ))
            }
        }
    }
    Ok(nodes)
}

/// What a statement or block hands its enclosing loop.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flow {
    Next,
    Break(usize),
    Continue(usize),
}

/// The program's state while it runs.
#[derive(Default)]
struct Machine {
    values: HashMap<String, Value>,
    outcome: Outcome,
    steps: usize,
}

impl Machine {
    fn exec(&mut self, nodes: &[Node]) -> Result<Flow, Unsupported> {
        for node in nodes {
            let flow = match node {
                Node::Simple(statement) => self.simple(statement)?,
                Node::If { branches, orelse } => {
                    let mut taken = None;
                    for (condition, body) in branches {
                        if truth(&self.evaluate(condition)?) {
                            taken = Some(body);
                            break;
                        }
                    }
                    self.exec(taken.unwrap_or(orelse))?
                }
                Node::For {
                    line,
                    target,
                    iterable,
                    body,
                } => {
                    let Value::List(items) = self.evaluate(iterable)? else {
                        return Err(Unsupported {
                            line: *line,
                            message: "a `for` over something other than a list or range()".into(),
                        });
                    };
                    for item in items {
                        self.values.insert(target.clone(), Value::Num(item));
                        if let Flow::Break(_) = self.exec(body)? {
                            break;
                        }
                    }
                    Flow::Next
                }
                Node::While { condition, body } => {
                    while truth(&self.evaluate(condition)?) {
                        if let Flow::Break(_) = self.exec(body)? {
                            break;
                        }
                    }
                    Flow::Next
                }
            };
            if flow != Flow::Next {
                return Ok(flow);
            }
        }
        Ok(Flow::Next)
    }

    fn step(&mut self, line: usize) -> Result<(), Unsupported> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(Unsupported {
                line,
                message: format!("more than {MAX_STEPS} steps (a loop that does not end?)"),
            });
        }
        Ok(())
    }

    fn parser<'a>(&'a self, statement: &'a Statement) -> Parser<'a> {
        Parser {
            tokens: &statement.tokens,
            at: 0,
            line: statement.line,
            depth: 0,
            values: &self.values,
        }
    }

    /// A whole statement's tokens as one expression (a condition, an iterable).
    fn evaluate(&mut self, statement: &Statement) -> Result<Value, Unsupported> {
        self.step(statement.line)?;
        let mut parser = self.parser(statement);
        let value = parser.expression()?;
        if parser.at < statement.tokens.len() {
            return parser.err("more after the expression than the subset reads");
        }
        Ok(value)
    }

    fn simple(&mut self, statement: &Statement) -> Result<Flow, Unsupported> {
        self.step(statement.line)?;
        match self.parser(statement).statement()? {
            Effect::Assign(pairs) => {
                for (name, value) in pairs {
                    self.values.insert(name, value);
                }
            }
            Effect::Print(printed) => self.outcome.printed.extend(printed),
            Effect::Nothing => {}
            Effect::Break => return Ok(Flow::Break(statement.line)),
            Effect::Continue => return Ok(Flow::Continue(statement.line)),
        }
        Ok(Flow::Next)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    Name(String),
    Str,
    Op(&'static str),
}

#[derive(Debug, Clone)]
struct Statement {
    line: usize,
    /// Columns of indentation of its first line (a tab to the next multiple of 8).
    indent: usize,
    tokens: Vec<Token>,
}

impl Statement {
    /// The block keyword of a header (a statement ending in `:`).
    fn header(&self) -> Option<&str> {
        match (self.tokens.first(), self.tokens.last()) {
            (Some(Token::Name(keyword)), Some(Token::Op(":"))) => Some(keyword),
            _ => None,
        }
    }

    /// The one name an assignment (`x = …`, `x += …`) sets.
    fn assigned_name(&self) -> Option<String> {
        match self.tokens.as_slice() {
            [Token::Name(name), Token::Op(op), _, ..]
                if !is_keyword(name)
                    && op.ends_with('=')
                    && !matches!(*op, "==" | "<=" | ">=" | "!=") =>
            {
                Some(name.clone())
            }
            _ => None,
        }
    }

    /// A header's tokens between its keyword and its `:`.
    fn between_keyword_and_colon(&self) -> Statement {
        Statement {
            tokens: self.tokens[1..self.tokens.len() - 1].to_vec(),
            ..*self
        }
    }
}

const OPERATORS: &[&str] = &[
    "**=", "//=", "**", "//", "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "%=", "+", "-", "*",
    "/", "%", "(", ")", "[", "]", ",", "=", "<", ">", ".", ":",
];

/// Splits `source` into statements of tokens: a new statement at each line end outside
/// brackets, and after a block header's `:` (so `if x: y = 1` is two statements, the
/// second indented deeper than the first).
fn statements(source: &str) -> Result<Vec<Statement>, Unsupported> {
    let mut out = Vec::new();
    let mut current: Option<Statement> = None;
    let mut depth = 0usize;
    for (index, text) in source.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| Unsupported { line, message };
        let mut chars = text.char_indices().peekable();
        let mut indent = text
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .fold(
                0,
                |col, c| if c == '\t' { col / 8 * 8 + 8 } else { col + 1 },
            );
        while let Some(&(at, c)) = chars.peek() {
            if c == '#' {
                break;
            }
            if c.is_whitespace() {
                chars.next();
                continue;
            }
            let statement = current.get_or_insert_with(|| Statement {
                line,
                indent,
                tokens: Vec::new(),
            });
            let rest = &text[at..];
            if c.is_ascii_digit()
                || (c == '.' && rest[1..].starts_with(|d: char| d.is_ascii_digit()))
            {
                let len = number_len(rest);
                let literal: String = rest[..len].chars().filter(|&d| d != '_').collect();
                let value = literal
                    .parse::<f64>()
                    .map_err(|_| err(format!("cannot read the number '{}'", &rest[..len])))?;
                statement.tokens.push(Token::Num(value));
                advance(&mut chars, len);
            } else if c.is_alphabetic() || c == '_' {
                let len = rest
                    .find(|d: char| !(d.is_alphanumeric() || d == '_'))
                    .unwrap_or(rest.len());
                let word = &rest[..len];
                let after = &rest[len..];
                if matches!(word, "f" | "r" | "b" | "rf" | "fr") && after.starts_with(['"', '\'']) {
                    advance(&mut chars, len);
                    continue;
                }
                statement.tokens.push(Token::Name(word.to_string()));
                advance(&mut chars, len);
            } else if c == '"' || c == '\'' {
                let close = rest[1..]
                    .find(c)
                    .ok_or_else(|| err("a string that does not end on its line".into()))?;
                statement.tokens.push(Token::Str);
                advance(&mut chars, close + 2);
            } else if let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) {
                match *op {
                    ":" if depth == 0 => {
                        statement.tokens.push(Token::Op(":"));
                        advance(&mut chars, 1);
                        indent = statement.indent + 1;
                        out.extend(current.take());
                        continue;
                    }
                    "(" | "[" => depth += 1,
                    ")" | "]" => {
                        depth = depth
                            .checked_sub(1)
                            .ok_or_else(|| err(format!("an unmatched '{op}'")))?
                    }
                    _ => {}
                }
                statement.tokens.push(Token::Op(op));
                advance(&mut chars, op.len());
            } else {
                return Err(err(format!("the character '{c}'")));
            }
        }
        if depth == 0 {
            out.extend(current.take());
        }
    }
    if depth > 0 {
        return Err(Unsupported {
            line: source.lines().count(),
            message: "brackets left open at the end".into(),
        });
    }
    Ok(out)
}

fn advance(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, bytes: usize) {
    let Some(&(start, _)) = chars.peek() else {
        return;
    };
    while chars.peek().is_some_and(|&(at, _)| at < start + bytes) {
        chars.next();
    }
}

/// Length of the number literal at the start of `text` (digits, `_`, one `.`, an
/// exponent).
fn number_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i].is_ascii_digit() || bytes[*i] == b'_') {
            *i += 1;
        }
    };
    digits(&mut i);
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        digits(&mut i);
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            i = j;
            digits(&mut i);
        }
    }
    i
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Num(f64),
    List(Vec<f64>),
}

enum Effect {
    Assign(Vec<(String, Value)>),
    Print(Vec<f64>),
    Nothing,
    Break,
    Continue,
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    line: usize,
    depth: usize,
    values: &'a HashMap<String, Value>,
}

impl Parser<'_> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, Unsupported> {
        Err(Unsupported {
            line: self.line,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Token::Op(o)) if *o == op)
    }

    fn is_name(&self, name: &str) -> bool {
        matches!(self.peek(), Some(Token::Name(n)) if n == name)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let found = self.is_op(op);
        self.at += usize::from(found);
        found
    }

    fn expect_op(&mut self, op: &str) -> Result<(), Unsupported> {
        if self.eat_op(op) {
            Ok(())
        } else {
            self.err(format!("expected '{op}'"))
        }
    }

    fn statement(&mut self) -> Result<Effect, Unsupported> {
        let effect = match self.peek() {
            Some(Token::Name(n)) if n == "import" || n == "from" => {
                let module_ok = matches!(self.tokens.get(1), Some(Token::Name(m)) if m == "math");
                if !module_ok {
                    return self.err("only `math` can be imported");
                }
                self.at = self.tokens.len();
                Effect::Nothing
            }
            Some(Token::Name(n)) if n == "pass" => {
                self.at += 1;
                Effect::Nothing
            }
            Some(Token::Name(n)) if n == "break" || n == "continue" => {
                let effect = if n == "break" {
                    Effect::Break
                } else {
                    Effect::Continue
                };
                self.at += 1;
                effect
            }
            Some(Token::Name(n))
                if n == "print" && matches!(self.tokens.get(1), Some(Token::Op("("))) =>
            {
                self.at += 2;
                let mut printed = Vec::new();
                while !self.is_op(")") {
                    if matches!(self.peek(), Some(Token::Str)) {
                        self.at += 1;
                    } else if self.is_name("sep") || self.is_name("end") {
                        self.at += 1;
                        self.expect_op("=")?;
                        self.at += 1;
                    } else if let Value::Num(x) = self.expression()? {
                        printed.push(x);
                    }
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.expect_op(")")?;
                Effect::Print(printed)
            }
            Some(Token::Name(_)) => self.assignment()?,
            _ => return self.err("a statement the subset does not run"),
        };
        if self.at < self.tokens.len() {
            return self.err("more on the line than one statement");
        }
        Ok(effect)
    }

    fn assignment(&mut self) -> Result<Effect, Unsupported> {
        let mut targets = Vec::new();
        loop {
            match self.peek() {
                Some(Token::Name(n)) if !is_keyword(n) => targets.push(n.clone()),
                _ => return self.err("a statement the subset does not run"),
            }
            self.at += 1;
            if !self.eat_op(",") {
                break;
            }
        }
        let augmented = ["+=", "-=", "*=", "/=", "//=", "%=", "**="]
            .into_iter()
            .find(|op| self.is_op(op));
        if let Some(op) = augmented {
            if targets.len() != 1 {
                return self.err(format!("'{op}' on several names"));
            }
            self.at += 1;
            let old = self.variable(&targets[0])?;
            let rhs = self.expression()?;
            let value = self.binary(&op[..op.len() - 1], old, rhs)?;
            return Ok(Effect::Assign(vec![(targets.remove(0), value)]));
        }
        if self.at == self.tokens.len() && targets.len() == 1 {
            // A bare name, as a notebook cell ends: nothing to do.
            return Ok(Effect::Nothing);
        }
        if !self.eat_op("=") {
            return self.err("a statement the subset does not run");
        }
        let mut values = vec![self.expression()?];
        while self.eat_op(",") {
            values.push(self.expression()?);
        }
        if values.len() != targets.len() {
            return self.err(format!(
                "{} names given {} values",
                targets.len(),
                values.len()
            ));
        }
        Ok(Effect::Assign(targets.into_iter().zip(values).collect()))
    }

    fn variable(&self, name: &str) -> Result<Value, Unsupported> {
        match self.values.get(name) {
            Some(v) => Ok(v.clone()),
            None => self.err(format!("'{name}' is used before it is assigned")),
        }
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, Unsupported>,
    ) -> Result<T, Unsupported> {
        if self.depth >= MAX_DEPTH {
            return self.err("nested too deeply");
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn expression(&mut self) -> Result<Value, Unsupported> {
        self.nested(|p| {
            let value = p.or()?;
            if p.is_name("if") {
                p.at += 1;
                let condition = p.or()?;
                if !p.is_name("else") {
                    return p.err("expected 'else'");
                }
                p.at += 1;
                let otherwise = p.expression()?;
                return Ok(if truth(&condition) { value } else { otherwise });
            }
            Ok(value)
        })
    }

    fn or(&mut self) -> Result<Value, Unsupported> {
        let mut value = self.and()?;
        while self.is_name("or") {
            self.at += 1;
            let rhs = self.and()?;
            if !truth(&value) {
                value = rhs;
            }
        }
        Ok(value)
    }

    fn and(&mut self) -> Result<Value, Unsupported> {
        let mut value = self.not()?;
        while self.is_name("and") {
            self.at += 1;
            let rhs = self.not()?;
            if truth(&value) {
                value = rhs;
            }
        }
        Ok(value)
    }

    fn not(&mut self) -> Result<Value, Unsupported> {
        if self.is_name("not") {
            self.at += 1;
            let v = self.nested(Self::not)?;
            return Ok(Value::Num(f64::from(u8::from(!truth(&v)))));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Value, Unsupported> {
        let mut left = self.arith()?;
        let mut result: Option<bool> = None;
        while let Some(op) = ["==", "!=", "<=", ">=", "<", ">"]
            .into_iter()
            .find(|op| self.is_op(op))
        {
            self.at += 1;
            let right = self.arith()?;
            let (a, b) = (self.num(&left)?, self.num(&right)?);
            let holds = match op {
                "==" => a == b,
                "!=" => a != b,
                "<=" => a <= b,
                ">=" => a >= b,
                "<" => a < b,
                _ => a > b,
            };
            result = Some(result.unwrap_or(true) && holds);
            left = right;
        }
        Ok(match result {
            Some(r) => Value::Num(f64::from(u8::from(r))),
            None => left,
        })
    }

    fn arith(&mut self) -> Result<Value, Unsupported> {
        let mut value = self.term()?;
        while let Some(op) = ["+", "-"].into_iter().find(|op| self.is_op(op)) {
            self.at += 1;
            let rhs = self.term()?;
            value = self.binary(op, value, rhs)?;
        }
        Ok(value)
    }

    fn term(&mut self) -> Result<Value, Unsupported> {
        let mut value = self.factor()?;
        while let Some(op) = ["*", "//", "/", "%"].into_iter().find(|op| self.is_op(op)) {
            self.at += 1;
            let rhs = self.factor()?;
            value = self.binary(op, value, rhs)?;
        }
        Ok(value)
    }

    fn factor(&mut self) -> Result<Value, Unsupported> {
        if let Some(op) = ["+", "-"].into_iter().find(|op| self.is_op(op)) {
            self.at += 1;
            let v = self.nested(Self::factor)?;
            let x = self.num(&v)?;
            return Ok(Value::Num(if op == "-" { -x } else { x }));
        }
        self.power()
    }

    fn power(&mut self) -> Result<Value, Unsupported> {
        let base = self.primary()?;
        if self.eat_op("**") {
            let exponent = self.nested(Self::factor)?;
            return self.binary("**", base, exponent);
        }
        Ok(base)
    }

    fn binary(&self, op: &str, a: Value, b: Value) -> Result<Value, Unsupported> {
        let (a, b) = (self.num(&a)?, self.num(&b)?);
        let value = match op {
            "+" => a + b,
            "-" => a - b,
            "*" => a * b,
            "/" | "//" | "%" if b == 0.0 => return self.err("division by zero"),
            "/" => a / b,
            "//" => (a / b).floor(),
            "%" => a - b * (a / b).floor(),
            "**" => a.powf(b),
            _ => return self.err(format!("the operator '{op}'")),
        };
        self.finite(value)
    }

    fn finite(&self, x: f64) -> Result<Value, Unsupported> {
        if x.is_finite() {
            Ok(Value::Num(x))
        } else {
            self.err("a result that is not a finite number")
        }
    }

    fn num(&self, v: &Value) -> Result<f64, Unsupported> {
        match v {
            Value::Num(x) => Ok(*x),
            Value::List(_) => self.err("a list where a number is needed"),
        }
    }

    fn primary(&mut self) -> Result<Value, Unsupported> {
        let Some(token) = self.peek().cloned() else {
            return self.err("the line ends inside an expression");
        };
        self.at += 1;
        match token {
            Token::Num(x) => Ok(Value::Num(x)),
            Token::Str => self.err("a string"),
            Token::Op("(") => {
                let v = self.expression()?;
                self.expect_op(")")?;
                Ok(v)
            }
            Token::Op("[") => {
                let mut items = Vec::new();
                while !self.is_op("]") {
                    let v = self.expression()?;
                    items.push(self.num(&v)?);
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.expect_op("]")?;
                Ok(Value::List(items))
            }
            Token::Op(op) => self.err(format!("unexpected '{op}'")),
            Token::Name(name) => {
                let name = if name == "math" && self.eat_op(".") {
                    match self.peek().cloned() {
                        Some(Token::Name(member)) => {
                            self.at += 1;
                            format!("math.{member}")
                        }
                        _ => return self.err("expected a name after 'math.'"),
                    }
                } else {
                    name
                };
                if self.eat_op("(") {
                    let mut args = Vec::new();
                    while !self.is_op(")") {
                        args.push(self.expression()?);
                        if !self.eat_op(",") {
                            break;
                        }
                    }
                    self.expect_op(")")?;
                    return self.call(&name, args);
                }
                match name.as_str() {
                    "True" => Ok(Value::Num(1.0)),
                    "False" => Ok(Value::Num(0.0)),
                    "math.pi" | "pi" => Ok(Value::Num(std::f64::consts::PI)),
                    _ => self.variable(&name),
                }
            }
        }
    }

    /// `range(stop)`, `range(start, stop)`, `range(start, stop, step)` as a list, no
    /// longer than a run may step.
    fn range(&self, args: &[Value]) -> Result<Value, Unsupported> {
        let whole = |v: &Value| -> Result<i64, Unsupported> {
            let x = self.num(v)?;
            if x.fract() != 0.0 || x.abs() > 1e15 {
                return self.err(format!("range() of {x}, not a whole number"));
            }
            Ok(x as i64)
        };
        let (start, stop, step) = match args {
            [stop] => (0, whole(stop)?, 1),
            [start, stop] => (whole(start)?, whole(stop)?, 1),
            [start, stop, step] => (whole(start)?, whole(stop)?, whole(step)?),
            _ => return self.err("range() takes one to three arguments"),
        };
        if step == 0 {
            return self.err("range() with a step of 0");
        }
        let (span, stride) = if step > 0 {
            (stop - start, step)
        } else {
            (start - stop, -step)
        };
        let len = (span.max(0) + stride - 1) / stride;
        if len as usize > MAX_STEPS {
            return self.err(format!("range() of more than {MAX_STEPS} numbers"));
        }
        Ok(Value::List(
            (0..len).map(|i| (start + i * step) as f64).collect(),
        ))
    }

    fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, Unsupported> {
        let name = name.strip_prefix("math.").map_or(name, |n| match n {
            "ceil" | "floor" | "sqrt" | "pow" => n,
            _ => "",
        });
        let one = |args: &[Value]| -> Result<f64, Unsupported> {
            match args {
                [v] => self.num(v),
                _ => self.err(format!("{name}() takes one argument")),
            }
        };
        // min, max and sum take a list or several numbers.
        let many = |args: Vec<Value>| -> Result<Vec<f64>, Unsupported> {
            match args.as_slice() {
                [Value::List(items)] => Ok(items.clone()),
                _ => args.iter().map(|a| self.num(a)).collect(),
            }
        };
        let value = match name {
            "int" => one(&args)?.trunc(),
            "float" => one(&args)?,
            "abs" => one(&args)?.abs(),
            "ceil" => one(&args)?.ceil(),
            "floor" => one(&args)?.floor(),
            "sqrt" => {
                let x = one(&args)?;
                if x < 0.0 {
                    return self.err("sqrt of a negative number");
                }
                x.sqrt()
            }
            "round" => match args.as_slice() {
                [v] => self.num(v)?.round_ties_even(),
                [v, digits] => {
                    let scale = 10f64.powf(self.num(digits)?.trunc());
                    (self.num(v)? * scale).round_ties_even() / scale
                }
                _ => return self.err("round() takes one or two arguments"),
            },
            "pow" => match args.as_slice() {
                [a, b] => return self.binary("**", a.clone(), b.clone()),
                _ => return self.err("pow() takes two arguments"),
            },
            "range" => return self.range(&args),
            "len" => match args.as_slice() {
                [Value::List(items)] => items.len() as f64,
                _ => return self.err("len() takes one list"),
            },
            "sum" => many(args)?.iter().sum(),
            "min" | "max" => {
                let items = many(args)?;
                let pick = if name == "min" { f64::min } else { f64::max };
                match items.into_iter().reduce(pick) {
                    Some(x) => x,
                    None => return self.err(format!("{name}() of nothing")),
                }
            }
            "" => return self.err("a function of `math` the subset lacks"),
            other => return self.err(format!("the function '{other}'")),
        };
        self.finite(value)
    }
}

/// Python's truthiness: a number other than 0, a list that is not empty.
fn truth(v: &Value) -> bool {
    match v {
        Value::Num(x) => *x != 0.0,
        Value::List(items) => !items.is_empty(),
    }
}

fn is_keyword(name: &str) -> bool {
    matches!(
        name,
        "if" | "else"
            | "elif"
            | "for"
            | "while"
            | "def"
            | "return"
            | "class"
            | "and"
            | "or"
            | "not"
            | "in"
            | "is"
            | "lambda"
            | "True"
            | "False"
            | "None"
            | "break"
            | "continue"
            | "pass"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(source: &str) -> f64 {
        run(source).unwrap().answer("answer").unwrap()
    }

    #[test]
    fn straight_line_assignments_compute_the_answer() {
        let source = "morning = 20\nafternoon = morning + 15  # fifteen more\n\n\
                      answer = morning + afternoon\n";
        assert_eq!(answer(source), 55.0);
    }

    #[test]
    fn operators_follow_python_precedence_and_semantics() {
        assert_eq!(answer("answer = 2 + 3 * 4 ** 2 / 8"), 8.0);
        assert_eq!(answer("answer = -2 ** 2"), -4.0);
        assert_eq!(answer("answer = 2 ** 3 ** 2"), 512.0);
        assert_eq!(answer("answer = 7 // 2 + 7 / 2"), 6.5);
        assert_eq!(answer("answer = -7 // 2"), -4.0);
        assert_eq!(answer("answer = -7 % 3"), 2.0);
        assert_eq!(answer("answer = 7 % -3"), -2.0);
        assert_eq!(answer("answer = (1 + 2) * (3 - 5)"), -6.0);
        assert_eq!(answer("answer = 1_000 * 1.5e2 + .5"), 150_000.5);
    }

    #[test]
    fn round_is_half_to_even_and_int_truncates() {
        assert_eq!(answer("answer = round(2.5) + round(3.5)"), 6.0);
        assert_eq!(answer("answer = round(2.345, 2)"), 2.35);
        assert_eq!(answer("answer = int(-3.7) + int(3.7)"), 0.0);
    }

    #[test]
    fn builtins_and_math_functions_work_on_numbers_and_lists() {
        let source = "import math\nprices = [3, 4.5, 2]\n\
                      answer = sum(prices) + max(1, 7) + min(prices) + len(prices) \
                      + math.ceil(2.1) + math.floor(2.9) + abs(-1) + pow(2, 3)\n";
        assert_eq!(
            answer(source),
            9.5 + 7.0 + 2.0 + 3.0 + 3.0 + 2.0 + 1.0 + 8.0
        );
        assert_eq!(answer("from math import sqrt\nanswer = sqrt(16)"), 4.0);
    }

    #[test]
    fn augmented_tuple_and_conditional_assignments() {
        let source = "a, b = 3, 4\na += b\na *= 2\nbonus = 10 if a > 12 and not b == 5 else 0\n\
                      answer = a + bonus";
        assert_eq!(answer(source), 24.0);
        assert_eq!(answer("x = 1 < 2 < 3\ny = 3 < 2 or 5\nanswer = x + y"), 6.0);
    }

    #[test]
    fn lines_join_inside_brackets() {
        assert_eq!(answer("answer = (1 +\n    2 +\n    3)"), 6.0);
    }

    #[test]
    fn without_an_answer_variable_the_last_printed_number_answers() {
        let outcome = run("total = 6 * 7\nprint(\"Total:\", total)\nprint(f\"{total}\")").unwrap();
        assert_eq!(outcome.answer("answer"), Some(42.0));
        assert_eq!(run("pass").unwrap().answer("answer"), None);
    }

    #[test]
    fn without_an_answer_or_a_print_the_last_top_level_assignment_answers() {
        let source = "given = 23 * 15\nleft = 12\ninitial = given + left\n";
        assert_eq!(run(source).unwrap().answer("answer"), Some(357.0));
        let source = "total = 0\nrate = 3\nfor i in range(4):\n    step = i\n    total += rate\n";
        assert_eq!(run(source).unwrap().answer("answer"), Some(3.0));
        let source = "x = 2\nx *= 5\n";
        assert_eq!(run(source).unwrap().answer("answer"), Some(10.0));
    }

    #[test]
    fn what_the_subset_lacks_is_refused_with_its_line() {
        let cases = [
            (
                "def f():\n    return 1",
                1,
                "a block other than if, for and while",
            ),
            ("x = 1\n    y = 2", 2, "opens no block"),
            ("if 1 2:\n    pass", 1, "more after the expression"),
            ("if 1 > 0:\nx = 2", 1, "without an indented body"),
            ("else:\n    x = 2", 1, "without its `if`"),
            ("while True:\n    x = 1", 1, "steps"),
            (
                "for i in range(10 ** 9):\n    pass",
                1,
                "range() of more than",
            ),
            ("for i in 5:\n    pass", 1, "other than a list"),
            ("break", 1, "outside a loop"),
            ("import os", 1, "math"),
            ("answer = open(1)", 1, "function 'open'"),
            ("answer = y + 1", 1, "'y' is used before"),
            ("answer = 1 / 0", 1, "division by zero"),
            ("answer = 10 ** 400", 1, "finite"),
            ("answer = (1 + 2", 1, "open"),
            ("answer = 'text'", 1, "string"),
            ("answer = 1 2", 1, "more on the line"),
            ("a, b = 1", 1, "2 names given 1 values"),
            ("answer = math.log(2)", 1, "math"),
        ];
        for (source, line, needle) in cases {
            let err = run(source).unwrap_err();
            assert_eq!(err.line, line, "{source}: {err}");
            assert!(err.message.contains(needle), "{source}: {err}");
        }
    }

    #[test]
    fn if_elif_else_blocks_take_the_first_true_branch() {
        let source = "price = 120\nif price > 100:\n    discount = 0.2\nelif price > 50:\n    \
                      discount = 0.1\nelse:\n    discount = 0\nanswer = price * (1 - discount)\n";
        assert_eq!(answer(source), 96.0);
        assert_eq!(answer(&source.replace("120", "80")), 72.0);
        assert_eq!(answer(&source.replace("120", "10")), 10.0);
        assert_eq!(answer("x = 3\nif x > 2: answer = 1\nelse: answer = 2"), 1.0);
    }

    #[test]
    fn loops_run_over_ranges_and_lists_with_break_and_continue() {
        let source = "total = 0\nfor day in range(1, 8):\n    if day % 2 == 0:\n        \
                      continue\n    total += day\nanswer = total";
        assert_eq!(answer(source), 16.0);
        assert_eq!(answer("s = 0\nfor x in [3, 4]:\n\ts += x\nanswer = s"), 7.0);
        let source = "savings = 0\nweeks = 0\nwhile True:\n    savings += 15\n    weeks += 1\n    \
                      if savings >= 100:\n        break\nanswer = weeks";
        assert_eq!(answer(source), 7.0);
        assert_eq!(answer("answer = sum(range(10, 0, -3))"), 22.0);
        let nested = "answer = 0\nfor i in range(3):\n    for j in range(4):\n        \
                      if j == 2:\n            break\n        answer += 1";
        assert_eq!(answer(nested), 6.0);
    }

    #[test]
    fn deeply_nested_blocks_are_refused_not_a_stack_overflow() {
        let deep: String = (0..200)
            .map(|d| format!("{}if 1:\n", " ".repeat(d)))
            .chain(std::iter::once(format!("{}answer = 1\n", " ".repeat(200))))
            .collect();
        assert!(run(&deep)
            .unwrap_err()
            .message
            .contains("nested too deeply"));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("answer = {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(run(&deep)
            .unwrap_err()
            .message
            .contains("nested too deeply"));
        let negations = format!("answer = {}1", "-".repeat(10_000));
        assert!(run(&negations).is_err());
    }
}
