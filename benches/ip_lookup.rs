//! IP rule lookup: compiled ranges (binary search) beside a linear `ipnet`
//! scan, with 10, 1,000 and 100,000 rules.
//!
//! Run: `cargo bench --bench ip_lookup`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tower_authgate::ip::IpRanges;

/// A small deterministic generator (xorshift64*), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn rules(count: usize, rng: &mut Rng) -> Vec<IpNet> {
    (0..count)
        .map(|i| {
            if i % 4 == 3 {
                let addr = ((rng.next() as u128) << 64) | rng.next() as u128;
                let prefix = 32 + (rng.next() % 97) as u8;
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), prefix).unwrap().trunc())
            } else {
                let prefix = 16 + (rng.next() % 17) as u8;
                IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), prefix)
                        .unwrap()
                        .trunc(),
                )
            }
        })
        .collect()
}

fn probes(rng: &mut Rng) -> Vec<IpAddr> {
    (0..1024)
        .map(|i| {
            if i % 4 == 3 {
                IpAddr::V6(Ipv6Addr::from(
                    ((rng.next() as u128) << 64) | rng.next() as u128,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
            }
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("ip_lookup");
    for count in [10usize, 1_000, 100_000] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ count as u64);
        let nets = rules(count, &mut rng);
        let compiled = IpRanges::new(nets.iter().copied());
        let probes = probes(&mut rng);
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::new("compiled", count), &count, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                compiled.contains(black_box(probes[i]))
            })
        });
        if count <= 1_000 {
            group.bench_with_input(BenchmarkId::new("linear_ipnet", count), &count, |b, _| {
                b.iter(|| {
                    i = (i + 1) & 1023;
                    let ip = black_box(probes[i]);
                    nets.iter().any(|net| net.contains(&ip))
                })
            });
        } else {
            // 100,000 networks scanned per lookup: fewer samples keep it short.
            group.sample_size(10);
            group.bench_with_input(BenchmarkId::new("linear_ipnet", count), &count, |b, _| {
                b.iter(|| {
                    i = (i + 1) & 1023;
                    let ip = black_box(probes[i]);
                    nets.iter().any(|net| net.contains(&ip))
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = lookup
}
criterion_main!(benches);
