//! JSON paths for error messages (`$.cells[3].outputs[0].name`), built on the stack so the
//! happy path allocates nothing.

use std::fmt;

use crate::Error;

#[derive(Clone, Copy, Debug)]
pub(crate) enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl<'a> At<'a> {
    pub(crate) fn key(&'a self, key: &'a str) -> At<'a> {
        At::Key(self, key)
    }

    pub(crate) fn index(&'a self, index: usize) -> At<'a> {
        At::Index(self, index)
    }

    pub(crate) fn error(&self, problem: impl fmt::Display) -> Error {
        Error::InvalidNotebook {
            path: self.to_string(),
            problem: problem.to_string(),
        }
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => f.write_str("$"),
            At::Key(parent, key) => {
                let plain = !key.is_empty()
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !key.starts_with(|c: char| c.is_ascii_digit());
                if plain {
                    write!(f, "{parent}.{key}")
                } else {
                    write!(f, "{parent}[{key:?}]")
                }
            }
            At::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::At;

    #[test]
    fn formats_keys_indices_and_quoted_keys() {
        let root = At::Root;
        let cells = root.key("cells");
        let cell = cells.index(3);
        let data = cell.key("data");
        let mime = data.key("text/plain");
        assert_eq!(root.to_string(), "$");
        assert_eq!(cell.key("source").to_string(), "$.cells[3].source");
        assert_eq!(mime.to_string(), r#"$.cells[3].data["text/plain"]"#);
    }
}
