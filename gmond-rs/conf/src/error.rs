//! Source locations and the crate's single error enum.

use std::fmt;
use std::sync::Arc;

/// A position in a config file: file name as given, 1-based line and column (in characters).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The file name as the caller or the `include` named it.
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl Location {
    /// A location in `file`.
    pub fn new(file: Arc<str>, line: u32, column: u32) -> Self {
        Location { file, line, column }
    }
}

/// Compact, so dumps of configs and warnings stay readable: `Location(file:line:column)`.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Everything that makes a gmond.conf unusable. Each variant but [`ConfigError::Value`] carries
/// where it happened.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not valid libconfuse syntax (stray brace, unterminated string or section...).
    #[error("{location}: {message}")]
    Syntax {
        /// Where the parser gave up.
        location: Location,
        /// What it expected or found.
        message: String,
    },
    /// A name the enclosing section does not define (gmond: "no such option 'x'").
    #[error("{location}: no such option '{name}' (in {section})")]
    UnknownOption {
        /// Where the name appears.
        location: Location,
        /// The name as written.
        name: String,
        /// Dotted path of the enclosing section, `top level` at the top.
        section: String,
    },
    /// An option used with the wrong shape: a section given a value, a value given a body...
    #[error("{location}: {message}")]
    WrongShape {
        /// Where the option appears.
        location: Location,
        /// What is wrong with its shape.
        message: String,
    },
    /// A value that does not parse as the option's type.
    #[error("{location}: invalid {expected} value '{value}' for option '{option}'")]
    BadValue {
        /// Where the value appears.
        location: Location,
        /// Option name.
        option: String,
        /// "integer", "floating point", "boolean", or a description of the accepted values.
        expected: String,
        /// The value as written (after unquoting).
        value: String,
    },
    /// A well-typed value outside the range that makes sense for the option.
    #[error("{location}: value {value} for option '{option}' is out of range ({range})")]
    OutOfRange {
        /// Where the value appears.
        location: Location,
        /// Option name.
        option: String,
        /// The value.
        value: String,
        /// The accepted range, human readable.
        range: String,
    },
    /// `include` of a literal path (no wildcard) that does not exist (gmond: "invalid include path").
    #[error("{location}: invalid include path '{path}': no such file and no wildcard")]
    MissingInclude {
        /// Where the include appears.
        location: Location,
        /// The path as written.
        path: String,
    },
    /// Includes nested deeper than the limit, or a file including itself.
    #[error("{location}: {message} (including '{path}')")]
    IncludeLoop {
        /// Where the offending include appears.
        location: Location,
        /// The path being included.
        path: String,
        /// "include cycle" or "includes nested too deeply".
        message: String,
    },
    /// A file that exists but could not be read.
    #[error("{location}: cannot read '{path}': {message}")]
    Io {
        /// The include that named the file, or `path:0:0` for the top file.
        location: Location,
        /// The file.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// Values that parse but break one of gmond's rules (deaf+mute, bind+bind_hostname...).
    #[error("{location}: {message}")]
    Invalid {
        /// Where the offending option or section appears.
        location: Location,
        /// What rule is broken.
        message: String,
    },
    /// A value that fails a check made on the value alone ([`Subnet::parse`],
    /// [`NamePattern::new`], [`LibvirtModule::parse_collect_every`]), which cannot know where
    /// it was written. The resolver reports these as one of the variants above, at a
    /// [`Location`], so the errors of a load never hold this one.
    ///
    /// [`Subnet::parse`]: crate::Subnet::parse
    /// [`NamePattern::new`]: crate::NamePattern::new
    /// [`LibvirtModule::parse_collect_every`]: crate::LibvirtModule::parse_collect_every
    #[error("{message}")]
    Value {
        /// What was checked: the option's name (`ip`, `mask`, `name_match`, `title`,
        /// `collect_every`).
        what: &'static str,
        /// Why it is refused, complete in itself (it names the value).
        message: String,
    },
}

impl ConfigError {
    /// Where the error happened: always known for the errors of a load, `None` only for a
    /// [`ConfigError::Value`] from a check of a value alone.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Syntax { location, .. }
            | ConfigError::UnknownOption { location, .. }
            | ConfigError::WrongShape { location, .. }
            | ConfigError::BadValue { location, .. }
            | ConfigError::OutOfRange { location, .. }
            | ConfigError::MissingInclude { location, .. }
            | ConfigError::IncludeLoop { location, .. }
            | ConfigError::Io { location, .. }
            | ConfigError::Invalid { location, .. } => Some(location),
            ConfigError::Value { .. } => None,
        }
    }
}

/// All errors found in one load, in file order. Never empty when returned as `Err`.
///
/// This is a list of [`ConfigError`], not a second error kind: the daemon prints every line and
/// refuses to start.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigErrors {
    /// The errors, at least one.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.errors
            .first()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors { errors: vec![e] }
    }
}
