//! Spin's variables interfaces: `fermyon:spin/variables@2.0.0` (blocking, WASIp2) and
//! `spin:variables/variables@3.0.0` (async, WASIp3). A component reads the variables
//! its manifest entry declares, and nothing else. The capability's whole state is the
//! component's resolved variables, behind the `VariableSource` seam.

use std::sync::Arc;
use wasmtime::component::{Accessor, HasData};

use crate::bindings::variables::fermyon::spin2_0_0::variables as v2;
use crate::bindings::variables3::spin::variables::variables as v3;
use crate::variables::{ComponentVariables, GetError};

/// Where a component's variable values come from.
pub trait VariableSource: Send + Sync {
    fn get(&self, name: &str) -> Result<String, GetError>;
}

impl VariableSource for ComponentVariables {
    fn get(&self, name: &str) -> Result<String, GetError> {
        ComponentVariables::get(self, name)
    }
}

pub struct VariablesState {
    source: Arc<dyn VariableSource>,
}

impl VariablesState {
    pub fn new(source: Arc<dyn VariableSource>) -> Self {
        Self { source }
    }
}

/// Links the variables interfaces to `VariablesState` (WASIp3's through an `Accessor`).
pub struct VariablesData;

impl HasData for VariablesData {
    type Data<'a> = &'a mut VariablesState;
}

impl v2::Host for VariablesState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, v2::Error>> {
        Ok(self.source.get(&name).map_err(|e| match e {
            GetError::InvalidName(n) => v2::Error::InvalidName(n),
            GetError::Undefined(n) => v2::Error::Undefined(n),
        }))
    }
}

impl v3::Host for VariablesState {}

impl v3::HostWithStore for VariablesData {
    async fn get<T>(
        accessor: &Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, v3::Error>> {
        let source = accessor.with(|mut access| access.get().source.clone());
        Ok(get_v3(source.as_ref(), &name))
    }
}

fn get_v3(source: &dyn VariableSource, name: &str) -> Result<String, v3::Error> {
    source.get(name).map_err(|e| match e {
        GetError::InvalidName(n) => v3::Error::InvalidName(n),
        GetError::Undefined(n) => v3::Error::Undefined(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn state() -> VariablesState {
        let app = crate::variables::ApplicationVariables::default();
        let templates = BTreeMap::from([("greeting".to_string(), "hello".to_string())]);
        VariablesState::new(Arc::new(ComponentVariables::new(&app, &templates).unwrap()))
    }

    #[tokio::test]
    async fn v2_answers_values_and_spins_errors() {
        let mut s = state();
        assert!(matches!(
            v2::Host::get(&mut s, "greeting".into()).await.unwrap(),
            Ok(v) if v == "hello"
        ));
        assert!(matches!(
            v2::Host::get(&mut s, "other".into()).await.unwrap(),
            Err(v2::Error::Undefined(_))
        ));
        assert!(matches!(
            v2::Host::get(&mut s, "Bad-Name".into()).await.unwrap(),
            Err(v2::Error::InvalidName(_))
        ));
    }

    #[test]
    fn v3_answers_values_and_spins_errors() {
        let s = state();
        assert!(matches!(get_v3(s.source.as_ref(), "greeting"), Ok(v) if v == "hello"));
        assert!(matches!(
            get_v3(s.source.as_ref(), "other"),
            Err(v3::Error::Undefined(_))
        ));
        assert!(matches!(
            get_v3(s.source.as_ref(), "1x"),
            Err(v3::Error::InvalidName(_))
        ));
    }
}
