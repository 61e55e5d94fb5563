//! A small JSONPath evaluator covering what CRD `additionalPrinterColumns` use, with the
//! semantics of Kubernetes' `k8s.io/client-go/util/jsonpath` where they matter for tables:
//! missing keys yield no result rather than an error.
//!
//! Supported: `.field`, `['field']`, escaped dots in field names (`.labels.app\.kubernetes\.io/name`),
//! `[n]` and negative indexes, slices `[a:b:step]`, wildcards `.*` and `[*]`, recursive
//! descent `..field`, and filters `[?(@.path)]`, `[?(@.path == "x")]` with `==`, `!=`, `<`,
//! `<=`, `>`, `>=` against string, number, boolean or `@.path` operands. An expression may be
//! wrapped in `{}` as kubectl writes it.

use serde_json::Value;
use thiserror::Error;

/// A JSONPath expression that could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JsonPathError {
    /// The expression is malformed at the given byte offset.
    #[error("invalid jsonpath {path:?} at offset {offset}: {reason}")]
    Syntax {
        /// The expression as given.
        path: String,
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// One step of a parsed path.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// A map key.
    Field(String),
    /// Every element of an array or value of a map.
    Wildcard,
    /// The node and all its descendants (what follows `..`).
    Recursive,
    /// One array element; negative counts from the end.
    Index(i64),
    /// `[start:end:step]`.
    Slice(Option<i64>, Option<i64>, Option<i64>),
    /// `[?(...)]`.
    Filter(Box<Filter>),
}

/// A filter condition.
#[derive(Clone, Debug, PartialEq)]
struct Filter {
    left: Operand,
    /// `None` for an existence test (`[?(@.x)]`).
    cmp: Option<(Op, Operand)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
enum Operand {
    /// A path relative to the current element (`@...`).
    Path(Vec<Step>),
    /// A literal value.
    Literal(Value),
}

/// A parsed JSONPath expression.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `.spec.replicas` or `{.spec.replicas}`.
    pub fn parse(expr: &str) -> Result<Self, JsonPathError> {
        let trimmed = expr.trim();
        let inner = match trimmed.strip_prefix('{') {
            Some(rest) => rest
                .strip_suffix('}')
                .ok_or_else(|| JsonPathError::Syntax {
                    path: expr.to_string(),
                    offset: trimmed.len(),
                    reason: "unclosed '{'",
                })?,
            None => trimmed,
        };
        let mut p = Parser {
            src: inner,
            pos: 0,
            whole: expr,
        };
        let steps = p.steps(false)?;
        if p.pos != inner.len() {
            return Err(p.err("unexpected character"));
        }
        Ok(Self { steps })
    }

    /// Every value the path selects in `root`, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        eval(&self.steps, vec![root])
    }
}

