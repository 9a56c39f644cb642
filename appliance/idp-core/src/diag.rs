//! Diagnostics for user input: where a problem is (file, line, column, key path),
//! what was found, what was expected, and how to fix it.

use std::fmt;

/// Where an input came from: a file, an environment variable, a command-line flag
/// or an embedded asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk or an embedded file, by the name shown to the user.
    File(String),
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, by name.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(name) => f.write_str(name),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// One precise problem with the user's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The input the problem is in.
    pub origin: Origin,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// Dotted key path, e.g. `network.https_port`; empty for syntax errors.
    pub path: String,
    /// What is wrong, e.g. `unknown key` or `expected an integer, found a string`.
    pub message: String,
    /// How to fix it, if there is a useful hint.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  help: {hint}")?;
        }
        Ok(())
    }
}

/// Converts a byte offset into a 1-based (line, column) pair, columns counted in characters.
/// Offsets past the end point just after the last character.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Suggests the closest candidate to `word` when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let distance = edit_distance(word, candidate);
        let limit = (candidate.chars().count().max(word.chars().count()) / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// An error and its causes on one line, `effect: cause: cause`, leaving out a cause
/// that is empty or that its effect already quotes (many errors embed their source).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn chains_name_every_new_cause_once() {
        let leaf = E("connection refused", None);
        assert_eq!(chain(&E("cannot reach 10.0.0.1:5000", Some(Box::new(leaf)))), "cannot reach 10.0.0.1:5000: connection refused");
        // A cause the effect already quotes, and an empty one, are left out; later ones stay.
        let deep =
            E("read failed: timed out", Some(Box::new(E("timed out", Some(Box::new(E("", Some(Box::new(E("os error 110", None))))))))));
        assert_eq!(chain(&E("fetch x", Some(Box::new(deep)))), "fetch x: read failed: timed out: os error 110");
        assert_eq!(chain(&E("alone", None)), "alone");
    }
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 9), (2, 4));
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn line_col_is_safe_inside_multibyte_chars() {
        let text = "é = 1";
        assert_eq!(line_col(text, 1), (1, 1));
        assert_eq!(line_col(text, 2), (1, 2));
    }

    #[test]
    fn suggests_close_keys_only() {
        let keys = ["image", "agents", "servers"];
        assert_eq!(did_you_mean("imagee", keys), Some("image"));
        assert_eq!(did_you_mean("agnets", keys), Some("agents"));
        assert_eq!(did_you_mean("kubeconfig", keys), None);
    }
}
