//! Stage 1: gmond.conf text to a schema-free syntax tree with source locations.
//!
//! The grammar is libconfuse's, decided by the token after a name: `=`/`+=` value or `{list}`,
//! `{` section, `NAME TITLE {` titled section, `(args)` function call. Whether a name is
//! allowed where it appears is stage 2's business (the private `resolve` module).

use std::sync::Arc;

use crate::error::{ConfigError, Location};
use crate::lexer::{lex, Pos, Tok, Token};

/// Sections nested deeper than this are refused (gmond's deepest is 4: modules/module/param).
pub const MAX_NESTING: usize = 32;

/// A string token and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned {
    /// The unquoted, unescaped text.
    pub text: String,
    /// Start of the token.
    pub location: Location,
}

/// One statement: `key = value`, `key { ... }`, `key title { ... }` or `key(args)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The name as written (case is kept; matching is case-insensitive).
    pub key: Spanned,
    /// What follows the name.
    pub kind: ItemKind,
}

/// The shape of a statement.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemKind {
    /// `key = value` or, with `append`, `key += value`.
    Assign {
        /// True for `+=` (only valid for list options, which gmond has none of).
        append: bool,
        /// The value.
        value: Value,
    },
    /// `key { ... }` or `key title { ... }`.
    Section {
        /// The title of a titled section (`param NAME { ... }`).
        title: Option<Spanned>,
        /// The statements inside the braces.
        body: Vec<Item>,
    },
    /// `key(arg, ...)`; gmond's only function is `include`.
    Call {
        /// The arguments.
        args: Vec<Spanned>,
    },
}

/// Right-hand side of an assignment.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A single value, quoted or not.
    Scalar(Spanned),
    /// `{a, b, ...}`.
    List(Vec<Spanned>),
}

/// A parsed file: statements plus notes that are not errors.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct File {
    /// Top-level statements in order.
    pub items: Vec<Item>,
    /// Start of a `/*` comment that runs to the end of the file (gmond accepts it).
    pub unterminated_comment: Option<Location>,
}

/// Parses one file's text. `file` names it in locations; `env` answers `${NAME}`.
///
/// Stops at the first syntax error, as libconfuse does: after a syntax error the rest of the
/// file cannot be trusted to mean what its author meant.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<File, ConfigError> {
    let file: Arc<str> = Arc::from(file);
    let lexed = lex(text, env);
    let mut p = Parser {
        tokens: &lexed.tokens,
        i: 0,
        file: file.clone(),
        end: lexed.end,
    };
    let items = p.body(0, None);
    // The lexer stops at its first error, so a parser failure that consumed every token was
    // caused by that error (e.g. "section not closed" after an unterminated string).
    let ran_out = p.i >= lexed.tokens.len();
    match (items, lexed.error) {
        (Err(_), Some((lpos, lmsg))) if ran_out => Err(ConfigError::Syntax {
            location: p.loc(lpos),
            message: lmsg,
        }),
        (Err(e), _) => Err(e),
        (Ok(_), Some((lpos, lmsg))) => Err(ConfigError::Syntax {
            location: p.loc(lpos),
            message: lmsg,
        }),
        (Ok(items), None) => Ok(File {
            items,
            unterminated_comment: lexed.unterminated_comment.map(|pos| p.loc(pos)),
        }),
    }
}

struct Parser<'a> {
    tokens: &'a [Token],
    i: usize,
    file: Arc<str>,
    end: Pos,
}

