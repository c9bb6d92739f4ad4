#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Model files round-trip, and every way of breaking one is a clear error, never a panic.

mod common;

use energyllm_core::{Mhz, PerfQuery};
use energyllm_models::file::{created_by, MAX_MODEL_FILE_BYTES};
use energyllm_models::tree::{Aggregate, Node, NodeKind};
use energyllm_models::{
    perf_features, GbtPerfParams, IterationRateParams, ModelFile, ModelMeta, Quantity, SavedModel,
    TrainingSummary, TreeEnsemble, WilkinsParams, WilkinsSample,
};

fn meta(family: &str) -> ModelMeta {
    ModelMeta {
        family: family.into(),
        description: "test".into(),
        features: energyllm_models::dataset::perf_feature_quantities(),
        targets: vec![Quantity::new("latency_s", "s"), Quantity::new("power_w", "W")],
        training: TrainingSummary { source: "synthetic".into(), rows: 500, ..TrainingSummary::default() },
        created_by: created_by(),
    }
}

fn gbt_file() -> ModelFile {
    let rows = common::synthetic_rows(500, 4);
    ModelFile { meta: meta("gbt"), model: SavedModel::Gbt(GbtPerfParams::default().fit(&rows).unwrap()) }
}

fn err_of(bytes: &[u8]) -> String {
    ModelFile::from_bytes(bytes, "test.elm").unwrap_err().to_string()
}

/// The payload's checksum, as the format defines it (FNV-1a 64).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[test]
fn every_family_round_trips_and_predicts_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let rows = common::synthetic_rows(500, 5);
    let samples: Vec<WilkinsSample> = [(8.0, 8.0), (8.0, 512.0), (512.0, 8.0), (512.0, 512.0), (64.0, 64.0)]
        .map(|(i, o)| WilkinsSample {
            input_tokens: i,
            output_tokens: o,
            energy_j: i + 2.0 * o + 0.01 * i * o + 1.0,
            runtime_s: 1.0 + o / 50.0,
        })
        .to_vec();
    let files = [
        gbt_file(),
        ModelFile {
            meta: meta("wilkins"),
            model: SavedModel::Wilkins(Box::new(WilkinsParams::default().fit(&samples, 32).unwrap())),
        },
        ModelFile {
            meta: meta("iteration-rate"),
            model: SavedModel::IterationRate(IterationRateParams::default().fit(&rows).unwrap()),
        },
    ];
    let q = PerfQuery { freq: Mhz(1200), batch: 4, prefill_tokens: 100, decode_tokens: 4, kv_tokens: 2000 };
    for file in files {
        let path = dir.path().join(format!("{}.elm", file.meta.family));
        file.save(&path).unwrap();
        let back = ModelFile::load(&path).unwrap();
        assert_eq!(back, file);
        if let SavedModel::IterationRate(m) = &back.model {
            assert!(m.iterations_per_s(Mhz(1200), 4, 2000) > 0.0);
            let Err(e) = back.into_perf_model() else { panic!("an iteration-rate model is not a PerfModel") };
            assert!(e.to_string().contains("iterations per second"), "{e}");
        } else {
            let a = file.clone().into_perf_model().unwrap().predict(&q);
            assert_eq!(back.into_perf_model().unwrap().predict(&q), a);
        }
    }
    // The file says what it reads, in order, with units.
    assert_eq!(meta("gbt").features[0], Quantity::new("freq_mhz", "MHz"));
    assert_eq!(perf_features(&q)[0], 1200.0);
}

#[test]
fn truncated_files_error_at_every_length() {
    let bytes = gbt_file().to_bytes().unwrap();
    for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        let e = err_of(&bytes[..len]);
        assert!(e.contains("truncated") || e.contains("magic"), "{len}: {e}");
    }
    let e = err_of(&bytes[..bytes.len() - 1]);
    assert!(e.contains("test.elm") && e.contains("truncated"), "{e}");
}

