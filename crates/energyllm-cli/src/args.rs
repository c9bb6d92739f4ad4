//! Flag parsers for the libraries' own enums, which know their names but not clap.

use clap::builder::{PossibleValuesParser, TypedValueParser};

/// A parser accepting exactly the names of `all` (as `name` spells them): the same possible
/// values in `--help` and the same error for a wrong name as a `ValueEnum`, while the enum stays
/// in a library that does not depend on clap.
pub fn named_value<T>(all: &'static [T], name: fn(T) -> &'static str) -> impl TypedValueParser<Value = T>
where
    T: Copy + Send + Sync + 'static,
{
    PossibleValuesParser::new(all.iter().map(move |&v| name(v)))
        .try_map(move |s| all.iter().copied().find(|&v| name(v) == s).ok_or(format!("unknown value {s}")))
}