struct Parser<'s> {
    src: &'s str,
    pos: usize,
    whole: &'s str,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> JsonPathError {
        JsonPathError::Syntax {
            path: self.whole.to_string(),
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.src[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        // Advance by the character's UTF-8 width: whitespace such as U+00A0 is several bytes.
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    /// Parses steps until the end, or (inside a filter) until a character that cannot
    /// continue a path.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, JsonPathError> {
        let mut steps = Vec::new();
        // A leading `$` names the root, which is where evaluation starts anyway.
        if !in_filter {
            self.eat("$");
        }
        loop {
            match self.peek() {
                None => break,
                Some('.') => {
                    if self.eat("..") {
                        // `a....b` means the same as `a..b`: one descent, not one per dot pair
                        // (repeated descents multiply results without bound).
                        if steps.last() != Some(&Step::Recursive) {
                            steps.push(Step::Recursive);
                        }
                        if self.peek() == Some('[') {
                            continue;
                        }
                    } else {
                        self.pos += 1;
                    }
                    if self.eat("*") {
                        steps.push(Step::Wildcard);
                    } else {
                        let f = self.field()?;
                        // `.` alone (the current node) adds nothing.
                        if !f.is_empty() {
                            steps.push(Step::Field(f));
                        }
                    }
                }
                Some('[') => {
                    self.pos += 1;
                    steps.push(self.bracket()?);
                }
                Some(_) if in_filter => break,
                Some(_) => return Err(self.err("expected '.' or '['")),
            }
        }
        Ok(steps)
    }

    /// A field name after `.`: up to the next unescaped `.` or `[` (or, in filters, an
    /// operator, space or `)`).
    fn field(&mut self) -> Result<String, JsonPathError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some(n) => {
                            out.push(n);
                            self.pos += n.len_utf8();
                        }
                        None => return Err(self.err("dangling escape")),
                    }
                }
                '.' | '[' | ']' | ')' | ' ' | '=' | '!' | '<' | '>' | ',' => break,
                _ => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
        Ok(out)
    }

    /// The inside of `[...]`, consuming the closing bracket.
    fn bracket(&mut self) -> Result<Step, JsonPathError> {
        self.skip_ws();
        let step = if self.eat("*") {
            Step::Wildcard
        } else if self.eat("?(") {
            let f = self.filter()?;
            self.skip_ws();
            if !self.eat(")") {
                return Err(self.err("expected ')' closing the filter"));
            }
            Step::Filter(Box::new(f))
        } else if matches!(self.peek(), Some('\'') | Some('"')) {
            match self.literal()? {
                Value::String(s) => Step::Field(s),
                _ => return Err(self.err("expected a quoted key")),
            }
        } else {
            self.index_or_slice()?
        };
        self.skip_ws();
        if !self.eat("]") {
            return Err(self.err("expected ']'"));
        }
        Ok(step)
    }

    fn int(&mut self) -> Result<Option<i64>, JsonPathError> {
        self.skip_ws();
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let s = &self.src[start..self.pos];
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| self.err("invalid array index"))
    }

    fn index_or_slice(&mut self) -> Result<Step, JsonPathError> {
        let first = self.int()?;
        self.skip_ws();
        if !self.eat(":") {
            return first
                .map(Step::Index)
                .ok_or_else(|| self.err("expected an array index"));
        }
        let end = self.int()?;
        self.skip_ws();
        let step = if self.eat(":") { self.int()? } else { None };
        Ok(Step::Slice(first, end, step))
    }

    fn filter(&mut self) -> Result<Filter, JsonPathError> {
        let left = self.operand()?;
        self.skip_ws();
        let op = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find(|(s, _)| self.src[self.pos..].starts_with(s))
        .copied();
        let cmp = match op {
            Some((s, op)) => {
                self.pos += s.len();
                Some((op, self.operand()?))
            }
            None => None,
        };
        Ok(Filter { left, cmp })
    }

    fn operand(&mut self) -> Result<Operand, JsonPathError> {
        self.skip_ws();
        if self.eat("@") {
            return Ok(Operand::Path(self.steps(true)?));
        }
        Ok(Operand::Literal(self.literal()?))
    }

    /// A quoted string, number, `true`, `false` or `null`.
    fn literal(&mut self) -> Result<Value, JsonPathError> {
        self.skip_ws();
        match self.peek() {
            Some(q @ ('\'' | '"')) => {
                self.pos += 1;
                let mut out = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated string")),
                        Some('\\') => {
                            self.pos += 1;
                            let Some(n) = self.peek() else {
                                return Err(self.err("dangling escape"));
                            };
                            out.push(n);
                            self.pos += n.len_utf8();
                        }
                        Some(c) if c == q => {
                            self.pos += 1;
                            return Ok(Value::String(out));
                        }
                        Some(c) => {
                            out.push(c);
                            self.pos += c.len_utf8();
                        }
                    }
                }
            }
            _ => {
                for (word, v) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.eat(word) {
                        return Ok(v);
                    }
                }
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
                {
                    self.pos += 1;
                }
                let s = &self.src[start..self.pos];
                if let Ok(i) = s.parse::<i64>() {
                    return Ok(Value::from(i));
                }
                s.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| self.err("expected a literal"))
            }
        }
    }
}

/// Applies steps to a set of nodes.
fn eval<'a>(steps: &[Step], mut nodes: Vec<&'a Value>) -> Vec<&'a Value> {
    for step in steps {
        let mut next = Vec::new();
        for node in nodes {
            apply(step, node, &mut next);
        }
        if *step == Step::Recursive {
            // Descendant sets of nested nodes overlap: keep each node once.
            let mut seen = std::collections::HashSet::new();
            next.retain(|v| seen.insert(*v as *const Value));
        }
        nodes = next;
    }
    nodes
}

fn apply<'a>(step: &Step, node: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Field(f) => {
            if let Some(v) = node.as_object().and_then(|m| m.get(f)) {
                out.push(v);
            }
        }
        Step::Wildcard => match node {
            Value::Array(a) => out.extend(a.iter()),
            Value::Object(m) => out.extend(m.values()),
            _ => {}
        },
        Step::Recursive => descendants(node, out),
        Step::Index(i) => {
            if let Some(a) = node.as_array() {
                let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                if idx >= 0 {
                    if let Some(v) = a.get(idx as usize) {
                        out.push(v);
                    }
                }
            }
        }
        Step::Slice(start, end, step) => {
            if let Some(a) = node.as_array() {
                let len = a.len() as i64;
                let clamp = |v: i64| if v < 0 { (len + v).max(0) } else { v.min(len) };
                let s = clamp(start.unwrap_or(0));
                let e = clamp(end.unwrap_or(len));
                let st = step.unwrap_or(1).max(1);
                let mut i = s;
                while i < e {
                    out.push(&a[i as usize]);
                    i += st;
                }
            }
        }
        Step::Filter(f) => {
            let items: Vec<&Value> = match node {
                Value::Array(a) => a.iter().collect(),
                Value::Object(m) => m.values().collect(),
                _ => Vec::new(),
            };
            out.extend(items.into_iter().filter(|item| matches(f, item)));
        }
    }
}

