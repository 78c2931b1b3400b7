//! Spin variables, with the variable's name in every error, resolved at most once per
//! instance.
//!
//! On Spin each `get` resolves a template through the variable providers, and on Spin 4
//! an instance serves up to 128 requests, so values are kept once read (a variable's
//! value does not change while the application runs). Configuration types in
//! `evolve_core` read through a synchronous lookup; [`load`] runs such a reader,
//! fetching what it asks for.

use crate::sdk;
use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A variable could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("variable `{name}`: {reason}")]
pub struct VariableError {
    pub name: String,
    pub reason: String,
}

thread_local! {
    /// Values read by this instance; `None` for a variable the component does not define.
    static RESOLVED: RefCell<HashMap<String, Option<String>>> = RefCell::new(HashMap::new());
    /// Configurations [`load`] has built in this instance, by type.
    static BUILT: RefCell<HashMap<TypeId, Rc<dyn Any>>> = RefCell::new(HashMap::new());
}

fn resolved(name: &str) -> Option<Option<String>> {
    RESOLVED.with(|values| values.borrow().get(name).cloned())
}

/// The value of a variable that must be set.
pub async fn get(name: &str) -> Result<String, VariableError> {
    lookup(name).await?.ok_or_else(|| VariableError {
        name: name.to_owned(),
        reason: "not set for this component".to_owned(),
    })
}

/// The value of a variable, or `None` when it is not defined for this component, so the
/// caller can apply its default. Other failures (an invalid name, a variables provider
/// that cannot be reached) are errors, and are not remembered.
pub async fn lookup(name: &str) -> Result<Option<String>, VariableError> {
    if let Some(value) = resolved(name) {
        return Ok(value);
    }
    use sdk::variables::Error;
    let value = match sdk::variables::get(name).await {
        Ok(value) => Some(value),
        Err(Error::Undefined(_)) => None,
        Err(error) => {
            let reason = match error {
                Error::InvalidName(message) => format!("invalid name: {message}"),
                Error::Provider(message) => format!("provider error: {message}"),
                Error::Other(message) | Error::Undefined(message) => message,
            };
            return Err(VariableError {
                name: name.to_owned(),
                reason,
            });
        }
    };
    RESOLVED.with(|values| values.borrow_mut().insert(name.to_owned(), value.clone()));
    Ok(value)
}

/// A synchronous lookup, as `evolve_core`'s configuration readers take.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>, VariableError>;

/// The configuration `read` builds (for example `|lookup| ChatAccess::try_from_lookup(lookup)`),
/// built once per instance: the first successful build is kept and later calls return a
/// copy of it (a failed one is built again next time). See [`read_all`].
pub async fn load<C, E>(read: impl Fn(Lookup<'_>) -> Result<C, E>) -> Result<C, E>
where
    C: Clone + 'static,
{
    let kept = BUILT.with(|built| built.borrow().get(&TypeId::of::<C>()).cloned());
    if let Some(config) = kept.and_then(|kept| kept.downcast::<C>().ok()) {
        return Ok(C::clone(&config));
    }
    let config = read_all(read).await?;
    BUILT.with(|built| {
        built
            .borrow_mut()
            .insert(TypeId::of::<C>(), Rc::new(config.clone()) as Rc<dyn Any>)
    });
    Ok(config)
}

/// Runs `read` over the variables it asks for. A reader stops at its first error, so it
/// runs again after each batch of unknown names is fetched, until it asked for nothing
/// unknown; once an instance has read them all, that is one run and no host call.
pub async fn read_all<C>(read: impl Fn(Lookup<'_>) -> C) -> C {
    let mut failed: HashMap<String, VariableError> = HashMap::new();
    loop {
        let missing = RefCell::new(Vec::<String>::new());
        let known = |name: &str| {
            if let Some(error) = failed.get(name) {
                return Err(error.clone());
            }
            match resolved(name) {
                Some(value) => Ok(value),
                None => {
                    missing.borrow_mut().push(name.to_owned());
                    Ok(None)
                }
            }
        };
        let result = read(&known);
        let missing = missing.into_inner();
        if missing.is_empty() {
            return result;
        }
        for name in missing {
            if let Err(error) = lookup(&name).await {
                failed.insert(name, error);
            }
        }
    }
}
