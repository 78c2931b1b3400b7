//! The HTTP export on WASIp2: `wasi:http/incoming-handler@0.2.0`, driven by the SDK's
//! executor. The handler gets the response outparam, so it can send the response and
//! keep working (request metrics are written after the client has its answer).

use crate::http::{Head, Method, Response};
use futures::{Stream, StreamExt};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

pub use wasi;

/// A request whose body has not been read.
pub struct Incoming {
    head: Head,
    request: IncomingRequest,
}

impl Incoming {
    /// Wraps the request handed to the export.
    pub fn new(request: IncomingRequest) -> Incoming {
        let method = Method::parse(&request.method().to_string());
        let target = request.path_with_query().unwrap_or_default();
        let headers = request.headers().entries();
        Incoming {
            head: Head::new(method, &target, headers),
            request,
        }
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The head, and the body as a stream of chunks (an error ends it).
    pub fn into_parts(self) -> (Head, impl Stream<Item = Result<Vec<u8>, ()>>) {
        let chunks = self
            .request
            .into_body_stream()
            .map(|chunk| chunk.map_err(drop));
        (self.head, chunks)
    }
}

/// Where the response goes.
pub struct Responder(ResponseOutparam);

impl Responder {
    pub fn new(out: ResponseOutparam) -> Responder {
        Responder(out)
    }

    /// Sends a complete response; the handler may go on working afterwards.
    pub async fn send(self, response: Response) {
        let entries: Vec<(String, Vec<u8>)> = response
            .headers
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect();
        let headers = match Fields::from_list(&entries) {
            Ok(headers) => headers,
            Err(error) => {
                eprintln!("could not send the response: invalid header: {error:?}");
                Fields::new()
            }
        };
        let outgoing = OutgoingResponse::new(headers);
        if outgoing.set_status_code(response.status).is_err() {
            eprintln!("could not send the response: status {}", response.status);
        }
        if let Err(error) = self.0.set_with_body(outgoing, response.body).await {
            eprintln!("could not send the response: {error}");
        }
    }
}

/// Exports `$handler`, an `async fn(Incoming, Responder)`, as the component's HTTP
/// handler.
#[macro_export]
macro_rules! http_component {
    ($handler:ident) => {
        mod __evolve_http_export {
            use $crate::sdk::http::wasi;
            use $crate::sdk::spin_sdk;

            struct Component;

            impl wasi::exports::http::incoming_handler::Guest for Component {
                fn handle(
                    request: wasi::http::types::IncomingRequest,
                    out: wasi::http::types::ResponseOutparam,
                ) {
                    // The SDK's wrappers over the same WASI resources.
                    let request = unsafe {
                        spin_sdk::http::IncomingRequest::from_handle(request.take_handle())
                    };
                    let out = unsafe {
                        spin_sdk::http::ResponseOutparam::from_handle(out.take_handle())
                    };
                    spin_sdk::http::run(super::$handler(
                        $crate::sdk::http::Incoming::new(request),
                        $crate::sdk::http::Responder::new(out),
                    ));
                }
            }

            wasi::http::proxy::export!(Component with_types_in wasi);
        }
    };
}