/// The node itself and every value below it, depth first.
fn descendants<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    match node {
        Value::Array(a) => a.iter().for_each(|v| descendants(v, out)),
        Value::Object(m) => m.values().for_each(|v| descendants(v, out)),
        _ => {}
    }
}

fn operand_values<'a>(op: &'a Operand, item: &'a Value) -> Vec<&'a Value> {
    match op {
        Operand::Path(steps) => eval(steps, vec![item]),
        Operand::Literal(v) => vec![v],
    }
}

fn matches(f: &Filter, item: &Value) -> bool {
    let left = operand_values(&f.left, item);
    let Some((op, right)) = &f.cmp else {
        return !left.is_empty();
    };
    let right = operand_values(right, item);
    let (Some(l), Some(r)) = (left.first(), right.first()) else {
        return false;
    };
    compare(l, *op, r)
}

fn compare(l: &Value, op: Op, r: &Value) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (l, r) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ord) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        // Values of different types are simply unequal.
        (Op::Ne, None) => true,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find(path: &str, v: &Value) -> Vec<Value> {
        JsonPath::parse(path)
            .unwrap()
            .find(v)
            .into_iter()
            .cloned()
            .collect()
    }

    fn doc() -> Value {
        json!({
            "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "web", "foo": "bar"}},
            "spec": {"replicas": 3, "ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                {"type": "Synced", "status": "False"}
            ]}
        })
    }

    #[test]
    fn fields_and_indexes() {
        let d = doc();
        assert_eq!(find(".spec.replicas", &d), vec![json!(3)]);
        assert_eq!(find("{.spec.replicas}", &d), vec![json!(3)]);
        assert_eq!(find("$.spec.replicas", &d), vec![json!(3)]);
        assert_eq!(find(".metadata.labels.foo", &d), vec![json!("bar")]);
        assert_eq!(
            find(r".metadata.labels.app\.kubernetes\.io/name", &d),
            vec![json!("web")]
        );
        assert_eq!(
            find(".metadata.labels['app.kubernetes.io/name']", &d),
            vec![json!("web")]
        );
        assert_eq!(find(".spec.ports[1].port", &d), vec![json!(443)]);
        assert_eq!(find(".spec.ports[-1].name", &d), vec![json!("https")]);
        assert_eq!(find(".spec.ports[*].port", &d), vec![json!(80), json!(443)]);
        assert_eq!(find(".spec.ports[0:1].port", &d), vec![json!(80)]);
        assert_eq!(find(".spec.ports[5].port", &d), Vec::<Value>::new());
        assert_eq!(find(".spec.missing.deeper", &d), Vec::<Value>::new());
        assert_eq!(find("..port", &d), vec![json!(80), json!(443)]);
        assert_eq!(
            find(".metadata.labels.*", &d),
            vec![json!("web"), json!("bar")]
        );
    }

    #[test]
    fn filters() {
        let d = doc();
        assert_eq!(
            find(r#".status.conditions[?(@.type=="Ready")].status"#, &d),
            vec![json!("True")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type == 'Synced')].status", &d),
            vec![json!("False")]
        );
        assert_eq!(
            find(r#".status.conditions[?(@.type!="Ready")].type"#, &d),
            vec![json!("Synced")]
        );
        assert_eq!(
            find(".status.conditions[?(@.lastTransitionTime)].type", &d),
            vec![json!("Ready")]
        );
        assert_eq!(
            find(".spec.ports[?(@.port > 100)].name", &d),
            vec![json!("https")]
        );
        assert_eq!(
            find(".spec.ports[?(@.port <= 80)].name", &d),
            vec![json!("http")]
        );
        assert_eq!(
            find(r#".status.conditions[?(@.type=="Nope")].status"#, &d),
            Vec::<Value>::new()
        );
    }

    #[test]
    fn syntax_errors() {
        assert!(JsonPath::parse(".spec[").is_err());
        assert!(JsonPath::parse("{.spec").is_err());
        assert!(JsonPath::parse(".a[?(@.b == )]").is_err());
        assert!(JsonPath::parse(".a['x]").is_err());
        let e = JsonPath::parse("spec").unwrap_err();
        assert!(e.to_string().starts_with("invalid jsonpath"));
    }
}
