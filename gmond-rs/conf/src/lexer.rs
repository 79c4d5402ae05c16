//! Tokenizer reproducing libconfuse 3.x lexing as gmond 3.7.2 sees it.
//!
//! Quirks kept on purpose because real configs rely on them: every value is a string token
//! (quoting does not change its type), `/` is an ordinary word character unless a token starts
//! with `//` or `/*`, stray `*`, `+` and `\r` are silently dropped, `${VAR}` / `${VAR:-dflt}`
//! expand from the environment, and an unterminated `/* ...` comment just ends the file.

/// Start of a token: 1-based line and column (characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub column: u32,
}

/// One token; every value, quoted or not, is a `Str`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Str(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    Eq,
    PlusEq,
    Comma,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Str(s) => format!("'{s}'"),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Eq => "'='".into(),
            Tok::PlusEq => "'+='".into(),
            Tok::Comma => "','".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// The result of lexing a whole file. Lexing stops at the first error, like libconfuse.
#[derive(Debug, Default)]
pub(crate) struct Lexed {
    pub tokens: Vec<Token>,
    pub error: Option<(Pos, String)>,
    /// Start of a `/*` comment that never ends (gmond accepts this silently).
    pub unterminated_comment: Option<Pos>,
    /// Position just past the last character.
    pub end: Pos,
}

/// Longest `${...}` body looked for (see `Cursor::env_body`).
const MAX_ENV_BODY: usize = 256;

/// Characters that end an unquoted word (libconfuse's bare-string class).
fn is_word_char(c: char) -> bool {
    !matches!(
        c,
        ' ' | '#' | '"' | '\'' | '\t' | '\n' | '\r' | '=' | '{' | '}' | '(' | ')' | '+' | ',' | '*'
    )
}

struct Cursor<'a> {
    chars: Vec<char>,
    i: usize,
    line: u32,
    column: u32,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Cursor<'_> {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    /// If a `${...}` starts here (closing brace before any quote), its body.
    ///
    /// Bodies are capped at [`MAX_ENV_BODY`] characters so that many unclosed `${` cannot make
    /// lexing quadratic; libconfuse has no cap, but no variable name is that long.
    fn env_body(&self, stop_at_quote: bool) -> Option<String> {
        if self.peek(0) != Some('$') || self.peek(1) != Some('{') {
            return None;
        }
        let mut body = String::new();
        let mut k = self.i + 2;
        loop {
            if body.len() > MAX_ENV_BODY {
                return None;
            }
            let c = *self.chars.get(k)?;
            if c == '}' {
                return Some(body);
            }
            if stop_at_quote && c == '"' {
                return None;
            }
            body.push(c);
            k += 1;
        }
    }

    /// Expands `NAME` or `NAME:-default` the way libconfuse does.
    fn expand_env(&self, body: &str) -> Option<String> {
        match body.split_once(":-") {
            Some((name, dflt)) if !name.contains(':') => {
                (self.env)(name).or_else(|| Some(dflt.to_string()))
            }
            _ => (self.env)(body),
        }
    }

    fn skip(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }
}

