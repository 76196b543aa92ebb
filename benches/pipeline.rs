//! The hot paths, piece by piece: decoding (and checking) each envelope kind, translation
//! plus store update for existing and for new series, the same for the RLP's protobuf and
//! the RLP gateway's JSON batches (and the RLP's with maps in a random order,
//! as Go senders write them), the exposition of 10k, 100k and 1M series in both formats, and
//! a remote-write request of the workload's series (encoding, then snappy).
//!
//! `cargo bench --bench pipeline`; figures are per envelope or per scrape.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cf_firehose_exporter::envelope;
use cf_firehose_exporter::exposition::{Exposition, Format};
use cf_firehose_exporter::ingest::Ingest;
use cf_firehose_exporter::naming::native::NativeScheme;
use cf_firehose_exporter::naming::{MetricKind, SeriesUpdate, Value};
use cf_firehose_exporter::naming::{Naming, Scheme};
use cf_firehose_exporter::sim::args::WorkloadArgs;
use cf_firehose_exporter::sim::v2::{batch_json, to_v2};
use cf_firehose_exporter::sim::workload::Workload;
use cf_firehose_exporter::source::Wire;
use cf_firehose_exporter::store::SeriesStore;
use cf_firehose_exporter::telemetry::Telemetry;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

use cf_firehose_exporter::envelope::vectors::{
    CONTAINER_METRIC, COUNTER_EVENT, VALUE_METRIC, bytes as hex,
};

/// One round of the simulated foundation's workload, encoded: every series once.
fn workload_round() -> Vec<Bytes> {
    let mut workload = Workload::new(&WorkloadArgs {
        rate: 0,
        cells: 50,
        apps: 500,
        seed: 1,
    });
    (0..workload.round_len())
        .map(|_| Bytes::from(workload.next_envelope().encode_to_vec()))
        .collect()
}

/// The same round as the RLP sends it: v2 envelopes, protobuf batches of
/// 100. Returns the batches and how many envelopes they hold.
fn rlp_round() -> (Vec<Bytes>, u64) {
    let envelopes = v2_round();
    let batches = envelopes
        .chunks(100)
        .map(|chunk| {
            let batch = envelope::v2::EnvelopeBatch {
                batch: chunk.to_vec(),
            };
            Bytes::from(batch.encode_to_vec())
        })
        .collect();
    (batches, envelopes.len() as u64)
}

/// The same batches with every envelope's tags written in a random order,
/// as Go senders write maps (the order of their map's iteration), a new
/// order in each of `variants` copies of the round.
fn rlp_rounds_shuffled(variants: u64) -> (Vec<Vec<Bytes>>, u64) {
    use prost::encoding::{WireType, encode_key, encode_varint};
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let envelopes = v2_round();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut encode = |envelope: &envelope::v2::Envelope| {
        let mut entries: Vec<(&String, &String)> = envelope.tags.iter().collect();
        entries.shuffle(&mut rng);
        let without = envelope::v2::Envelope {
            tags: Default::default(),
            ..envelope.clone()
        };
        let mut out = without.encode_to_vec();
        for (key, value) in entries {
            let mut entry = Vec::new();
            prost::encoding::string::encode(1, key, &mut entry);
            prost::encoding::string::encode(2, value, &mut entry);
            encode_key(9, WireType::LengthDelimited, &mut out);
            encode_varint(entry.len() as u64, &mut out);
            out.extend_from_slice(&entry);
        }
        out
    };
    let rounds = (0..variants)
        .map(|_| {
            envelopes
                .chunks(100)
                .map(|chunk| {
                    let mut batch = Vec::new();
                    for envelope in chunk {
                        let encoded = encode(envelope);
                        encode_key(1, WireType::LengthDelimited, &mut batch);
                        encode_varint(encoded.len() as u64, &mut batch);
                        batch.extend_from_slice(&encoded);
                    }
                    Bytes::from(batch)
                })
                .collect()
        })
        .collect();
    (rounds, envelopes.len() as u64)
}

