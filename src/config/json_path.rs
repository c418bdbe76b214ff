//! The JSON paths of a rollout's shadow comparison: parsing the `ignore:` paths (`$.a.b`,
//! `$.a[0]`, `$.a[*].b`, `$['odd key']`, a subset of RFC 9535's JSONPath), writing the paths of
//! differences in the same notation, and which child of a document a path's step selects. Here
//! at the ground floor so that the config checks paths as the comparison
//! (`request::shadow_compare`) reads them.

use std::fmt;

/// Steps a path may have: a document parsed by serde_json is at most 128 levels deep, so a
/// longer path could never match anything.
const MAX_STEPS: usize = 128;

/// A JSON path of `ignore:`: `$`, then steps: `.name` or `['any key']` (a member), `[N]` (an
/// array element), `[*]` or `.*` (every member or element). `$` alone (the whole body) is not a
/// path here: a comparison that ignores the whole body is `body: none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(pub Vec<Step>);

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The member of that name.
    Key(String),
    /// The array element at that index (from 0).
    Index(usize),
    /// Every member of an object, every element of an array.
    Any,
}

/// Where a value sits in its parent: a member's key or an element's index.
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    /// A member, by its key.
    Key(&'a str),
    /// An element, by its index.
    Index(usize),
}

impl Step {
    /// Whether this step selects the child at `at`.
    pub fn selects(&self, at: At<'_>) -> bool {
        match (self, at) {
            (Step::Any, _) => true,
            (Step::Key(key), At::Key(name)) => key == name,
            (Step::Index(index), At::Index(i)) => *index == i,
            _ => false,
        }
    }
}

impl JsonPath {
    /// Parses `text`; the error is one line naming the text and what is wrong with it.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let steps = Parser { text, pos: 0 }
            .steps()
            .map_err(|what| format!("JSON path {text:?}: {what}"))?;
        Ok(JsonPath(steps))
    }

    /// The steps after `$`.
    pub fn steps(&self) -> &[Step] {
        &self.0
    }
}