/// Splits `text` into tokens; `env` answers `${NAME}` lookups.
pub(crate) fn lex(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Lexed {
    let mut cur = Cursor {
        chars: text.chars().collect(),
        i: 0,
        line: 1,
        column: 1,
        env,
    };
    let mut out = Lexed::default();
    while let Some(c) = cur.peek(0) {
        let pos = cur.pos();
        let single = match c {
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '=' => Some(Tok::Eq),
            ',' => Some(Tok::Comma),
            _ => None,
        };
        if let Some(tok) = single {
            cur.bump();
            out.tokens.push(Token { tok, pos });
            continue;
        }
        match c {
            '#' => skip_line(&mut cur),
            '/' if cur.peek(1) == Some('/') => skip_line(&mut cur),
            '/' if cur.peek(1) == Some('*') => {
                cur.skip(2);
                if !skip_block_comment(&mut cur) {
                    out.unterminated_comment = Some(pos);
                }
            }
            '+' if cur.peek(1) == Some('=') => {
                cur.skip(2);
                out.tokens.push(Token {
                    tok: Tok::PlusEq,
                    pos,
                });
            }
            '"' => {
                cur.bump();
                match double_quoted(&mut cur) {
                    Ok(s) => out.tokens.push(Token {
                        tok: Tok::Str(s),
                        pos,
                    }),
                    Err((epos, msg)) => {
                        out.error = Some((epos, msg));
                        break;
                    }
                }
            }
            '\'' => {
                cur.bump();
                match single_quoted(&mut cur) {
                    Some(s) => out.tokens.push(Token {
                        tok: Tok::Str(s),
                        pos,
                    }),
                    None => {
                        out.error = Some((pos, "unterminated string constant".into()));
                        break;
                    }
                }
            }
            '$' if cur.env_body(false).is_some() => {
                let body = cur.env_body(false).unwrap_or_default();
                let value = cur.expand_env(&body).unwrap_or_default();
                cur.skip(body.chars().count() + 3);
                out.tokens.push(Token {
                    tok: Tok::Str(value),
                    pos,
                });
            }
            c if is_word_char(c) => {
                let mut word = String::new();
                while let Some(c) = cur.peek(0).filter(|c| is_word_char(*c)) {
                    word.push(c);
                    cur.bump();
                }
                out.tokens.push(Token {
                    tok: Tok::Str(word),
                    pos,
                });
            }
            // Whitespace, and the characters libconfuse's catch-all rule eats (`*`, lone `+`, CR).
            _ => {
                cur.bump();
            }
        }
    }
    out.end = cur.pos();
    out
}

fn skip_line(cur: &mut Cursor<'_>) {
    while cur.peek(0).is_some_and(|c| c != '\n') {
        cur.bump();
    }
}

/// Skips to just past `*/`; false if the file ends first.
fn skip_block_comment(cur: &mut Cursor<'_>) -> bool {
    while let Some(c) = cur.bump() {
        if c == '*' && cur.peek(0) == Some('/') {
            cur.bump();
            return true;
        }
    }
    false
}

/// Body of a `"..."` string (opening quote consumed). Escapes build bytes, so `\xc3\xa9` is é.
fn double_quoted(cur: &mut Cursor<'_>) -> Result<String, (Pos, String)> {
    let start = Pos {
        line: cur.line,
        column: cur.column.saturating_sub(1),
    };
    let mut bytes: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4];
    loop {
        let Some(c) = cur.peek(0) else {
            return Err((start, "unterminated string constant".into()));
        };
        match c {
            '"' => {
                cur.bump();
                return Ok(String::from_utf8_lossy(&bytes).into_owned());
            }
            '$' if cur.env_body(true).is_some() => {
                let body = cur.env_body(true).unwrap_or_default();
                if let Some(v) = cur.expand_env(&body) {
                    bytes.extend_from_slice(v.as_bytes());
                }
                cur.skip(body.chars().count() + 3);
            }
            '\\' => {
                let esc_pos = cur.pos();
                cur.bump();
                let Some(n) = cur.peek(0) else {
                    return Err((start, "unterminated string constant".into()));
                };
                match n {
                    '\n' => {
                        cur.bump();
                    }
                    '0'..='9' => {
                        let mut run = String::new();
                        while let Some(d) = cur.peek(0).filter(char::is_ascii_digit) {
                            run.push(d);
                            cur.bump();
                        }
                        // flex picks the longer of `\\[0-7]{1,3}` and `\\[0-9]+`.
                        let octal = run.len() <= 3 && run.chars().all(|d| d < '8');
                        if !octal {
                            return Err((esc_pos, format!("bad escape sequence '\\{run}'")));
                        }
                        let v = u32::from_str_radix(&run, 8).unwrap_or(u32::MAX);
                        match u8::try_from(v) {
                            Ok(b) => bytes.push(b),
                            Err(_) => {
                                return Err((esc_pos, format!("invalid octal number '\\{run}'")))
                            }
                        }
                    }
                    'x' if cur.peek(1).is_some_and(|h| h.is_ascii_hexdigit()) => {
                        cur.bump();
                        let mut hex = String::new();
                        while hex.len() < 2 {
                            match cur.peek(0).filter(char::is_ascii_hexdigit) {
                                Some(h) => {
                                    hex.push(h);
                                    cur.bump();
                                }
                                None => break,
                            }
                        }
                        bytes.push(u8::from_str_radix(&hex, 16).unwrap_or(0));
                    }
                    _ => {
                        cur.bump();
                        let out = match n {
                            'n' => '\n',
                            'r' => '\r',
                            'b' => '\u{8}',
                            'f' => '\u{c}',
                            'a' => '\u{7}',
                            'e' => '\u{1b}',
                            't' => '\t',
                            'v' => '\u{b}',
                            other => other,
                        };
                        bytes.extend_from_slice(out.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            _ => {
                cur.bump();
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// Body of a `'...'` string (opening quote consumed): only `\\` and `\'` are escapes.
fn single_quoted(cur: &mut Cursor<'_>) -> Option<String> {
    let mut s = String::new();
    loop {
        let c = cur.bump()?;
        match c {
            '\'' => return Some(s),
            '\\' => {
                let n = cur.peek(0)?;
                cur.bump();
                match n {
                    '\n' => {}
                    '\\' | '\'' => s.push(n),
                    other => {
                        s.push('\\');
                        s.push(other);
                    }
                }
            }
            other => s.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn strs(text: &str) -> Vec<Tok> {
        let l = lex(text, &no_env);
        assert_eq!(l.error, None, "{text}");
        l.tokens.into_iter().map(|t| t.tok).collect()
    }

    fn s(x: &str) -> Tok {
        Tok::Str(x.to_string())
    }

    #[test]
    fn comments_of_all_three_kinds_are_skipped() {
        assert_eq!(
            strs("a # x\nb // y\nc /* z\n */ d"),
            vec![s("a"), s("b"), s("c"), s("d")]
        );
    }

    #[test]
    fn slash_inside_a_word_is_a_word_char() {
        assert_eq!(
            strs("p = /usr/lib//x"),
            vec![s("p"), Tok::Eq, s("/usr/lib//x")]
        );
        // `abc/*` is the word `abc/`, then `*` is dropped: libconfuse does the same.
        assert_eq!(strs("abc/* x"), vec![s("abc/"), s("x")]);
    }

    #[test]
    fn stray_star_plus_and_cr_are_dropped() {
        assert_eq!(strs("a * + b\r\n"), vec![s("a"), s("b")]);
        assert_eq!(strs("a += b"), vec![s("a"), Tok::PlusEq, s("b")]);
    }

    #[test]
    fn double_quoted_escapes() {
        assert_eq!(strs(r#""a\tb\x41\101\"\q""#), vec![s("a\tbAA\"q")]);
        assert_eq!(strs("\"a\\\nb\""), vec![s("ab")]);
        assert_eq!(strs(r#""\xc3\xa9""#), vec![s("é")]);
        assert_eq!(strs(r#""\1""#), vec![s("\u{1}")]);
    }

    #[test]
    fn bad_escapes_are_errors() {
        let l = lex(r#"x = "\18""#, &no_env);
        assert_eq!(
            l.error,
            Some((
                Pos { line: 1, column: 6 },
                "bad escape sequence '\\18'".into()
            ))
        );
        let l = lex(r#"x = "\777""#, &no_env);
        assert!(l.error.is_some_and(|(_, m)| m.contains("invalid octal")));
    }

    #[test]
    fn single_quoted_keeps_backslashes() {
        assert_eq!(strs(r"'a\1\\b\'c'"), vec![s(r"a\1\b'c")]);
    }

    #[test]
    fn unterminated_strings_are_errors_and_comments_are_not() {
        assert!(lex("x = \"abc", &no_env).error.is_some());
        assert!(lex("x = 'abc", &no_env).error.is_some());
        let l = lex("x = 1 /* open", &no_env);
        assert_eq!(l.error, None);
        assert_eq!(l.unterminated_comment, Some(Pos { line: 1, column: 7 }));
    }

    #[test]
    fn env_expansion_in_words_and_double_quotes() {
        let env = |n: &str| (n == "HOME").then(|| "/h".to_string());
        let l = lex(
            r#"${HOME} "${HOME}/x" ${NOPE:-d} "${NOPE}" '${HOME}'"#,
            &env,
        );
        let toks: Vec<Tok> = l.tokens.into_iter().map(|t| t.tok).collect();
        assert_eq!(toks, vec![s("/h"), s("/h/x"), s("d"), s(""), s("${HOME}")]);
    }

    #[test]
    fn positions_are_line_and_column() {
        let l = lex("a\n  b = \"c\"", &no_env);
        let pos: Vec<Pos> = l.tokens.iter().map(|t| t.pos).collect();
        assert_eq!(
            pos,
            vec![
                Pos { line: 1, column: 1 },
                Pos { line: 2, column: 3 },
                Pos { line: 2, column: 5 },
                Pos { line: 2, column: 7 },
            ]
        );
    }
}
