//! What a renewal costs: the whole refresh that renews an access cookie
//! (`LoginFlow::refresh`, no rotation: verify the refresh token, check its
//! revocation, read the account again, mint an access token), and the
//! account read on its own (`Authenticator::find` on `MemoryUsers`).
//!
//! Run: `cargo bench --bench renewal`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tower_authgate::login::{
    Authenticator, JwtIssuer, LoginFlow, MemoryUsers, NewUser, PairLifetimes, RefreshOptions,
    TokenIssuer,
};
use tower_authgate::token::SigningKey;

/// Polls a future that never waits (in-memory stores) to completion.
fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
    }
}

fn renewal(c: &mut Criterion) {
    let users = MemoryUsers::new().unwrap();
    for i in 0..1_000 {
        users
            .insert(
                NewUser::new(format!("user{i}"), "pw")
                    .spaces(["default_space", "production"])
                    .roles(["operator"]),
            )
            .unwrap();
    }
    let users = Arc::new(users);
    let issuer =
        Arc::new(JwtIssuer::new(SigningKey::generate_ed25519().unwrap(), "bench").unwrap());
    let flow = LoginFlow::new(users.clone(), issuer.clone());
    let principal = ready(users.find("user500")).unwrap().unwrap();
    let refresh = issuer
        .issue_pair(&principal, PairLifetimes::new())
        .unwrap()
        .refresh
        .unwrap()
        .token;
    let mut group = c.benchmark_group("renewal");
    group.bench_function("account_lookup", |b| {
        b.iter(|| ready(users.find(black_box("user500"))).is_ok_and(|found| found.is_some()))
    });
    group.bench_function("refresh_keeping", |b| {
        b.iter(|| ready(flow.refresh(black_box(&refresh), RefreshOptions::keeping())).is_ok())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    targets = renewal
}
criterion_main!(benches);
