//! An HTTP server on 127.0.0.1, on a thread and runtime of its own, for the proxies tests put in
//! front of emulators: each request goes to a handler with the server's shared state. It stops
//! when dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A running server.
pub struct LocalServer {
    pub endpoint: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _thread: std::thread::JoinHandle<()>,
}

impl LocalServer {
    /// Serves every request with `handle(shared, request)`.
    pub fn start<S, H, F>(shared: Arc<S>, handle: H) -> LocalServer
    where
        S: Send + Sync + 'static,
        H: Fn(Arc<S>, Request<Incoming>) -> F + Copy + Send + Sync + 'static,
        F: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the server");
        listener.set_nonblocking(true).expect("non-blocking");
        let address: SocketAddr = listener.local_addr().expect("address");
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let accepted = tokio::select! {
                        accepted = listener.accept() => accepted,
                        _ = &mut stopped => return,
                    };
                    let Ok((stream, _)) = accepted else { continue };
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| handle(shared.clone(), request));
                        // A client that goes away mid-request is not the server's concern.
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        LocalServer {
            endpoint: format!("http://{address}"),
            _stop: stop,
            _thread: thread,
        }
    }
}