#[test]
fn wrong_version_magic_and_trailing_bytes_are_named() {
    let mut bytes = gbt_file().to_bytes().unwrap();
    bytes[8] = 9;
    let e = err_of(&bytes);
    assert!(e.contains("format version 9") && e.contains("refit"), "{e}");
    bytes[8] = 1;
    bytes[0] = b'X';
    assert!(err_of(&bytes).contains("magic"));
    bytes[0] = b'E';
    bytes.push(0);
    assert!(err_of(&bytes).contains("trailing"));
}

#[test]
fn oversized_files_are_refused_before_reading() {
    let mut bytes = gbt_file().to_bytes().unwrap();
    bytes[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err_of(&bytes).contains("over the"), "{}", err_of(&bytes));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.elm");
    // Sparse: no disk or memory is used, and load must refuse it from its size alone.
    std::fs::File::create(&path).unwrap().set_len(MAX_MODEL_FILE_BYTES + 1).unwrap();
    let e = ModelFile::load(&path).unwrap_err().to_string();
    assert!(e.contains("huge.elm") && e.contains("over the"), "{e}");
}

#[test]
fn corrupt_payloads_are_caught_by_checksum_and_by_validation() {
    let bytes = gbt_file().to_bytes().unwrap();
    let mut flipped = bytes.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 0x40;
    assert!(err_of(&flipped).contains("checksum"));
    // A payload with a valid checksum but nonsense inside: decoding fails cleanly.
    let mut garbage = bytes[..28].to_vec();
    let payload = vec![0xffu8; 64];
    garbage[12..20].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    garbage[20..28].copy_from_slice(&fnv1a64(&payload).to_le_bytes());
    garbage.extend(&payload);
    assert!(err_of(&garbage).contains("cannot decode"), "{}", err_of(&garbage));
}

#[test]
fn a_tree_that_points_backwards_is_refused_on_decode() {
    // The ensemble's serialised layout, mirrored field for field (postcard is not
    // self-describing, so this encodes exactly what a file would hold).
    #[derive(serde::Serialize)]
    struct Raw {
        n_features: u32,
        nodes: Vec<Node>,
        roots: Vec<u32>,
        base: f64,
        aggregate: Aggregate,
    }
    let branch = Node {
        kind: NodeKind::Lt,
        feature: 0,
        value: 1.0,
        true_child: 1,
        false_child: 0,
        missing_true: false,
    };
    let raw = Raw {
        n_features: 1,
        nodes: vec![branch, Node::leaf(1.0)],
        roots: vec![0],
        base: 0.0,
        aggregate: Aggregate::Sum,
    };
    let bytes = postcard::to_allocvec(&raw).unwrap();
    let e = postcard::from_bytes::<TreeEnsemble>(&bytes).unwrap_err().to_string();
    assert!(!e.is_empty());
    // The same nodes in order decode fine, so the refusal is the validation's.
    let ok = Raw { nodes: vec![Node { false_child: 2, ..branch }, Node::leaf(1.0), Node::leaf(2.0)], ..raw };
    let t: TreeEnsemble = postcard::from_bytes(&postcard::to_allocvec(&ok).unwrap()).unwrap();
    assert_eq!((t.predict(&[0.5]), t.predict(&[1.5])), (1.0, 2.0));
}

#[test]
fn mutated_payloads_never_panic() {
    let file = gbt_file();
    let mut payload = postcard::to_allocvec(&file).unwrap();
    // About 300 positions spread over the payload, each set to three values.
    for i in (0..payload.len()).step_by((payload.len() / 300).max(1)) {
        let saved = payload[i];
        for v in [0u8, 0x7f, 0xff] {
            payload[i] = v;
            let mut bytes = b"ELLMMODL".to_vec();
            bytes.extend(1u16.to_le_bytes());
            bytes.extend(0u16.to_le_bytes());
            bytes.extend((payload.len() as u64).to_le_bytes());
            bytes.extend(fnv1a64(&payload).to_le_bytes());
            bytes.extend(&payload);
            // Either it still decodes (a changed number) or it is a named error.
            if let Err(e) = ModelFile::from_bytes(&bytes, "mutated.elm") {
                assert!(e.to_string().contains("mutated.elm"));
            }
        }
        payload[i] = saved;
    }
}
