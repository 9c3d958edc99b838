//! A small, safe interpreter for the arithmetic subset of Python that `program` asks
//! the model to write: straight-line assignments of numbers, no loops, no functions
//! of its own. Running the model's code in a real Python would hand a language model
//! the user's machine; this subset cannot do anything but compute numbers, and runs in
//! time linear in its length.
//!
//! What it takes:
//! - statements, one per line: `name = expr`, `a, b = x, y`, `name += expr` (and
//!   `-= *= /= //= %= **=`), `print(...)`, `import math`, `from math import …`,
//!   `pass`; `#` comments; lines joined inside brackets;
//! - expressions: numbers (`1_000`, `2.5`, `1e3`), names, `True`/`False`, `+ - * /
//!   // % **` with Python's precedence and semantics (true division, floor division,
//!   the divisor's sign for `%`, `-2 ** 2 == -4`), comparisons, `and`/`or`/`not`,
//!   `x if c else y`, list literals, and the calls `round` (half to even, as Python),
//!   `int`, `float`, `abs`, `min`, `max`, `sum`, `len`, `pow`, `math.ceil`,
//!   `math.floor`, `math.sqrt`, plus `math.pi`.
//!
//! Both sides of `and`, `or` and `x if c else y` are evaluated (the value is Python's),
//! so an error in the side Python would skip (`x and 10 / x` with `x = 0`) is an error
//! here too.
//!
//! Anything else (an indented block, `if`/`for`/`def`, a string outside `print`, an
//! unknown name or function) is an [`Unsupported`] error naming the line, and the
//! caller answers another way. Numbers are `f64`: the subset is for word problems,
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
}

impl Outcome {
    /// The program's answer: the variable `name` if it was assigned a number, else the
    /// last number printed.
    pub fn answer(&self, name: &str) -> Option<f64> {
        self.variables
            .get(name)
            .copied()
            .or_else(|| self.printed.last().copied())
    }
}

/// Deepest nesting of brackets and operators the parser follows (hostile input cannot
/// overflow the stack).
const MAX_DEPTH: usize = 64;

/// Runs `source`; see the module documentation for what it takes.
pub fn run(source: &str) -> Result<Outcome, Unsupported> {
    let mut outcome = Outcome::default();
    let mut values: HashMap<String, Value> = HashMap::new();
    for statement in statements(source)? {
        let mut parser = Parser {
            tokens: &statement.tokens,
            at: 0,
            line: statement.line,
            depth: 0,
            values: &values,
        };
        match parser.statement()? {
            Effect::Assign(pairs) => {
                for (name, value) in pairs {
                    values.insert(name, value);
                }
            }
            Effect::Print(printed) => outcome.printed.extend(printed),
            Effect::Nothing => {}
        }
    }
    outcome.variables = values
        .into_iter()
        .filter_map(|(name, v)| match v {
            Value::Num(x) => Some((name, x)),
            Value::List(_) => None,
        })
        .collect();
    Ok(outcome)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    Name(String),
    Str,
    Op(&'static str),
}

struct Statement {
    line: usize,
    tokens: Vec<Token>,
}

const OPERATORS: &[&str] = &[
    "**=", "//=", "**", "//", "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "%=", "+", "-", "*",
    "/", "%", "(", ")", "[", "]", ",", "=", "<", ">", ".", ":",
];

/// Splits `source` into statements of tokens: a new statement at each line end outside
/// brackets. An indented first line of a statement is a block, which the subset lacks.
fn statements(source: &str) -> Result<Vec<Statement>, Unsupported> {
    let mut out = Vec::new();
    let mut current: Option<Statement> = None;
    let mut depth = 0usize;
    for (index, text) in source.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| Unsupported { line, message };
        let mut chars = text.char_indices().peekable();
        if current.is_none() {
            let indented = text.starts_with([' ', '\t']);
            let blank = text.trim().is_empty() || text.trim_start().starts_with('#');
            if indented && !blank {
                return Err(err(
                    "an indented block (only straight-line code runs)".into()
                ));
            }
        }
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
                        return Err(err(
                            "a block statement (if, for, def, …): only straight-line code runs"
                                .into(),
                        ))
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
        assert_eq!(run("x = 1").unwrap().answer("answer"), None);
    }

    #[test]
    fn what_the_subset_lacks_is_refused_with_its_line() {
        let cases = [
            ("x = 1\nif x > 0:\n    x = 2", 2, "block statement"),
            ("for i in range(3):\n    pass", 1, "block statement"),
            ("x = 1\n    y = 2", 2, "indented"),
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