/// The round's envelopes in their v2 form.
fn v2_round() -> Vec<envelope::v2::Envelope> {
    let mut workload = Workload::new(&WorkloadArgs {
        rate: 0,
        cells: 50,
        apps: 500,
        seed: 1,
    });
    (0..workload.round_len())
        .filter_map(|_| to_v2(&workload.next_envelope()))
        .collect()
}

/// The same round as the RLP gateway sends it: v2 envelopes, JSON batches
/// of 100. Returns the batches and how many envelopes they hold.
fn gateway_round() -> (Vec<Bytes>, u64) {
    let envelopes = v2_round();
    let batches = envelopes
        .chunks(100)
        .map(|chunk| Bytes::from(batch_json(chunk)))
        .collect();
    (batches, envelopes.len() as u64)
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, vector) in [
        ("value_metric", VALUE_METRIC),
        ("counter_event", COUNTER_EVENT),
        ("container_metric", CONTAINER_METRIC),
    ] {
        let frame = Bytes::from(hex(vector));
        group.bench_function(name, |b| {
            b.iter(|| envelope::with_checked(&frame, |e| e.map(|e| e.tags.len()).unwrap()))
        });
    }
    let round = workload_round();
    group.throughput(Throughput::Elements(round.len() as u64));
    group.bench_function("workload_round", |b| {
        b.iter(|| {
            for frame in &round {
                let _ = envelope::with_checked(frame, |e| e.map(|e| e.tags.len()));
            }
        })
    });
    let (batches, envelopes) = gateway_round();
    group.throughput(Throughput::Elements(envelopes));
    group.bench_function("gateway_round", |b| {
        b.iter(|| {
            for batch in &batches {
                let _ = envelope::v2::decode_batch_json(batch).map(|b| b.batch.len());
            }
        })
    });
    group.finish();
}

/// Ingestion into an empty store, under the native scheme as the exporter
/// runs it.
fn fresh_ingest() -> Ingest<Scheme> {
    fresh_ingest_with(&Naming::Native)
}

/// Ingestion into an empty store, under the Go exporter's names.
fn fresh_compat_ingest() -> Ingest<Scheme> {
    fresh_ingest_with(&Naming::Compat {
        namespace: "firehose".into(),
        delta: false,
        node_index: "0".into(),
    })
}

fn fresh_ingest_with(naming: &Naming) -> Ingest<Scheme> {
    let telemetry = Telemetry::new();
    let store = Arc::new(SeriesStore::new(
        Duration::from_secs(600),
        telemetry.clone(),
    ));
    Ingest::new(naming.scheme(NativeScheme::default()), store, telemetry)
}

fn ingest(c: &mut Criterion) {
    let round = workload_round();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(round.len() as u64));
    for (name, fresh) in [
        ("existing_series", fresh_ingest as fn() -> Ingest<Scheme>),
        ("existing_series_compat", fresh_compat_ingest),
    ] {
        group.bench_function(name, |b| {
            let mut ingest = fresh();
            ingest.batch(&round);
            b.iter(|| ingest.batch(&round));
        });
    }
    for (name, fresh) in [
        ("new_series", fresh_ingest as fn() -> Ingest<Scheme>),
        ("new_series_compat", fresh_compat_ingest),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                fresh,
                // Returned, so that dropping the store is not measured.
                |mut ingest| {
                    ingest.batch(&round);
                    ingest
                },
                criterion::BatchSize::LargeInput,
            );
        });
    }
    for (name, wire, (batches, envelopes)) in [
        ("rlp_existing_series", Wire::V2Proto, rlp_round()),
        ("gateway_existing_series", Wire::V2Json, gateway_round()),
    ] {
        group.throughput(Throughput::Elements(envelopes));
        group.bench_function(name, |b| {
            let mut ingest = fresh_ingest();
            ingest.batch_of(wire, &batches);
            b.iter(|| ingest.batch_of(wire, &batches));
        });
    }
    // Each round in another order of the maps: what the real RLP sends.
    let (rounds, envelopes) = rlp_rounds_shuffled(4);
    group.throughput(Throughput::Elements(envelopes));
    group.bench_function("rlp_existing_series_shuffled_maps", |b| {
        let mut ingest = fresh_ingest();
        rounds
            .iter()
            .for_each(|round| ingest.batch_of(Wire::V2Proto, round));
        let mut next = rounds.iter().cycle();
        b.iter(|| ingest.batch_of(Wire::V2Proto, next.next().unwrap_or(&rounds[0])));
    });
    group.finish();
}

