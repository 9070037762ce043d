// `demo.Greeter`, a small gRPC service written out by hand: the code
// tonic-build would generate (server and client) from
//
//     package demo;
//     service Greeter {
//       rpc SayHello (HelloRequest) returns (HelloReply);
//       rpc Count (CountRequest) returns (stream CountReply);
//     }
//
// so that the example and the tests build without protoc. Included with
// `#[path = "..."] mod greeter;` by `examples/grpc.rs`, the gRPC tests and
// the gRPC bench.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::missing_docs_in_private_items)]

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::codegen::{Body, BoxFuture, Bytes, StdError, http, tokio_stream};

/// `demo.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `demo.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// `demo.CountRequest`: count to `n`, one reply every `interval_ms`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CountRequest {
    #[prost(uint32, tag = "1")]
    pub n: u32,
    #[prost(uint64, tag = "2")]
    pub interval_ms: u64,
}

/// `demo.CountReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CountReply {
    #[prost(uint32, tag = "1")]
    pub i: u32,
}

/// The service's name.
pub const SERVICE_NAME: &str = "demo.Greeter";

/// What a `demo.Greeter` server implements.
pub trait Greeter: Send + Sync + 'static {
    /// The stream of `Count` replies.
    type CountStream: tokio_stream::Stream<Item = Result<CountReply, tonic::Status>> + Send + 'static;

    fn say_hello(
        &self,
        request: tonic::Request<HelloRequest>,
    ) -> impl Future<Output = Result<tonic::Response<HelloReply>, tonic::Status>> + Send;

    fn count(
        &self,
        request: tonic::Request<CountRequest>,
    ) -> impl Future<Output = Result<tonic::Response<Self::CountStream>, tonic::Status>> + Send;
}

/// The tonic service of a [`Greeter`].
#[derive(Debug)]
pub struct GreeterServer<T> {
    inner: Arc<T>,
}

impl<T> GreeterServer<T> {
    pub fn new(inner: T) -> Self {
        Self { inner: Arc::new(inner) }
    }
}

impl<T> Clone for GreeterServer<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T> tonic::server::NamedService for GreeterServer<T> {
    const NAME: &'static str = SERVICE_NAME;
}

struct SayHelloSvc<T>(Arc<T>);

impl<T: Greeter> tonic::server::UnaryService<HelloRequest> for SayHelloSvc<T> {
    type Response = HelloReply;
    type Future = BoxFuture<tonic::Response<HelloReply>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.say_hello(request).await })
    }
}

struct CountSvc<T>(Arc<T>);

impl<T: Greeter> tonic::server::ServerStreamingService<CountRequest> for CountSvc<T> {
    type Response = CountReply;
    type ResponseStream = T::CountStream;
    type Future = BoxFuture<tonic::Response<T::CountStream>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<CountRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.count(request).await })
    }
}

impl<T, B> tonic::codegen::Service<http::Request<B>> for GreeterServer<T>
where
    T: Greeter,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        match req.uri().path() {
            "/demo.Greeter/SayHello" => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(SayHelloSvc(inner), req).await)
            }),
            "/demo.Greeter/Count" => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.server_streaming(CountSvc(inner), req).await)
            }),
            // An unknown method: a trailers-only UNIMPLEMENTED, as generated.
            _ => Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(tonic::Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
                headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            }),
        }
    }
}

/// A `demo.Greeter` client.
#[derive(Debug, Clone)]
pub struct GreeterClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> GreeterClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    pub fn new(inner: T) -> Self {
        Self { inner: tonic::client::Grpc::new(inner) }
    }

    async fn ready(&mut self) -> Result<(), tonic::Status> {
        self.inner.ready().await.map_err(|e| tonic::Status::unknown(format!("not ready: {}", e.into())))
    }

    pub async fn say_hello(
        &mut self,
        request: impl tonic::IntoRequest<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        self.unary_at("/demo.Greeter/SayHello", request).await
    }

    /// A unary call with `HelloRequest` to any path (an unknown method, say).
    pub async fn unary_at(
        &mut self,
        path: &'static str,
        request: impl tonic::IntoRequest<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        self.ready().await?;
        let path = http::uri::PathAndQuery::from_static(path);
        self.inner.unary(request.into_request(), path, tonic_prost::ProstCodec::default()).await
    }

    pub async fn count(
        &mut self,
        request: impl tonic::IntoRequest<CountRequest>,
    ) -> Result<tonic::Response<tonic::Streaming<CountReply>>, tonic::Status> {
        self.ready().await?;
        let path = http::uri::PathAndQuery::from_static("/demo.Greeter/Count");
        self.inner.server_streaming(request.into_request(), path, tonic_prost::ProstCodec::default()).await
    }
}

/// A stream of replies, boxed.
pub type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send>>;

/// A greeter that says hello, and has no `Count` here: it answers it with
/// `UNIMPLEMENTED` ("not here"), from a method the server serves.
pub struct Hello;

impl Greeter for Hello {
    type CountStream = BoxStream<CountReply>;

    async fn say_hello(
        &self,
        request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        Ok(tonic::Response::new(HelloReply { message: format!("Hello, {}!", request.into_inner().name) }))
    }

    async fn count(
        &self,
        _request: tonic::Request<CountRequest>,
    ) -> Result<tonic::Response<Self::CountStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }
}
