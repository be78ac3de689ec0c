//! The demo's API stack, one layer at a time, against the bare handler: the
//! address filter, the token layer (token cache, revocation check), the
//! CSRF guard, the space selection, then the handler's extractors, each on
//! one axum `route_layer` as the demo lays them, driven with `oneshot`. Each
//! case's median minus the one before is what that layer adds on its
//! accepting path.
//!
//! Run: `cargo bench --bench stack`

mod fixtures;
mod tokens;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fixtures::{Stage, call, credentials, request, router};

fn stack(c: &mut Criterion) {
    let (key, cookie) = credentials();
    let mut group = c.benchmark_group("stack");
    for stage in Stage::ALL {
        let router = router(stage, &key);
        // The first request verifies the token; every later one is served
        // from the token cache, as a browser's are.
        call(&router, request(&cookie));
        group.bench_function(stage.name(), |b| b.iter(|| call(&router, request(&cookie))));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    targets = stack
}
criterion_main!(benches);
