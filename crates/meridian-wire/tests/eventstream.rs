//! Framing against the official vectors shipped in aws-smithy-eventstream's
//! package, the reference's messageStart vector, and round-trip properties.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::PathBuf;

use meridian_wire::eventstream::{self, Decoder, FrameKind, decode_one};
use proptest::prelude::*;

/// `test_data/` of the aws-smithy-eventstream package cargo downloaded.
fn vectors_dir() -> PathBuf {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "aws-smithy-eventstream")
        .expect("aws-smithy-eventstream in the dependency graph");
    PathBuf::from(pkg["manifest_path"].as_str().unwrap())
        .parent()
        .unwrap()
        .join("test_data")
}

#[test]
fn official_valid_vectors_decode_and_reencode() {
    let dir = vectors_dir();
    for name in [
        "valid_empty_payload",
        "valid_no_headers",
        "valid_with_all_headers_and_payload",
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        // Whole and byte by byte: HTTP chunks never align with frames.
        decode_one(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut d = Decoder::new();
        let mut frames = 0;
        for b in &bytes {
            d.push(&[*b]);
            while let Some(_f) = d.next_frame().unwrap() {
                frames += 1;
            }
        }
        assert_eq!(frames, 1, "{name}");
        assert_eq!(d.pending(), 0);
    }
}

#[test]
fn official_invalid_vectors_are_rejected() {
    let dir = vectors_dir();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("invalid_") {
            continue;
        }
        seen += 1;
        let bytes = std::fs::read(&path).unwrap();
        assert!(decode_one(&bytes).is_err(), "{name} decoded");
    }
    assert_eq!(seen, 8);
}

#[test]
fn message_start_matches_the_reference_vector() {
    let expected = "000000760000005296d5fade0b3a6576656e742d7479706507000c6d65737361676553746172740d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b22726f6c65223a22617373697374616e74227d6fa8c599";
    let frame = eventstream::event("messageStart", br#"{"role":"assistant"}"#);
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, expected);
}

proptest! {
    #[test]
    fn events_round_trip(event_type in "[a-zA-Z]{1,30}", payload in proptest::collection::vec(any::<u8>(), 0..2048), split in 1usize..64) {
        let bytes = eventstream::event(&event_type, &payload);
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for chunk in bytes.chunks(split) {
            d.push(chunk);
            while let Some(f) = d.next_frame().unwrap() { got.push(f); }
        }
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(&got[0].kind, &FrameKind::Event(event_type));
        prop_assert_eq!(got[0].payload.as_ref(), payload.as_slice());
    }

    #[test]
    fn exceptions_round_trip(member in "[a-z][a-zA-Z]{1,30}", message in ".{0,200}") {
        let payload = serde_json::json!({"message": message}).to_string();
        let f = decode_one(&eventstream::exception(&member, payload.as_bytes())).unwrap();
        prop_assert_eq!(f.kind, FrameKind::Exception(member));
        prop_assert_eq!(f.payload.as_ref(), payload.as_bytes());
    }
}
