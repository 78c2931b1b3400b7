//! Outbound HTTP for both WASI generations (`wasi:http/outgoing-handler@0.2` and
//! `wasi:http/client@0.3.0-rc-2026-03-15`), with Spin's rule: a request to a host
//! outside `allowed_outbound_hosts` fails with `HTTP-request-denied`, delivered the way
//! Spin delivers it (through the response future in WASIp2, from `send` in WASIp3).
//! The decision is `OutboundHttp::check`, the one seam both paths share.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use wasmtime_wasi::TrappableError;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, OutgoingRequestConfig};
use wasmtime_wasi_http::p2::HttpResult;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode as P3ErrorCode;

use crate::outbound::AllowedHosts;

/// One instance's outbound HTTP policy.
pub struct OutboundHttp {
    component: String,
    allowed: Arc<AllowedHosts>,
}

impl OutboundHttp {
    pub fn new(component: &str, allowed: Arc<AllowedHosts>) -> Self {
        Self {
            component: component.to_string(),
            allowed,
        }
    }

    /// Whether the component may send a request to `url`; logs a refusal.
    pub fn check(&self, url: &str) -> bool {
        let allowed = self.allowed.allows(url);
        if !allowed {
            tracing::warn!(component = %self.component, %url, "outbound HTTP request to a host not in allowed_outbound_hosts");
        }
        allowed
    }
}

impl wasmtime_wasi_http::p2::WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: hyper::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        if !self.check(&request.uri().to_string()) {
            return Ok(HostFutureIncomingResponse::ready(Ok(Err(
                wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::HttpRequestDenied,
            ))));
        }
        Ok(wasmtime_wasi_http::p2::default_send_request(
            request, config,
        ))
    }
}

type P3Body = UnsyncBoxBody<Bytes, P3ErrorCode>;
type P3IoFuture = Box<dyn Future<Output = Result<(), P3ErrorCode>> + Send>;
type P3ResponseFuture = Box<
    dyn Future<Output = Result<(http::Response<P3Body>, P3IoFuture), TrappableError<P3ErrorCode>>>
        + Send,
>;

impl wasmtime_wasi_http::p3::WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<P3Body>,
        options: Option<wasmtime_wasi_http::p3::RequestOptions>,
        fut: P3IoFuture,
    ) -> P3ResponseFuture {
        // Errors the guest meets while reading the response are of no use here.
        drop(fut);
        if !self.check(&request.uri().to_string()) {
            return Box::new(async { Err(P3ErrorCode::HttpRequestDenied.into()) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) =
                wasmtime_wasi_http::p3::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as P3IoFuture,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi_http::p3::WasiHttpHooks as _;

    fn hooks(allowed: &[&str]) -> OutboundHttp {
        OutboundHttp::new("test", Arc::new(AllowedHosts::parse(allowed).unwrap()))
    }

    fn empty_body() -> P3Body {
        use http_body_util::BodyExt;
        http_body_util::Empty::new()
            .map_err(|e: std::convert::Infallible| match e {})
            .boxed_unsync()
    }

    #[test]
    fn only_allowed_hosts_pass() {
        let h = hooks(&["http://127.0.0.1:8080", "https://*.example.com"]);
        assert!(h.check("http://127.0.0.1:8080/x"));
        assert!(h.check("https://api.example.com/"));
        assert!(!h.check("http://127.0.0.1:8081/x"));
        assert!(!h.check("https://example.org/"));
        assert!(!hooks(&[]).check("http://127.0.0.1:8080/"));
    }

    #[tokio::test]
    async fn a_denied_p3_request_fails_with_http_request_denied() {
        let mut h = hooks(&["http://127.0.0.1:8080"]);
        let request = http::Request::get("http://127.0.0.1:9/")
            .body(empty_body())
            .unwrap();
        let outcome =
            Box::into_pin(h.send_request(request, None, Box::new(async { Ok(()) }))).await;
        let error = outcome.err().expect("request was not denied");
        assert!(matches!(
            error.downcast(),
            Ok(P3ErrorCode::HttpRequestDenied)
        ));
    }

    #[tokio::test]
    async fn an_allowed_p3_request_reaches_the_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let mut h = hooks(&[&format!("http://{addr}")]);
        let request = http::Request::get(format!("http://{addr}/"))
            .body(empty_body())
            .unwrap();
        let (response, _io) =
            Box::into_pin(h.send_request(request, None, Box::new(async { Ok(()) })))
                .await
                .map_err(|e| format!("{e:?}"))
                .unwrap();
        assert_eq!(response.status(), 204);
    }
}
