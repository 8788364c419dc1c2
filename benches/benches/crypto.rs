//! Criterion benches of envelope encryption for a typical secret (a 24-byte password): seal,
//! open, create (new data key + seal), unwrap, and rewrap (both outcomes).
//!
//! Run: `cargo bench -p datahub-benches --bench crypto`.

// A bench whose set-up fails is a bug in the bench: unwrapping is the clearest report.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datahub_core::ConnectionId;
use datahub_core::crypto::{Keyring, Rewrap, SealedValue};

/// Fixed, public bench keys (never used anywhere else).
const OLD_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const NEW_KEY: &str = "ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q=";
/// A typical password: 24 bytes.
const PASSWORD: &[u8; 24] = b"Tr0ub4dor&3-correct-hors";

fn crypto(c: &mut Criterion) {
    let old = Keyring::parse(&format!("k1:{OLD_KEY}")).unwrap();
    let rotated = Keyring::parse(&format!("k2:{NEW_KEY},k1:{OLD_KEY}")).unwrap();
    let id = ConnectionId::new();
    let (dek, wrapped) = old.new_dek(id).unwrap();
    let sealed = dek.seal(id, "password", PASSWORD).unwrap();
    let stored = sealed.to_bytes();

    let mut group = c.benchmark_group("crypto");
    group.throughput(Throughput::Bytes(PASSWORD.len() as u64));
    group.bench_function("seal_24B", |b| {
        b.iter(|| {
            dek.seal(black_box(id), "password", black_box(PASSWORD))
                .unwrap()
        })
    });
    group.bench_function("open_24B", |b| {
        b.iter(|| {
            dek.open(black_box(id), "password", black_box(&sealed))
                .unwrap()
        })
    });
    group.bench_function("parse_and_open_24B", |b| {
        b.iter(|| {
            let sealed = SealedValue::parse(black_box(&stored)).unwrap();
            dek.open(id, "password", &sealed).unwrap()
        })
    });
    group.bench_function("create_new_dek_and_seal_24B", |b| {
        b.iter(|| {
            let (dek, wrapped) = old.new_dek(black_box(id)).unwrap();
            (dek.seal(id, "password", PASSWORD).unwrap(), wrapped)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("keyring");
    group.bench_function("unwrap_dek", |b| {
        b.iter(|| old.unwrap_dek(black_box(id), black_box(&wrapped)).unwrap())
    });
    group.bench_function("rewrap_to_new_kek", |b| {
        b.iter(
            || match rotated.rewrap(black_box(id), black_box(&wrapped)) {
                Ok(Rewrap::Rewrapped(w)) => w,
                other => panic!("expected a rewrap, got {other:?}"),
            },
        )
    });
    group.bench_function("rewrap_already_active", |b| {
        b.iter(|| match old.rewrap(black_box(id), black_box(&wrapped)) {
            Ok(Rewrap::AlreadyActive) => (),
            other => panic!("expected already active, got {other:?}"),
        })
    });
    group.finish();
}

criterion_group!(benches, crypto);
criterion_main!(benches);