impl fmt::Display for JsonPath {
    /// The path as [`JsonPath::parse`] reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for step in &self.0 {
            match step {
                Step::Key(key) => write_key(f, key)?,
                Step::Index(i) => write!(f, "[{i}]")?,
                Step::Any => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}

/// `$.items[2].price`: the path of a value in a document, as the differences report it.
pub fn write_path(path: &[At<'_>]) -> String {
    let mut out = String::from("$");
    for at in path {
        // Writing to a String cannot fail.
        let _ = match at {
            At::Key(key) => write_key(&mut out, key),
            At::Index(i) => fmt::Write::write_fmt(&mut out, format_args!("[{i}]")),
        };
    }
    out
}

/// `.name` when the key is a plain name, else `['key']` with `\`, `'` and control characters
/// escaped (as [`JsonPath::parse`] reads them).
fn write_key(out: &mut impl fmt::Write, key: &str) -> fmt::Result {
    let mut chars = key.chars();
    let plain = chars
        .next()
        .is_some_and(|c| name_char(c) && !c.is_ascii_digit() && c != '-')
        && chars.all(name_char);
    if plain {
        return write!(out, ".{key}");
    }
    out.write_str("['")?;
    for c in key.chars() {
        match c {
            '\\' | '\'' => write!(out, "\\{c}")?,
            c if c.is_control() => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_str("']")
}

/// The characters of a `.name` step: ASCII letters and digits, `_`, `-`, and any non-ASCII
/// character except controls.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || (!c.is_ascii() && !c.is_control())
}

/// Reads a path's text step by step; errors say what is wrong and at which byte.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text.get(self.pos..)?.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// `c` next, or an error saying what `after` needs.
    fn expect(&mut self, c: char, after: &str) -> Result<(), String> {
        match self.bump() {
            Some(got) if got == c => Ok(()),
            Some(got) => Err(format!(
                "{after} needs '{c}' at byte {}, not {got:?}",
                self.pos - got.len_utf8()
            )),
            None => Err(format!("{after} needs '{c}' at byte {}, the path ends", self.pos)),
        }
    }

    fn steps(mut self) -> Result<Vec<Step>, String> {
        if self.bump() != Some('$') {
            return Err("a path starts with '$'".to_string());
        }
        let mut steps = Vec::new();
        while let Some(c) = self.bump() {
            let step = match c {
                '.' => self.dotted()?,
                '[' => self.bracketed()?,
                c => return Err(format!("{c:?} at byte {} is not '.' or '['", self.pos - c.len_utf8())),
            };
            steps.push(step);
        }
        if steps.is_empty() {
            return Err("'$' alone is the whole body; to leave bodies out, write body: none".to_string());
        }
        if steps.len() > MAX_STEPS {
            return Err(format!("more than {MAX_STEPS} steps; no JSON document is that deep"));
        }
        Ok(steps)
    }

    /// After `.`: `*` or a name.
    fn dotted(&mut self) -> Result<Step, String> {
        let start = self.pos;
        match self.peek() {
            Some('*') => {
                self.bump();
                return Ok(Step::Any);
            }
            Some('.') => return Err(format!("'..' at byte {} (descendants) is not supported", start - 1)),
            _ => {}
        }
        while self.peek().is_some_and(name_char) {
            self.bump();
        }
        if self.pos == start {
            let what = self.peek().map_or("the end".to_string(), |c| format!("{c:?}"));
            return Err(format!(
                "'.' at byte {} needs a name (letters, digits, '_', '-'), not {what}; write ['...'] for other keys",
                start - 1
            ));
        }
        Ok(Step::Key(self.text[start..self.pos].to_string()))
    }

    /// After `[`: `*]`, `N]` or a quoted key and `]`.
    fn bracketed(&mut self) -> Result<Step, String> {
        let open = self.pos - 1;
        let step = match self.peek() {
            Some('*') => {
                self.bump();
                Step::Any
            }
            Some(q @ ('\'' | '"')) => {
                self.bump();
                Step::Key(self.quoted(q, open)?)
            }
            Some(c) if c.is_ascii_digit() => Step::Index(self.index()?),
            Some('-') => return Err(format!("'[-' at byte {open}: negative indexes are not supported")),
            _ => return Err(format!("'[' at byte {open} needs an index, '*' or a quoted key")),
        };
        self.expect(']', &format!("'[' at byte {open}"))?;
        Ok(step)
    }

    fn index(&mut self) -> Result<usize, String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let digits = &self.text[start..self.pos];
        digits
            .parse()
            .map_err(|_| format!("index {digits} at byte {start} is too large"))
    }

    /// A key up to the closing `quote`, with the escapes `\\`, `\'`, `\"`, `\/`, `\b`, `\f`,
    /// `\n`, `\r`, `\t` and `\uXXXX` (RFC 9535's, surrogates excepted).
    fn quoted(&mut self, quote: char, open: usize) -> Result<String, String> {
        let mut key = String::new();
        loop {
            match self.bump() {
                None => return Err(format!("the quoted key of '[' at byte {open} is not closed")),
                Some(c) if c == quote => return Ok(key),
                Some('\\') => key.push(self.escape()?),
                Some(c) => key.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        let at = self.pos - 1;
        let c = match self.bump() {
            Some(c @ ('\\' | '\'' | '"' | '/')) => c,
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => return self.unicode(at),
            _ => {
                return Err(format!(
                    "the escape at byte {at} is not one of \\\\ \\' \\\" \\/ \\b \\f \\n \\r \\t \\uXXXX"
                ))
            }
        };
        Ok(c)
    }

    /// The four hex digits of `\uXXXX` (escape at byte `at`).
    fn unicode(&mut self, at: usize) -> Result<char, String> {
        let hex = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let code = hex.and_then(|h| u32::from_str_radix(h, 16).ok());
        match code.and_then(char::from_u32) {
            Some(c) => {
                self.pos += 4;
                Ok(c)
            }
            None => Err(format!(
                "the escape at byte {at} needs four hex digits of a character (not a surrogate)"
            )),
        }
    }
}
