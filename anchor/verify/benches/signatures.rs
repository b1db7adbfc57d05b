//! Signature verification per core (issue 14's numbers): ES256 and Ed25519, each as a JWS
//! and as a COSE_Sign1 over a typical 400-byte event, parse plus verify; and Ed25519 batch
//! verification of 64 signatures, the lever for high-rate devices.
//!
//! `cargo bench -p veritrace-verify --bench signatures`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use veritrace_verify::signature::{
    Alg, Claims, SigningKey, parse_cose, parse_jws, sign_cose, sign_jws,
};

const EVENT: &str = r#"{"event_id":"plant-hu-02:press-07:000123456","event_type":"production","event_time":"2026-10-01T08:15:02.125Z","participant":{"id":"plant-hu-02","name":"E-Bike Frames Kft.","role":"manufacturer"},"object":{"product_id":"06945501102041","batch_number":"HU260927-0185"},"quantity":{"unit":"pcs","value":120},"site":"plant-hu-02/line-3","trace_code":"(01)06945501102041(10)HU260927-0185"}"#;

fn signatures(c: &mut Criterion) {
    let claims = Claims {
        iss: Some("press-07".into()),
        sub: Some("(01)06945501102041(10)HU260927-0185".into()),
        iat: Some(1_790_000_000),
    };
    let mut g = c.benchmark_group("signatures");
    g.throughput(Throughput::Elements(1));
    for alg in [Alg::Es256, Alg::EdDsa] {
        let key = SigningKey::from_bytes(alg, &[0x42; 32]).expect("key");
        let public = key.public();
        let jws = sign_jws(&key, "k", &claims, EVENT.as_bytes());
        let cose = sign_cose(&key, "k", &claims, EVENT.as_bytes());
        g.bench_function(format!("verify_jws_{}", alg.name()), |b| {
            b.iter(|| {
                parse_jws(&jws)
                    .expect("parse")
                    .verify(&public)
                    .expect("verifies")
            })
        });
        g.bench_function(format!("verify_cose_{}", alg.name()), |b| {
            b.iter(|| {
                parse_cose(&cose)
                    .expect("parse")
                    .verify(&public)
                    .expect("verifies")
            })
        });
        g.bench_function(format!("sign_cose_{}", alg.name()), |b| {
            b.iter(|| sign_cose(&key, "k", &claims, EVENT.as_bytes()))
        });
    }
    // Ed25519 batch verification: 64 signatures checked together.
    let keys: Vec<ed25519_dalek::SigningKey> = (0..64u8)
        .map(|i| ed25519_dalek::SigningKey::from_bytes(&[i; 32]))
        .collect();
    let messages: Vec<Vec<u8>> = (0..64)
        .map(|i| format!("{EVENT}{i}").into_bytes())
        .collect();
    let sigs: Vec<ed25519_dalek::Signature> = keys
        .iter()
        .zip(&messages)
        .map(|(k, m)| ed25519_dalek::Signer::sign(k, m))
        .collect();
    let vks: Vec<ed25519_dalek::VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("verify_batch_64_EdDSA", |b| {
        b.iter_batched(
            || messages.iter().map(Vec::as_slice).collect::<Vec<&[u8]>>(),
            |m| ed25519_dalek::verify_batch(&m, &sigs, &vks).expect("batch verifies"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, signatures);
criterion_main!(benches);
