//! The HTTP export on WASIp3: `wasi:http/handler@0.3.0-rc-2026-03-15`. The export
//! returns the response, so the handler hands it over a channel and may go on working
//! (request metrics are written after the client has its answer), as on WASIp2 after
//! setting the outparam. The handler runs inside the export's own future until the
//! response is ready, and only what is left of it is spawned: on Spin 4.0 a task spawned
//! while the export is still pending does not get its own spawned tasks polled, and the
//! SDK's outbound HTTP spawns one to write the request body.

use crate::http::{Head, Method, Response};
use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use http_body_util::Full;
use spin_sdk6::http::body::IncomingBodyExt;
use spin_sdk6::http::{FromRequest, IntoResponse};
use spin_sdk6::wasip3::http::types;
use std::future::Future;

pub use spin_sdk6::wasip3;

/// A request whose body has not been read.
pub struct Incoming {
    head: Head,
    request: spin_sdk6::http::Request,
}

impl Incoming {
    fn new(request: spin_sdk6::http::Request) -> Incoming {
        let method = Method::parse(request.method().as_str());
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| request.uri().path().to_owned());
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
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
            .into_body()
            .stream()
            .map(|chunk| chunk.map(|bytes| bytes.to_vec()).map_err(drop));
        (self.head, chunks)
    }
}

/// Where the response goes.
pub struct Responder(oneshot::Sender<Response>);

impl Responder {
    /// Sends a complete response; the handler may go on working afterwards.
    pub async fn send(self, response: Response) {
        // The receiver is gone only if the export has already answered.
        let _ = self.0.send(response);
    }
}

/// Runs `handler` for one request and returns its response as the export's result.
pub async fn serve<F, Fut>(
    request: types::Request,
    handler: F,
) -> Result<types::Response, types::ErrorCode>
where
    F: FnOnce(Incoming, Responder) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let request = spin_sdk6::http::Request::from_request(request)?;
    let (sender, mut receiver) = oneshot::channel();
    let mut work = Box::pin(handler(Incoming::new(request), Responder(sender)));
    let response = match select(work.as_mut(), &mut receiver).await {
        Either::Left(((), _)) => receiver.await.ok(),
        Either::Right((response, _)) => {
            super::spawn(work);
            response.ok()
        }
    };
    // The handler ended without answering: a bug, answered without detail.
    let response =
        response.unwrap_or_else(|| Response::new(500, "").with_header("cache-control", "no-store"));
    into_wasi(response)
}

fn into_wasi(response: Response) -> Result<types::Response, types::ErrorCode> {
    let mut builder = http::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = builder
        .body(Full::new(Bytes::from(response.body)))
        .map_err(|error| types::ErrorCode::InternalError(Some(error.to_string())))?;
    response.into_response()
}

/// Exports `$handler`, an `async fn(Incoming, Responder)`, as the component's HTTP
/// handler.
#[macro_export]
macro_rules! http_component {
    ($handler:ident) => {
        mod __evolve_http_export {
            use $crate::sdk::http::wasip3;

            struct Component;

            wasip3::http::service::export!(Component);

            impl wasip3::exports::http::handler::Guest for Component {
                async fn handle(
                    request: wasip3::http::types::Request,
                ) -> Result<wasip3::http::types::Response, wasip3::http::types::ErrorCode> {
                    $crate::sdk::http::serve(request, super::$handler).await
                }
            }
        }
    };
}
