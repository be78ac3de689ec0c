//! `AuthLayer` in front of a plain hyper service (no web framework).
//!
//! ```sh
//! cargo run --example hyper_bearer
//! ```
//!
//! It listens on 127.0.0.1:3000 (or `ADDR`), prints a token, and answers
//! `GET /` with the token's subject when the token is valid.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;
use tower_authgate::auth::AuthLayer;
use tower_authgate::clock::now_seconds;
use tower_authgate::token::{KeySet, SigningKey, TokenSources, VerifiedToken, Verifier};

#[derive(Clone, Serialize, Deserialize)]
struct MyClaims {
    sub: String,
}

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let subject = req
        .extensions()
        .get::<VerifiedToken>()
        .and_then(VerifiedToken::claims::<MyClaims>)
        .map(|claims| claims.sub.clone())
        .unwrap_or_default();
    Ok(Response::new(Full::from(format!("hello {subject}\n"))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = SigningKey::generate_ed25519()?.with_kid("example");
    let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build()?;
    let service = ServiceBuilder::new()
        .layer(AuthLayer::<MyClaims>::new(verifier).sources(TokenSources::bearer()))
        .service_fn(hello);

    let token = key.sign(&serde_json::json!({
        "sub": "admin", "exp": now_seconds() + 3600, "usefor": "access"
    }))?;
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}");
    println!("try: curl -H 'Authorization: Bearer {token}' http://{addr}/");

    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                eprintln!("connection error: {err}");
            }
        });
    }
}
