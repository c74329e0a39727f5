//! The predicate language of `podkit source filter --where`: a small expression over an
//! item, true to keep it.
//!
//! ```text
//! data.size > 1000 && data.path ~ "\.mp4$"
//! name != "skip-me" || (data.tags[0] == "urgent" && !data.done)
//! ```
//!
//! - values: `name` (the item's name), `data` and paths into it (`data.a.b`, `data.list[2]`),
//!   strings in double quotes (with `\"` and `\\`), numbers, `true`, `false`, `null`;
//! - comparisons: `==`, `!=`, `<`, `<=`, `>`, `>=` (numbers with numbers, strings with
//!   strings; otherwise false, except `==`/`!=` which compare any JSON values), and `~`
//!   (the left side, a string, matches the regular expression on the right);
//! - `!`, `&&`, `||` and parentheses; a bare value is true unless it is `false`, `null`,
//!   missing, `0` or `""`.
//!
//! A missing path is `null`. Parse errors name the column.

use serde_json::Value;

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(Box<Expr>, Op, Box<Expr>),
    Matches(Box<Expr>, regex::Regex),
    Path(Vec<Step>),
    Literal(Value),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One step of a path: `.field` or `[index]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Name,
    Data,
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(f64),
    Op(&'static str),
    Dot,
    LBracket,
    RBracket,
    LParen,
    RParen,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((column, Token::Ident(chars[start..i].iter().collect())));
            continue;
        }
        if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || matches!(chars[i], 'e' | 'E')
                    || (matches!(chars[i], '-' | '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            let number = literal
                .parse::<f64>()
                .map_err(|_| format!("column {column}: '{literal}' is not a number"))?;
            tokens.push((column, Token::Num(number)));
            continue;
        }
        if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("column {column}: unclosed string")),
                    Some('"') => break,
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(&e @ ('"' | '\\')) => s.push(e),
                            // Other escapes are kept for the regular expression.
                            Some(&e) => {
                                s.push('\\');
                                s.push(e);
                            }
                            None => return Err(format!("column {column}: unclosed string")),
                        }
                        i += 2;
                    }
                    Some(&other) => {
                        s.push(other);
                        i += 1;
                    }
                }
            }
            i += 1;
            tokens.push((column, Token::Str(s)));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = ["&&", "||", "==", "!=", "<=", ">="]
            .into_iter()
            .find(|op| two == *op);
        if let Some(op) = op {
            tokens.push((column, Token::Op(op)));
            i += 2;
            continue;
        }
        let token = match c {
            '<' => Token::Op("<"),
            '>' => Token::Op(">"),
            '!' => Token::Op("!"),
            '~' => Token::Op("~"),
            '.' => Token::Dot,
            '[' => Token::LBracket,
            ']' => Token::RBracket,
            '(' => Token::LParen,
            ')' => Token::RParen,
            other => return Err(format!("column {column}: unexpected '{other}'")),
        };
        tokens.push((column, token));
        i += 1;
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(c, _)| *c)
    }

    fn error<T>(&self, expected: &str) -> Result<T, String> {
        match self.tokens.get(self.at) {
            Some((column, token)) => Err(format!(
                "column {column}: expected {expected}, found {}",
                describe(token)
            )),
            None => Err(format!(
                "column {}: expected {expected}, found the end",
                self.end
            )),
        }
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.peek()
            == Some(&Token::Op(match op {
                "&&" => "&&",
                "||" => "||",
                "!" => "!",
                _ => return false,
            }))
        {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat_op("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.eat_op("&&") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.eat_op("!") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let left = self.value()?;
        let op = match self.peek() {
            Some(Token::Op("==")) => Op::Eq,
            Some(Token::Op("!=")) => Op::Ne,
            Some(Token::Op("<")) => Op::Lt,
            Some(Token::Op("<=")) => Op::Le,
            Some(Token::Op(">")) => Op::Gt,
            Some(Token::Op(">=")) => Op::Ge,
            Some(Token::Op("~")) => {
                self.at += 1;
                let column = self.column();
                let Some(Token::Str(pattern)) = self.peek().cloned() else {
                    return self.error("a regular expression in double quotes after '~'");
                };
                self.at += 1;
                let regex = regex::Regex::new(&pattern).map_err(|e| {
                    format!(
                        "column {column}: bad regular expression: {}",
                        e.to_string().lines().last().unwrap_or("")
                    )
                })?;
                return Ok(Expr::Matches(Box::new(left), regex));
            }
            _ => return Ok(left),
        };
        self.at += 1;
        let right = self.value()?;
        Ok(Expr::Compare(Box::new(left), op, Box::new(right)))
    }

    fn value(&mut self) -> Result<Expr, String> {
        let Some(token) = self.peek().cloned() else {
            return self.error("a value");
        };
        self.at += 1;
        Ok(match token {
            Token::Str(s) => Expr::Literal(Value::String(s)),
            Token::Num(n) => {
                Expr::Literal(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
            }
            Token::LParen => {
                let inner = self.or()?;
                if self.peek() != Some(&Token::RParen) {
                    return self.error("')'");
                }
                self.at += 1;
                inner
            }
            Token::Ident(word) => match word.as_str() {
                "true" => Expr::Literal(Value::Bool(true)),
                "false" => Expr::Literal(Value::Bool(false)),
                "null" => Expr::Literal(Value::Null),
                "name" => Expr::Path(vec![Step::Name]),
                "data" => self.path()?,
                other => {
                    self.at -= 1;
                    return Err(format!(
                        "column {}: unknown word '{other}' (paths start with data or name)",
                        self.column()
                    ));
                }
            },
            _ => {
                self.at -= 1;
                return self.error("a value");
            }
        })
    }

    fn path(&mut self) -> Result<Expr, String> {
        let mut steps = vec![Step::Data];
        loop {
            match self.peek() {
                Some(Token::Dot) => {
                    self.at += 1;
                    match self.peek().cloned() {
                        Some(Token::Ident(field)) => {
                            self.at += 1;
                            steps.push(Step::Field(field));
                        }
                        Some(Token::Str(field)) => {
                            self.at += 1;
                            steps.push(Step::Field(field));
                        }
                        _ => return self.error("a field name after '.'"),
                    }
                }
                Some(Token::LBracket) => {
                    self.at += 1;
                    let index = match self.peek() {
                        Some(Token::Num(n)) if *n >= 0.0 && n.fract() == 0.0 => *n as usize,
                        _ => return self.error("an index (0, 1, ...)"),
                    };
                    self.at += 1;
                    if self.peek() != Some(&Token::RBracket) {
                        return self.error("']'");
                    }
                    self.at += 1;
                    steps.push(Step::Index(index));
                }
                _ => return Ok(Expr::Path(steps)),
            }
        }
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Ident(w) => format!("'{w}'"),
        Token::Str(s) => format!("\"{s}\""),
        Token::Num(n) => n.to_string(),
        Token::Op(op) => format!("'{op}'"),
        Token::Dot => "'.'".into(),
        Token::LBracket => "'['".into(),
        Token::RBracket => "']'".into(),
        Token::LParen => "'('".into(),
        Token::RParen => "')'".into(),
    }
}

impl Expr {
    /// Parses `text`; the error names the column.
    pub fn parse(text: &str) -> Result<Expr, String> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            tokens,
            at: 0,
            end: text.chars().count() + 1,
        };
        let expr = parser.or()?;
        if parser.at < parser.tokens.len() {
            return parser.error("'&&', '||' or the end");
        }
        Ok(expr)
    }

    /// Whether the item `name` with `data` is kept.
    pub fn keeps(&self, name: &str, data: &Value) -> bool {
        truthy(&self.eval(name, data))
    }

    fn eval(&self, name: &str, data: &Value) -> Value {
        match self {
            Expr::Or(a, b) => Value::Bool(a.keeps(name, data) || b.keeps(name, data)),
            Expr::And(a, b) => Value::Bool(a.keeps(name, data) && b.keeps(name, data)),
            Expr::Not(a) => Value::Bool(!a.keeps(name, data)),
            Expr::Matches(a, regex) => match a.eval(name, data) {
                Value::String(s) => Value::Bool(regex.is_match(&s)),
                _ => Value::Bool(false),
            },
            Expr::Compare(a, op, b) => {
                Value::Bool(compare(&a.eval(name, data), *op, &b.eval(name, data)))
            }
            Expr::Literal(v) => v.clone(),
            Expr::Path(steps) => {
                let mut current = Value::Null;
                for step in steps {
                    current = match step {
                        Step::Name => Value::String(name.to_string()),
                        Step::Data => data.clone(),
                        Step::Field(f) => current.get(f).cloned().unwrap_or(Value::Null),
                        Step::Index(i) => current.get(i).cloned().unwrap_or(Value::Null),
                    };
                }
                current
            }
        }
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn compare(a: &Value, op: Op, b: &Value) -> bool {
    let ordering = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match op {
        Op::Eq => ordering.map_or(a == b, |o| o.is_eq()),
        Op::Ne => ordering.map_or(a != b, |o| o.is_ne()),
        Op::Lt => ordering.is_some_and(|o| o.is_lt()),
        Op::Le => ordering.is_some_and(|o| o.is_le()),
        Op::Gt => ordering.is_some_and(|o| o.is_gt()),
        Op::Ge => ordering.is_some_and(|o| o.is_ge()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keeps(expr: &str, name: &str, data: Value) -> bool {
        Expr::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .keeps(name, &data)
    }

    #[test]
    fn the_documented_example() {
        let expr = r#"data.size > 1000 && data.path ~ "\.mp4$""#;
        assert!(keeps(expr, "a", json!({"size": 2000, "path": "/v/a.mp4"})));
        assert!(!keeps(expr, "a", json!({"size": 20, "path": "/v/a.mp4"})));
        assert!(!keeps(
            expr,
            "a",
            json!({"size": 2000, "path": "/v/a.mp4.part"})
        ));
        assert!(!keeps(expr, "a", json!({})), "missing fields are null");
    }

    #[test]
    fn operators_paths_and_precedence() {
        let data = json!({"tags": ["urgent", "x"], "n": 3, "done": false, "o": {"k": "v"}});
        assert!(keeps(r#"data.tags[0] == "urgent""#, "i", data.clone()));
        assert!(keeps(r#"data.tags[5] == null"#, "i", data.clone()));
        assert!(keeps("!data.done", "i", data.clone()));
        assert!(keeps(
            "data.n >= 3 && data.n <= 3 && data.n != 4",
            "i",
            data.clone()
        ));
        assert!(keeps(
            r#"name == "skip" || data.o.k == "v""#,
            "i",
            data.clone()
        ));
        assert!(
            keeps("true || false && false", "i", data.clone()),
            "&& binds tighter"
        );
        assert!(!keeps("(true || false) && false", "i", data.clone()));
        assert!(
            !keeps(r#"data.n > "2""#, "i", data.clone()),
            "no number-string order"
        );
        assert!(keeps(r#"name ~ "^it""#, "item-1", data.clone()));
        assert!(keeps("data.n == 3.0 && -1 < 0", "i", data.clone()));
        assert!(keeps(
            "data.n > 1e-3 && data.n < 3E2 && data.n == 0.3e+1",
            "i",
            data.clone()
        ));
        assert!(keeps(
            r#"data.o == data.o && data.tags != data.o"#,
            "i",
            data
        ));
    }

    #[test]
    fn errors_name_the_column() {
        for (text, message) in [
            ("data.size >", "column 12: expected a value, found the end"),
            (
                "data.size > 1 &&",
                "column 17: expected a value, found the end",
            ),
            (
                "size > 1",
                "column 1: unknown word 'size' (paths start with data or name)",
            ),
            (
                "data.x ~ 3",
                "column 10: expected a regular expression in double quotes after '~', found 3",
            ),
            (r#"data.x ~ "(""#, "column 10: bad regular expression"),
            ("data.x == \"a", "column 11: unclosed string"),
            ("(data.x", "column 8: expected ')', found the end"),
            (
                "data.x 3",
                "column 8: expected '&&', '||' or the end, found 3",
            ),
            ("data.x # 3", "column 8: unexpected '#'"),
            (
                "data[x]",
                "column 6: expected an index (0, 1, ...), found 'x'",
            ),
        ] {
            let err = Expr::parse(text).unwrap_err();
            assert!(err.starts_with(message), "{text}: {err}");
        }
    }
}
