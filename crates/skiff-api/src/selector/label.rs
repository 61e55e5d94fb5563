//! Label selectors: the query-string grammar (`a=b,c in (x,y),!d`), `metav1.LabelSelector`
//! objects and matching.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde_json::Value;

use super::{aggregate, go_quote, SelectorError};
use crate::validation::names::{is_qualified_name, is_valid_label_value};

/// A requirement operator. `GreaterThan`/`LessThan` exist in the string grammar (`a>1`) and
/// in node affinity, not in `metav1.LabelSelector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key in (a,b)`: the label exists and its value is listed.
    In,
    /// `key notin (a,b)`: the label is absent or its value is not listed.
    NotIn,
    /// `key=a`.
    Equals,
    /// `key==a`, same meaning as `=`, kept to print back the same way.
    DoubleEquals,
    /// `key!=a`: absent or different.
    NotEquals,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label does not exist.
    DoesNotExist,
    /// `key>1`: exists and is an integer greater than the value.
    GreaterThan,
    /// `key<1`: exists and is an integer less than the value.
    LessThan,
}

impl Operator {
    /// Upstream's `selection.Operator` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One clause of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and deduplicated, like upstream's `sets.String`.
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, validating key and values as upstream's `NewRequirement`.
    pub fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        let mut errs = Vec::new();
        for msg in [is_qualified_name(key).join("; ")]
            .into_iter()
            .filter(|m| !m.is_empty())
        {
            errs.push(format!("key: Invalid value: {}: {msg}", go_quote(key)));
        }
        let quoted_list = || {
            format!(
                "[]string{{{}}}",
                values
                    .iter()
                    .map(|v| go_quote(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                quoted_list()
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(format!(
                "values: Invalid value: {}: exact-match compatibility requires one single value",
                quoted_list()
            ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: values set must be empty for exists and does not exist",
                quoted_list()
            )),
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        quoted_list()
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_valid_label_value(v);
            if !msgs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    msgs.join("; ")
                ));
            }
        }
        if !errs.is_empty() {
            return Err(SelectorError::Label(aggregate(&errs)));
        }
        let values: BTreeSet<String> = values.into_iter().collect();
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values: values.into_iter().collect(),
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: &dyn LabelSource) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::NotIn | Operator::NotEquals => {
                !value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(Ok(have)) = value.map(|v| v.parse::<i64>()) else {
                    return false;
                };
                let Some(Ok(want)) = self.values.first().map(|v| v.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in (",
            Operator::NotIn => " notin (",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        f.write_str(&self.values.join(","))?;
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Anything labels can be looked up in.
pub trait LabelSource {
    /// The value of label `key`, if set.
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelSource for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelSource for HashMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A JSON `metadata.labels` map; non-string values are treated as absent.
impl LabelSource for serde_json::Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// A parsed label selector. The default value selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key, as upstream does, so that printing is stable.
    requirements: Vec<Requirement>,
    /// Set for a null `metav1.LabelSelector`, which selects nothing.
    nothing: bool,
}

impl LabelSelector {
    /// Parses the `labelSelector` query-string grammar.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(s);
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = p.parse().map_err(SelectorError::Label)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// The selector that matches every object (an empty selector).
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// The selector that matches no object (a null `metav1.LabelSelector`).
    pub fn nothing() -> LabelSelector {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Equality requirements from a plain map, as used by Service and ReplicationController
    /// selectors (upstream `SelectorFromSet`). Invalid keys or values are an error.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<LabelSelector, SelectorError> {
        let requirements = map
            .iter()
            .map(|(k, v)| Requirement::new(k, Operator::Equals, vec![v.clone()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels` plus `matchExpressions`), as
    /// upstream's `LabelSelectorAsSelector`: null selects nothing, `{}` selects everything.
    pub fn from_json(v: &Value) -> Result<LabelSelector, SelectorError> {
        let obj = match v {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(o) => o,
            _ => {
                return Err(SelectorError::Label(
                    "label selector must be an object".into(),
                ))
            }
        };
        let mut requirements = Vec::new();
        if let Some(ml) = obj.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                let v = v.as_str().unwrap_or_default();
                requirements.push(Requirement::new(k, Operator::Equals, vec![v.to_string()])?);
            }
        }
        if let Some(exprs) = obj.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let op_str = e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let op = match op_str {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => {
                        return Err(SelectorError::Label(format!(
                            "{} is not a valid label selector operator",
                            go_quote(other)
                        )))
                    }
                };
                let values = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| {
                        vs.iter()
                            .map(|v| v.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                requirements.push(Requirement::new(key, op, values)?);
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Whether the selector has no requirements and therefore matches everything. A
    /// "nothing" selector is not empty.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    /// Whether this selects no object at all.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The single value a requirement forces `key` to have, if any (upstream
    /// `RequiresExactMatch`: `=`, `==`, or `in` with one value).
    pub fn exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &dyn LabelSource) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        let empty = serde_json::Map::new();
        let labels = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        self.matches(labels)
    }
}

impl fmt::Display for LabelSelector {
    /// Upstream's `Selector.String()`: requirements joined by commas; nothing prints empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    In,
    NotIn,
    Bang,
    NotEquals,
    Equals,
    DoubleEquals,
    Gt,
    Lt,
    Comma,
    Open,
    Close,
    End,
}

impl Tok {
    /// The literal upstream echoes in "found '...'" messages.
    fn literal(&self) -> &str {
        match self {
            Tok::Ident(s) => s,
            Tok::In => "in",
            Tok::NotIn => "notin",
            Tok::Bang => "!",
            Tok::NotEquals => "!=",
            Tok::Equals => "=",
            Tok::DoubleEquals => "==",
            Tok::Gt => ">",
            Tok::Lt => "<",
            Tok::Comma => ",",
            Tok::Open => "(",
            Tok::Close => ")",
            Tok::End => "",
        }
    }
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn lex(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        // Upstream's lexer reads a NUL byte as end of input.
        if i >= b.len() || b[i] == 0 {
            out.push(Tok::End);
            return out;
        }
        if is_special(b[i]) {
            // Longest match among the symbol tokens; every single symbol is a token.
            let two = b.get(i + 1).copied();
            let (tok, len) = match (b[i], two) {
                (b'!', Some(b'=')) => (Tok::NotEquals, 2),
                (b'=', Some(b'=')) => (Tok::DoubleEquals, 2),
                (b'!', _) => (Tok::Bang, 1),
                (b'=', _) => (Tok::Equals, 1),
                (b'(', _) => (Tok::Open, 1),
                (b')', _) => (Tok::Close, 1),
                (b',', _) => (Tok::Comma, 1),
                (b'>', _) => (Tok::Gt, 1),
                _ => (Tok::Lt, 1),
            };
            out.push(tok);
            i += len;
            continue;
        }
        let start = i;
        while i < b.len() && b[i] != 0 && !is_space(b[i]) && !is_special(b[i]) {
            i += 1;
        }
        let word = &s[start..i];
        out.push(match word {
            "in" => Tok::In,
            "notin" => Tok::NotIn,
            w => Tok::Ident(w.to_string()),
        });
    }
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

/// Upstream's parser contexts: in value position the keywords are plain identifiers.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

impl Parser {
    fn lookahead(&self, ctx: Ctx) -> Tok {
        let t = self.tokens[self.pos.min(self.tokens.len() - 1)].clone();
        match (ctx, t) {
            (Ctx::Values, Tok::In) => Tok::Ident("in".into()),
            (Ctx::Values, Tok::NotIn) => Tok::Ident("notin".into()),
            (_, t) => t,
        }
    }

    fn consume(&mut self, ctx: Ctx) -> Tok {
        let t = self.lookahead(ctx);
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            match self.lookahead(Ctx::Values) {
                Tok::Ident(_) | Tok::Bang => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    match self.consume(Ctx::Values) {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let t = self.lookahead(Ctx::Values);
                            if !matches!(t, Tok::Ident(_) | Tok::Bang) {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                ));
                            }
                        }
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            ))
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    ))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op) = op {
            return Requirement::new(&key, op, Vec::new()).map_err(|e| e.to_string());
        }
        let op = self.parse_operator()?;
        let mut values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        // Upstream collects values in a set and validates them sorted, so error indexes
        // refer to sorted positions.
        values.sort();
        values.dedup();
        Requirement::new(&key, op, values).map_err(|e| e.to_string())
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut tok = self.consume(Ctx::Values);
        let mut op = None;
        if tok == Tok::Bang {
            op = Some(Operator::DoesNotExist);
            tok = self.consume(Ctx::Values);
        }
        let Tok::Ident(key) = tok else {
            return Err(format!("found '{}', expected: identifier", tok.literal()));
        };
        let msgs = is_qualified_name(&key);
        if !msgs.is_empty() {
            // The parser has no field path, which upstream prints as "<nil>".
            return Err(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&key),
                msgs.join("; ")
            ));
        }
        // `!key` is complete on its own; whatever follows is the caller's problem (upstream
        // then reports the next token as unexpected).
        match self.lookahead(Ctx::Values) {
            Tok::End | Tok::Comma => Ok((key, Some(op.unwrap_or(Operator::Exists)))),
            _ => Ok((key, op)),
        }
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        match self.consume(Ctx::KeyAndOperator) {
            Tok::In => Ok(Operator::In),
            Tok::Equals => Ok(Operator::Equals),
            Tok::DoubleEquals => Ok(Operator::DoubleEquals),
            Tok::Gt => Ok(Operator::GreaterThan),
            Tok::Lt => Ok(Operator::LessThan),
            Tok::NotIn => Ok(Operator::NotIn),
            Tok::NotEquals => Ok(Operator::NotEquals),
            t => Err(format!(
                "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                t.literal()
            )),
        }
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let t = self.consume(Ctx::Values);
        if t != Tok::Open {
            return Err(format!("found '{}' expected: '('", t.literal()));
        }
        let t = self.lookahead(Ctx::Values);
        match t {
            Tok::Ident(_) | Tok::Comma => {
                let s = self.parse_identifiers_list()?;
                if self.consume(Ctx::Values) != Tok::Close {
                    // Upstream echoes the token seen before the list, not the offending one.
                    return Err(format!("found '{}', expected: ')'", t.literal()));
                }
                Ok(s)
            }
            Tok::Close => {
                self.consume(Ctx::Values);
                Ok(vec![String::new()])
            }
            t => Err(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            )),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut s: Vec<String> = Vec::new();
        loop {
            match self.consume(Ctx::Values) {
                Tok::Ident(v) => {
                    s.push(v);
                    match self.lookahead(Ctx::Values) {
                        Tok::Comma => continue,
                        Tok::Close => return Ok(s),
                        t => return Err(format!("found '{}', expected: ',' or ')'", t.literal())),
                    }
                }
                Tok::Comma => {
                    // Empty entries such as "(,a)" or "(a,)" stand for the empty value.
                    if s.is_empty() {
                        s.push(String::new());
                    }
                    match self.lookahead(Ctx::Values) {
                        Tok::Close => {
                            s.push(String::new());
                            return Ok(s);
                        }
                        Tok::Comma => {
                            self.consume(Ctx::Values);
                            s.push(String::new());
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    ))
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        match self.lookahead(Ctx::Values) {
            Tok::End | Tok::Comma => return Ok(vec![String::new()]),
            _ => {}
        }
        match self.consume(Ctx::Values) {
            Tok::Ident(v) => Ok(vec![v]),
            t => Err(format!("found '{}', expected: identifier", t.literal())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_and_prints() {
        let cases = [
            ("", ""),
            ("   ", ""),
            ("a=b", "a=b"),
            ("a==b", "a==b"),
            ("a!=b", "a!=b"),
            ("a = b , c", "a=b,c"),
            ("x in (b,a, a)", "x in (a,b)"),
            ("x notin(a)", "x notin (a)"),
            ("!a", "!a"),
            ("b,a", "a,b"),
            ("a=", "a="),
            ("a in (,)", "a in ()"),
            ("a in ()", "a in ()"),
            ("a in (in, notin)", "a in (in,notin)"),
            ("example.com/k=v", "example.com/k=v"),
            ("a>1,b<2", "a>1,b<2"),
            ("a=in", "a=in"),
        ];
        for (input, want) in cases {
            assert_eq!(sel(input).to_string(), want, "input {input:?}");
        }
    }

    #[test]
    fn parse_errors() {
        let err = |s: &str| LabelSelector::parse(s).unwrap_err().to_string();
        assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            err("=a"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("a in b"),
            "unable to parse requirement: found 'b' expected: '('"
        );
        assert_eq!(
            err("a in (b"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(err("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert_eq!(err("a in (b,-x,-a)"), "unable to parse requirement: [values[0][a]: Invalid value: \"-a\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?'), values[1][a]: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')]");
        assert_eq!(
            err("a (b)"),
            "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            err("a=(b)"),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert!(err("a/b/c=d").starts_with("unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of"));
        assert!(err("a=-b").starts_with(
            "unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be an empty string"
        ));
        assert!(err("a>b").contains("for 'Gt', 'Lt' operators, the value must be an integer"));
    }

    #[test]
    fn matching() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        assert!(sel("").matches(&l));
        assert!(sel("app=web").matches(&l));
        assert!(sel("app==web,tier").matches(&l));
        assert!(!sel("app!=web").matches(&l));
        assert!(sel("app!=db").matches(&l));
        assert!(sel("missing!=x").matches(&l));
        assert!(sel("app in (db,web)").matches(&l));
        assert!(!sel("missing in (x)").matches(&l));
        assert!(sel("missing notin (x)").matches(&l));
        assert!(!sel("app notin (web)").matches(&l));
        assert!(sel("!missing").matches(&l));
        assert!(!sel("!app").matches(&l));
        assert!(sel("n>4,n<6").matches(&l));
        assert!(!sel("app>1").matches(&l));
        assert!(sel("missing=").matches(&labels(&[("missing", "")])));
        assert!(!LabelSelector::nothing().matches(&l));
        assert_eq!(sel("a in (x),b=y,c in (p,q)").exact_match("a"), Some("x"));
        assert_eq!(sel("a in (x),b=y,c in (p,q)").exact_match("b"), Some("y"));
        assert_eq!(sel("a in (x),b=y,c in (p,q)").exact_match("c"), None);
    }

    #[test]
    fn from_json_objects() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,legacy,tier in (back,front)".replace("legacy", "!legacy")
        );
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        assert!(s.matches_object(&obj));
        assert!(!s.matches_object(&json!({"metadata": {}})));
        assert!(LabelSelector::from_json(&json!({})).unwrap().is_empty());
        let nothing = LabelSelector::from_json(&Value::Null).unwrap();
        assert!(!nothing.is_empty());
        assert!(!nothing.matches_object(&obj));
        assert_eq!(
            LabelSelector::from_json(
                &json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]})
            )
            .unwrap_err()
            .to_string(),
            "\"Foo\" is not a valid label selector operator"
        );
        assert_eq!(
            LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
                .unwrap_err()
                .to_string(),
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
        );
        let m = labels(&[("a", "b")]);
        assert_eq!(LabelSelector::from_map(&m).unwrap().to_string(), "a=b");
    }
}
