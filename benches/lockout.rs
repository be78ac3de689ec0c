//! Lockout store: a check on an unlocked account, and recording failures
//! while a second thread records failures on the same account.
//!
//! Run: `cargo bench --bench lockout`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tower_authgate::store::{LockoutPolicy, MemoryLockoutStore};

fn lockout(c: &mut Criterion) {
    let store = Arc::new(MemoryLockoutStore::default());
    let policy = LockoutPolicy::default().with_max_failures(u32::MAX);
    // A populated store: 10,000 accounts with failures, none locked.
    for i in 0..10_000 {
        store
            .record_failure_now(&format!("user{i}"), &policy, 1_000)
            .unwrap();
    }
    store.record_failure_now("admin", &policy, 1_000).unwrap();

    let mut group = c.benchmark_group("lockout");
    group.bench_function("check_unlocked_with_failures", |b| {
        b.iter(|| store.locked_until_now(black_box("admin"), 1_001).unwrap())
    });
    group.bench_function("check_untracked", |b| {
        b.iter(|| store.locked_until_now(black_box("nobody"), 1_001).unwrap())
    });
    group.bench_function("record_failure_uncontended", |b| {
        b.iter(|| {
            store
                .record_failure_now(black_box("admin"), &policy, 1_001)
                .unwrap()
        })
    });
    group.bench_function("record_failure_2_threads_same_account", |b| {
        b.iter_custom(|iterations| {
            let stop = Arc::new(AtomicBool::new(false));
            let rival = {
                let store = Arc::clone(&store);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        store.record_failure_now("victim", &policy, 1_001).unwrap();
                    }
                })
            };
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(
                    store
                        .record_failure_now(black_box("victim"), &policy, 1_001)
                        .unwrap(),
                );
            }
            let elapsed = start.elapsed();
            stop.store(true, Ordering::Relaxed);
            rival.join().unwrap();
            elapsed
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = lockout
}
criterion_main!(benches);
