//! What guard scanning costs per KB of prompt, and per KB of a streamed
//! answer arriving a few characters per event.
//!
//! `cargo bench -p meridian-gateway --bench guard` (add `-- --quick` for a
//! short run). No network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a bench binary

use tokio::time::Instant;

use bytes::Bytes;
use meridian_config::{Builtin, Detector, Guard, GuardAction, GuardRule};
use meridian_gateway::guard::stream::StreamGuard;
use meridian_gateway::guard::{Direction, Guards};
use meridian_wire::event::Event;
use meridian_wire::eventstream;

const PROSE: &str = "The quarterly review covers revenue across the three regions, the \
    migration of the billing service, and the open questions from the audit. Latency in \
    the European deployment stayed under budget while traffic grew by a fifth. ";

const PII: [&str; 4] = [
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "+44 20 7946 0958",
];

fn guard(name: &str, action: GuardAction, extra: bool) -> Guard {
    let mut rules: Vec<GuardRule> = Builtin::ALL
        .iter()
        .map(|b| GuardRule {
            detector: Detector::Builtin(*b),
            action,
        })
        .collect();
    if extra {
        rules.push(GuardRule {
            detector: Detector::Regex {
                label: "TICKET".into(),
                pattern: r"\bTCK-[0-9]{6}\b".into(),
            },
            action,
        });
        rules.push(GuardRule {
            detector: Detector::Words {
                label: "CODENAME".into(),
                words: (0..500).map(|i| format!("codename{i}")).collect(),
            },
            action,
        });
    }
    Guard {
        name: name.into(),
        rules,
    }
}

/// About `kib` KiB of prose; with `pii`, one value every ~400 bytes.
fn text(kib: usize, pii: bool) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < kib * 1024 {
        s.push_str(PROSE);
        if pii {
            s.push_str(PII[i % PII.len()]);
            s.push(' ');
            i += 1;
        }
    }
    s
}

/// ns per KiB of `text` through the session's input scan.
fn scan(guards: &Guards, name: &str, text: &str, iters: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        let mut s = guards.session([Some(name), None]).unwrap();
        let out = s.text(text, Direction::Input, false).unwrap();
        std::hint::black_box(out);
    }
    t.elapsed().as_nanos() as f64 / iters as f64 / (text.len() as f64 / 1024.0)
}

/// ns per KiB of an answer streamed in deltas of `piece` bytes.
fn stream(guards: &Guards, name: &str, text: &str, piece: usize, iters: usize) -> f64 {
    let frames: Vec<Bytes> = text
        .as_bytes()
        .chunks(piece)
        .map(|c| {
            let v = serde_json::json!({"contentBlockIndex": 0, "delta": {"text": String::from_utf8_lossy(c)}});
            eventstream::event("contentBlockDelta", v.to_string().as_bytes())
        })
        .collect();
    let t = Instant::now();
    let mut out = Vec::new();
    for _ in 0..iters {
        let mut g = StreamGuard::new(guards.session([Some(name), None]).unwrap());
        for f in &frames {
            // Decoded, guarded and encoded again, as the Bedrock door does.
            out.clear();
            g.event(Event::from_frame(f.clone()).unwrap(), &mut out)
                .unwrap();
            for e in &out {
                std::hint::black_box(e.to_frame());
            }
        }
        g.finish(&mut out).unwrap();
        std::hint::black_box(&out);
    }
    t.elapsed().as_nanos() as f64 / iters as f64 / (text.len() as f64 / 1024.0)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 1 } else { 10 };
    let g = [
        guard("builtins", GuardAction::Mask, false),
        guard("everything", GuardAction::Mask, true),
        guard("anonymize", GuardAction::Anonymize, false),
    ];
    let guards = Guards::of(g.iter());
    println!("Guard input scan, ns per KiB of prompt (µs per 64 KiB prompt in brackets)");
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "", "1 KiB", "16 KiB", "64 KiB"
    );
    for (label, name, pii) in [
        ("8 built-in detectors, no PII", "builtins", false),
        (
            "8 built-in detectors, PII every ~400 B (mask)",
            "builtins",
            true,
        ),
        (
            "8 built-ins + regex + 500-word list, PII (mask)",
            "everything",
            true,
        ),
        (
            "8 built-in detectors, PII every ~400 B (anonymize)",
            "anonymize",
            true,
        ),
    ] {
        let mut row = Vec::new();
        for kib in [1, 16, 64] {
            let t = text(kib, pii);
            let iters = (2000 / kib).max(20) * scale;
            row.push(scan(&guards, name, &t, iters));
        }
        println!(
            "{label:<52} {:>10.0} {:>10.0} {:>10.0}  [{:.0} µs]",
            row[0],
            row[1],
            row[2],
            row[2] * 64.0 / 1000.0
        );
    }
    println!("\nGuard output on a stream, ns per KiB of answer (8 built-ins, mask)");
    for (label, pii, piece) in [
        ("4-byte deltas, no PII", false, 4),
        ("4-byte deltas, PII every ~400 B", true, 4),
        ("16-byte deltas, PII every ~400 B", true, 16),
    ] {
        let t = text(8, pii);
        println!(
            "{label:<52} {:>10.0}",
            stream(&guards, "builtins", &t, piece, 20 * scale)
        );
    }
}
