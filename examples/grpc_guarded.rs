//! A tonic gRPC service behind `AuthLayer`, `SelectSpaceLayer` and
//! `RequireLayer`, every refusal a gRPC status (`GrpcRejection`).
//!
//! ```sh
//! cargo run --example grpc_guarded
//! ```
//!
//! It serves gRPC over h2c (HTTP/2 without TLS) on 127.0.0.1:50051 (or
//! `ADDR`) and prints two tokens: one accepted by every method, one lacking
//! the role `auditor` that `Audit` requires. The methods come from
//! `examples/grpc_guarded/guarded.proto`: `WhoAmI` (unary) answers the
//! caller's subject, space and roles as the method reads them from the
//! verified claims; `Audit` (server-streaming) sends `count` events. The
//! token comes in the `authorization` metadata (`Bearer <token>`) or the
//! `x-api-token` metadata; the space in `x-space` (default: the token's
//! first space). With grpcurl:
//!
//! ```sh
//! grpcurl -plaintext -import-path examples/grpc_guarded -proto guarded.proto \
//!   -H "authorization: Bearer $TOKEN" -H 'x-space: plant-a' \
//!   127.0.0.1:50051 guarded.Guarded/WhoAmI
//! ```

#[path = "grpc_guarded/app.rs"]
mod app;

use tower_authgate::token::SigningKey;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let key = SigningKey::generate_ed25519()?.with_kid("example");
    let guard = app::guard(app::verifier(&key)?)?;
    let accepted = app::token(
        &key,
        "ann",
        &[app::AUDIT_ROLE],
        &["default_space", "plant-a"],
    )?;
    let lacking_role = app::token(&key, "bob", &["viewer"], &["default_space"])?;

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    println!("gRPC (h2c) listening on {addr}");
    println!("accepted token (role auditor; spaces default_space, plant-a): {accepted}");
    println!("token lacking the role auditor (space default_space): {lacking_role}");
    println!(
        "try: grpcurl -plaintext -import-path examples/grpc_guarded -proto guarded.proto \
         -H 'authorization: Bearer {accepted}' {addr} guarded.Guarded/WhoAmI"
    );
    app::serve(listener, guard, std::future::pending()).await?;
    Ok(())
}
