//! `fermyon:spin/variables@2.0.0`: a component reads the variables its manifest entry
//! declares, and nothing else.

use crate::bindings::variables::fermyon::spin2_0_0::variables::{Error, Host};
use crate::state::State;
use crate::variables::GetError;

impl Host for State {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(self.component.variables.get(&name).map_err(|e| match e {
            GetError::InvalidName(n) => Error::InvalidName(n),
            GetError::Undefined(n) => Error::Undefined(n),
        }))
    }
}