/// A store of `n` series shaped like the foundation's: a few hundred
/// families, container-style label sets.
fn store_of(n: usize) -> Exposition {
    let telemetry = Telemetry::new();
    let store = Arc::new(SeriesStore::new(
        Duration::from_secs(600),
        telemetry.clone(),
    ));
    let now = tokio::time::Instant::now();
    for i in 0..n {
        let family = format!("metric_{}", i % 200);
        store.apply(
            SeriesUpdate {
                family: family.clone(),
                kind: if i % 200 < 40 {
                    MetricKind::Counter
                } else {
                    MetricKind::Gauge
                },
                original: family,
                labels: vec![
                    ("app_name".into(), format!("app-{}", i / 200 % 1000)),
                    ("bosh_deployment".into(), "cf".into()),
                    ("bosh_job_name".into(), "diego-cell".into()),
                    ("instance_id".into(), (i / 200_000).to_string()),
                    ("origin".into(), "rep".into()),
                    (
                        "source_id".into(),
                        format!("f47ac10b-58cc-4372-a567-{:012x}", i / 200),
                    ),
                ],
                value: Value::Set(i as f64 * 1.5),
                buckets: Vec::new(),
            },
            now,
        );
    }
    Exposition::new(store, telemetry)
}

fn exposition(c: &mut Criterion) {
    let mut group = c.benchmark_group("exposition");
    group.sample_size(10);
    for n in [10_000usize, 100_000, 1_000_000] {
        let exposition = store_of(n);
        group.throughput(Throughput::Elements(n as u64));
        for (name, format) in [
            ("text", Format::PrometheusText),
            ("openmetrics", Format::OpenMetrics),
        ] {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| exposition.encode(format).len())
            });
        }
    }
    group.finish();
}

/// Remote-write requests of the default 2,000 samples, drawn in turn from
/// every gauge and counter of the workload's store: the protobuf alone, and
/// the body as sent (snappy-compressed).
fn remote_write(c: &mut Criterion) {
    use cf_firehose_exporter::exposition::remote_write::{
        Sample, SeriesRef, compress, write_request,
    };
    let telemetry = Telemetry::new();
    let store = Arc::new(SeriesStore::new(
        Duration::from_secs(600),
        telemetry.clone(),
    ));
    let mut ingest = Ingest::new(
        Naming::Native.scheme(NativeScheme::default()),
        store.clone(),
        telemetry,
    );
    ingest.batch(&workload_round());
    let mut samples = Vec::new();
    for family in store.snapshot() {
        for (labels, value) in &family.series {
            samples.push(Sample {
                series: SeriesRef::Stored {
                    family: cf_firehose_exporter::store::Text::new(&family.name),
                    suffix: family.kind.suffix(),
                    labels: labels.clone(),
                },
                value: *value,
                timestamp_ms: 1_764_000_000_000 + samples.len() as i64,
            });
        }
    }
    let batch: Vec<Sample> = samples.iter().cycle().take(2_000).cloned().collect();
    let external = [("foundation".to_owned(), "prod".to_owned())];
    let mut group = c.benchmark_group("remote_write");
    group.throughput(Throughput::Elements(batch.len() as u64));
    let mut raw = Vec::new();
    group.bench_function("encode_2000", |b| {
        b.iter(|| {
            raw.clear();
            write_request(&batch, &external, &mut raw);
            raw.len()
        })
    });
    group.bench_function("encode_and_compress_2000", |b| {
        b.iter(|| {
            raw.clear();
            write_request(&batch, &external, &mut raw);
            compress(&raw).len()
        })
    });
    raw.clear();
    write_request(&batch, &external, &mut raw);
    println!(
        "remote_write: {} series, {:.0} bytes a sample encoded, {:.1} compressed",
        samples.len(),
        raw.len() as f64 / batch.len() as f64,
        compress(&raw).len() as f64 / batch.len() as f64
    );
    group.finish();
}

criterion_group!(benches, decode, ingest, exposition, remote_write);
criterion_main!(benches);
