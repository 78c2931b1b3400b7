//! The HTTP trigger: routes each request to its component, with the request headers
//! Spin adds (`spin-full-url`, `spin-path-info`, ...), and runs it: a WASIp2 component
//! in a fresh instance, a WASIp3 one on a reused instance (`http_p3`). No route means
//! 404, as Spin answers; a trapping component means 500.

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::WasiHttpView;

use crate::app::{App, HttpHandler};
use crate::routes::RouteMatch;

/// Serves the application's HTTP routes on `listener` until the task is dropped.
pub async fn serve(app: Arc<App>, listener: TcpListener) -> Result<()> {
    loop {
        let (stream, client) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(app, req, client).await) }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection from {client}: {e}");
            }
        });
    }
}

fn plain(status: u16, text: &'static str) -> hyper::Response<HyperOutgoingBody> {
    hyper::Response::builder()
        .status(status)
        .body(
            Full::new(Bytes::from_static(text.as_bytes()))
                .map_err(|e| match e {})
                .boxed_unsync(),
        )
        .expect("static response")
}

/// One request: route, add Spin's headers, run the component.
pub async fn handle(
    app: Arc<App>,
    mut req: hyper::Request<Incoming>,
    client: SocketAddr,
) -> hyper::Response<HyperOutgoingBody> {
    let Some(route) = app.router.route(req.uri().path()) else {
        return plain(404, "Not Found");
    };
    if let Err(e) = add_spin_headers(&mut req, &route, client) {
        tracing::warn!("bad request: {e}");
        return plain(400, "Bad Request");
    }
    match run(&app, &route.component, req).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(component = %route.component, "{}", app.variables.redact(&format!("{e:#}")));
            plain(500, "Internal Server Error")
        }
    }
}

fn add_spin_headers(
    req: &mut hyper::Request<Incoming>,
    route: &RouteMatch,
    client: SocketAddr,
) -> Result<()> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let mut pairs = vec![
        ("spin-path-info".to_string(), route.path_info.clone()),
        (
            "spin-full-url".to_string(),
            format!("http://{host}{path_and_query}"),
        ),
        ("spin-matched-route".to_string(), route.based_route.clone()),
        ("spin-base-path".to_string(), "/".to_string()),
        (
            "spin-raw-component-route".to_string(),
            route.raw_route.clone(),
        ),
        (
            "spin-component-route".to_string(),
            route.component_route.clone(),
        ),
        ("spin-client-addr".to_string(), client.to_string()),
    ];
    for (name, value) in &route.named {
        pairs.push((
            format!("spin-path-match-{}", name.to_ascii_lowercase()),
            value.clone(),
        ));
    }
    let headers = req.headers_mut();
    for (name, value) in pairs {
        headers.insert(
            http::header::HeaderName::from_bytes(name.as_bytes())?,
            http::header::HeaderValue::from_str(&value)?,
        );
    }
    Ok(())
}

async fn run(
    app: &App,
    component: &str,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    let loaded = app.component(component)?;
    let proxy = match &loaded.http {
        Some(HttpHandler::P2(proxy)) => proxy.clone(),
        Some(HttpHandler::P3(handler)) => {
            return crate::http_p3::execute(handler, with_absolute_uri(req)?).await
        }
        None => anyhow::bail!("component {component:?} is not an HTTP component"),
    };
    let mut store = app.store(loaded);
    let wasm = anyhow::Error::from;
    let request = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)
        .map_err(wasm)?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .map_err(wasm)?;

    // The guest may keep running (streaming the body) after it has sent the head.
    let task = tokio::spawn(async move {
        let instance = proxy.instantiate_async(&mut store).await?;
        instance
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, out)
            .await
    });
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => anyhow::bail!("component answered with error {code:?}"),
        Err(_) => match task.await {
            Ok(Ok(())) => anyhow::bail!("component never set a response"),
            Ok(Err(e)) => Err(anyhow::anyhow!("{e:?}")),
            Err(e) => Err(e.into()),
        },
    }
}

/// The request with `http://<host>` in its URI, as Spin hands WASIp3 guests their
/// requests (WASIp2's incoming request carries the scheme and authority separately).
fn with_absolute_uri(mut req: hyper::Request<Incoming>) -> Result<hyper::Request<Incoming>> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(host.parse()?);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = http::Uri::from_parts(parts)?;
    Ok(req)
}