impl Parser<'_> {
    fn loc(&self, pos: Pos) -> Location {
        Location::new(self.file.clone(), pos.line, pos.column)
    }

    fn next(&mut self) -> Option<&Token> {
        let t = self.tokens.get(self.i);
        if t.is_some() {
            self.i += 1;
        }
        t
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.i)
    }

    fn syntax(&self, pos: Pos, message: String) -> ConfigError {
        ConfigError::Syntax {
            location: self.loc(pos),
            message,
        }
    }

    fn eof_error(&self, what: String) -> ConfigError {
        self.syntax(self.end, format!("premature end of file {what}"))
    }

    /// Statements until `}` (inside a section named `open`) or end of file (top level).
    fn body(&mut self, depth: usize, open: Option<&Spanned>) -> Result<Vec<Item>, ConfigError> {
        let mut items = Vec::new();
        loop {
            let Some(t) = self.next().cloned() else {
                return match open {
                    None => Ok(items),
                    Some(sec) => Err(ConfigError::Syntax {
                        location: sec.location.clone(),
                        message: format!(
                            "section '{}' is not closed: end of file reached before its '}}'",
                            sec.text
                        ),
                    }),
                };
            };
            match t.tok {
                Tok::RBrace if open.is_some() => return Ok(items),
                Tok::RBrace => return Err(self.syntax(t.pos, "unexpected closing brace".into())),
                Tok::Str(name) => {
                    let key = Spanned {
                        text: name,
                        location: self.loc(t.pos),
                    };
                    items.push(self.item(key, depth)?);
                }
                other => {
                    return Err(self.syntax(
                        t.pos,
                        format!(
                            "unexpected token {} where an option name should be",
                            other.describe()
                        ),
                    ))
                }
            }
        }
    }

    fn item(&mut self, key: Spanned, depth: usize) -> Result<Item, ConfigError> {
        let Some(t) = self.next().cloned() else {
            return Err(self.eof_error(format!("after '{}'", key.text)));
        };
        let kind = match t.tok {
            Tok::Eq | Tok::PlusEq => ItemKind::Assign {
                append: t.tok == Tok::PlusEq,
                value: self.value(&key)?,
            },
            Tok::LBrace => self.section(&key, None, depth)?,
            Tok::LParen => ItemKind::Call {
                args: self.args(&key)?,
            },
            Tok::Str(title) => {
                let title = Spanned {
                    text: title,
                    location: self.loc(t.pos),
                };
                match self.next().cloned() {
                    Some(Token {
                        tok: Tok::LBrace, ..
                    }) => self.section(&key, Some(title), depth)?,
                    Some(other) => {
                        return Err(ConfigError::Syntax {
                            location: key.location.clone(),
                            message: format!(
                                "missing equal sign after option '{}' (or, if '{}' is a section title, '{{' after it; found {})",
                                key.text,
                                title.text,
                                other.tok.describe()
                            ),
                        })
                    }
                    None => {
                        return Err(ConfigError::Syntax {
                            location: key.location.clone(),
                            message: format!(
                                "premature end of file: '{}' needs '=' before its value, or '{{' after section title '{}'",
                                key.text, title.text
                            ),
                        })
                    }
                }
            }
            other => {
                return Err(self.syntax(
                    t.pos,
                    format!(
                        "missing equal sign after option '{}' (found {})",
                        key.text,
                        other.describe()
                    ),
                ))
            }
        };
        Ok(Item { key, kind })
    }

    fn section(
        &mut self,
        key: &Spanned,
        title: Option<Spanned>,
        depth: usize,
    ) -> Result<ItemKind, ConfigError> {
        if depth + 1 > MAX_NESTING {
            return Err(ConfigError::Syntax {
                location: key.location.clone(),
                message: format!("sections nested more than {MAX_NESTING} deep"),
            });
        }
        let body = self.body(depth + 1, Some(key))?;
        Ok(ItemKind::Section { title, body })
    }

    fn value(&mut self, key: &Spanned) -> Result<Value, ConfigError> {
        let Some(t) = self.next().cloned() else {
            return Err(self.eof_error(format!("after '{} ='", key.text)));
        };
        match t.tok {
            Tok::Str(text) => Ok(Value::Scalar(Spanned {
                text,
                location: self.loc(t.pos),
            })),
            Tok::LBrace => {
                let mut list = Vec::new();
                if matches!(
                    self.peek(),
                    Some(Token {
                        tok: Tok::RBrace,
                        ..
                    })
                ) {
                    self.i += 1;
                    return Ok(Value::List(list));
                }
                loop {
                    match self.next().cloned() {
                        Some(Token {
                            tok: Tok::Str(text),
                            pos,
                        }) => list.push(Spanned {
                            text,
                            location: self.loc(pos),
                        }),
                        Some(other) => {
                            return Err(self.syntax(
                                other.pos,
                                format!("unexpected token {} in list", other.tok.describe()),
                            ))
                        }
                        None => return Err(self.eof_error(format!("in list '{}'", key.text))),
                    }
                    match self.next().cloned() {
                        Some(Token {
                            tok: Tok::Comma, ..
                        }) => {}
                        Some(Token {
                            tok: Tok::RBrace, ..
                        }) => return Ok(Value::List(list)),
                        Some(other) => {
                            return Err(self.syntax(
                                other.pos,
                                format!("unexpected token {} in list", other.tok.describe()),
                            ))
                        }
                        None => return Err(self.eof_error(format!("in list '{}'", key.text))),
                    }
                }
            }
            other => Err(self.syntax(
                t.pos,
                format!(
                    "missing value for option '{}' (found {})",
                    key.text,
                    other.describe()
                ),
            )),
        }
    }

    fn args(&mut self, key: &Spanned) -> Result<Vec<Spanned>, ConfigError> {
        let mut args = Vec::new();
        let mut want_arg = true;
        loop {
            let Some(t) = self.next().cloned() else {
                return Err(self.eof_error(format!("in call of function '{}'", key.text)));
            };
            match t.tok {
                Tok::RParen if want_arg && !args.is_empty() => {
                    return Err(self.syntax(
                        t.pos,
                        format!("syntax error in call of function '{}'", key.text),
                    ))
                }
                Tok::RParen => return Ok(args),
                Tok::Str(text) if want_arg => {
                    args.push(Spanned {
                        text,
                        location: self.loc(t.pos),
                    });
                    want_arg = false;
                }
                Tok::Comma if !want_arg => want_arg = true,
                _ => {
                    return Err(self.syntax(
                        t.pos,
                        format!("syntax error in call of function '{}'", key.text),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_ok(text: &str) -> Vec<Item> {
        match parse(text, "t.conf", &no_env) {
            Ok(f) => f.items,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match parse(text, "t.conf", &no_env) {
            Ok(f) => panic!("parsed: {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn all_statement_shapes() {
        let items =
            parse_ok("a = 1\nb += 2\nc { d = \"x y\" }\ne t { }\nf(\"g\", h)\nl = {1, 2}\n");
        let keys: Vec<&str> = items.iter().map(|i| i.key.text.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "e", "f", "l"]);
        assert!(matches!(
            &items[1].kind,
            ItemKind::Assign { append: true, .. }
        ));
        match &items[2].kind {
            ItemKind::Section { title: None, body } => {
                assert!(
                    matches!(&body[0].kind, ItemKind::Assign { value: Value::Scalar(s), .. } if s.text == "x y")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&items[3].kind, ItemKind::Section { title: Some(t), .. } if t.text == "t")
        );
        assert!(matches!(&items[4].kind, ItemKind::Call { args } if args.len() == 2));
        assert!(
            matches!(&items[5].kind, ItemKind::Assign { value: Value::List(l), .. } if l.len() == 2)
        );
    }

    #[test]
    fn unclosed_section_points_at_its_name() {
        assert_eq!(
            parse_err("x = 1\n  globals {\n  a = 1\n"),
            "t.conf:2:3: section 'globals' is not closed: end of file reached before its '}'"
        );
    }

    #[test]
    fn stray_closing_brace() {
        assert_eq!(
            parse_err("a = 1\n}"),
            "t.conf:2:1: unexpected closing brace"
        );
    }

    #[test]
    fn missing_equal_sign() {
        assert_eq!(
            parse_err("daemonize yes\nmute = no"),
            "t.conf:1:1: missing equal sign after option 'daemonize' (or, if 'yes' is a section title, '{' after it; found 'mute')"
        );
        assert_eq!(
            parse_err("a = 1 b"),
            "t.conf:1:8: premature end of file after 'b'"
        );
    }

    #[test]
    fn lexer_error_is_reported_with_position() {
        assert_eq!(
            parse_err("a = 1\nb = \"oops\n"),
            "t.conf:2:5: unterminated string constant"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "a {".repeat(MAX_NESTING + 1);
        assert!(parse_err(&deep).contains("nested"));
    }
}
