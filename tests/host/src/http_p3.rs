//! WASIp3 HTTP (`wasi:http/handler@0.3.0-rc-2026-03-15`) as Spin 4.0.2 serves it:
//! requests go to a `ProxyHandler` (wasmtime-wasi-http's), whose workers each
//! instantiate the component once and feed it requests, several at a time, until the
//! instance has served its reuse count or sat idle too long. So a WASIp3 guest's
//! globals persist across requests, and up to the concurrent-reuse count of requests
//! share one instance. The store's event loop keeps running until the server has read
//! the whole response body, so a guest may stream its body after returning.

use bytes::Bytes;
use futures::channel::oneshot;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime::component::Accessor;
use wasmtime::Engine;
use wasmtime_wasi_http::handler::{HandlerState, Proxy, ProxyHandler, StoreBundle};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode as P2ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::http::types::{self as p3_types, ErrorCode};

use crate::instance_reuse::InstanceReuse;
use crate::services::Services;
use crate::state::{ComponentRuntime, State};

/// What the handler's workers need to make a store for a new instance, and the reuse
/// limits each new instance draws.
pub struct HttpHandlerState {
    pub engine: Engine,
    pub runtime: Arc<ComponentRuntime>,
    pub services: Arc<Services>,
    pub max_instance_memory: usize,
    pub reuse: InstanceReuse,
}

impl HandlerState for HttpHandlerState {
    type StoreData = State;

    fn new_store(&self, _req_id: Option<u64>) -> wasmtime::Result<StoreBundle<State>> {
        Ok(StoreBundle {
            store: crate::app::new_store(
                &self.engine,
                &self.runtime,
                &self.services,
                self.max_instance_memory,
            ),
            write_profile: Box::new(|_| ()),
        })
    }

    fn request_timeout(&self) -> Duration {
        self.reuse
            .request_timeout
            .map(|r| r.sample())
            .unwrap_or(Duration::MAX)
    }

    fn idle_instance_timeout(&self) -> Duration {
        self.reuse.idle_instance_timeout.sample()
    }

    fn max_instance_reuse_count(&self) -> usize {
        self.reuse.max_instance_reuse_count.sample()
    }

    fn max_instance_concurrent_reuse_count(&self) -> usize {
        self.reuse.max_instance_concurrent_reuse_count.sample()
    }

    fn handle_worker_error(&self, error: wasmtime::Error) {
        tracing::warn!(component = %self.runtime.id, "worker error: {error:?}")
    }
}

fn p3_to_p2_error(e: ErrorCode) -> P2ErrorCode {
    P2ErrorCode::InternalError(Some(format!("{e:?}")))
}

/// Runs one request on an instance of the handler's component. `req` already carries
/// Spin's headers and an absolute URI.
pub async fn execute(
    handler: &ProxyHandler<HttpHandlerState>,
    req: hyper::Request<Incoming>,
) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
    let req = req.map(|body| body.map_err(|e| ErrorCode::InternalError(Some(e.to_string()))));
    let (request, request_io_result) = p3_types::Request::from_http(req);
    let getter = <State as wasmtime_wasi_http::p3::WasiHttpView>::http
        as fn(&mut State) -> wasmtime_wasi_http::p3::WasiHttpCtxView<'_>;

    let (tx, rx) = oneshot::channel();
    handler.spawn(
        None,
        Box::new(move |store: &Accessor<State>, guest: &Proxy| {
            Box::pin(async move {
                let outcome = async {
                    let Proxy::P3(guest) = guest else {
                        wasmtime::bail!("not a WASIp3 handler");
                    };
                    let request = store.with(|mut access| access.get().table.push(request))?;
                    let response = guest
                        .wasi_http_handler()
                        .call_handle(store, request)
                        .await?
                        .map_err(|code| wasmtime::format_err!("component answered {code:?}"))?;
                    let response = store.with(|mut access| access.get().table.delete(response))?;
                    let response = store.with(|mut access| {
                        response.into_http_with_getter(&mut access, request_io_result, getter)
                    })?;
                    // Keep the event loop going until the server has read the body.
                    let (body_done_tx, body_done_rx) = oneshot::channel();
                    let response = response.map(|body| {
                        NotifyOnDropBody {
                            body: body.map_err(p3_to_p2_error),
                            _done: body_done_tx,
                        }
                        .boxed_unsync()
                    });
                    if tx.send(response).is_ok() {
                        let _ = body_done_rx.await;
                    }
                    wasmtime::Result::<()>::Ok(())
                }
                .await;
                if let Err(e) = outcome {
                    tracing::error!("component error handling request: {e:?}");
                }
            })
        }),
    );
    Ok(rx.await?)
}

/// A body that tells its task, by being dropped, that the server is done with it.
struct NotifyOnDropBody<B> {
    body: B,
    _done: oneshot::Sender<()>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for NotifyOnDropBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
