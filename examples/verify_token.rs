//! Verifies tokens with this crate's `Verifier`, for interoperability tests
//! with other JWT libraries.
//!
//! Reads JSON lines `{"alg": "RS256", "key": "<path to PEM, or HMAC secret>",
//! "token": "…", "issuer": "…"?}` on standard input and prints one JSON line
//! per token: `{"accepted": true}` or `{"accepted": false, "error": "…"}`.
//!
//! ```sh
//! echo '{"alg":"HS256","key":"…","token":"…"}' | cargo run --example verify_token
//! ```

use std::io::{BufRead, Write};

use serde::Deserialize;
use serde_json::json;
use tower_authgate::token::{Algorithm, KeySet, Verifier, VerifyingKey};

#[derive(Deserialize)]
struct Input {
    alg: String,
    key: String,
    token: String,
    issuer: Option<String>,
}

fn verify(input: &Input) -> Result<(), String> {
    let alg: Algorithm = input
        .alg
        .parse()
        .map_err(|_| format!("unknown alg {}", input.alg))?;
    let key = if input.alg.starts_with("HS") {
        VerifyingKey::hmac(alg, input.key.as_bytes())
    } else {
        let pem = std::fs::read(&input.key).map_err(|e| format!("{}: {e}", input.key))?;
        VerifyingKey::from_pem(alg, &pem)
    }
    .map_err(|e| e.to_string())?;
    let mut builder = Verifier::builder(KeySet::single(key));
    if let Some(issuer) = &input.issuer {
        builder = builder.issuer(issuer.clone());
    }
    let verifier = builder.build().map_err(|e| e.to_string())?;
    verifier
        .verify::<serde_json::Value>(&input.token)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Input>(&line) {
            Ok(input) => match verify(&input) {
                Ok(()) => json!({"accepted": true}),
                Err(error) => json!({"accepted": false, "error": error}),
            },
            Err(error) => json!({"accepted": false, "error": format!("bad input: {error}")}),
        };
        writeln!(out, "{answer}")?;
    }
    Ok(())
}
