//! Spin variables, with the variable's name in every error.
//!
//! Spin's own error says only what went wrong; configuration errors are useless without
//! the name of the variable to fix.

/// A variable could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("variable `{name}`: {reason}")]
pub struct VariableError {
    pub name: String,
    pub reason: String,
}

/// The value of a variable that must be set.
pub fn get(name: &str) -> Result<String, VariableError> {
    lookup(name)?.ok_or_else(|| VariableError {
        name: name.to_owned(),
        reason: "not set for this component".to_owned(),
    })
}

/// The value of a variable, or `None` when it is not defined for this component, so the
/// caller can apply its default. Other failures (an invalid name, a variables provider
/// that cannot be reached) are errors.
pub fn lookup(name: &str) -> Result<Option<String>, VariableError> {
    use spin_sdk::variables::Error;
    match spin_sdk::variables::get(name) {
        Ok(value) => Ok(Some(value)),
        Err(Error::Undefined(_)) => Ok(None),
        Err(error) => {
            let reason = match error {
                Error::InvalidName(message) => format!("invalid name: {message}"),
                Error::Provider(message) => format!("provider error: {message}"),
                Error::Other(message) | Error::Undefined(message) => message,
            };
            Err(VariableError {
                name: name.to_owned(),
                reason,
            })
        }
    }
}
