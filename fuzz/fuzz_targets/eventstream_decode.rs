//! Untrusted upstream bytes through the eventstream decoder and frame splitter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_wire::eventstream::{Decoder, FrameSplitter, decode_one};

fuzz_target!(|data: &[u8]| {
    let _ = decode_one(data);
    // Feed in uneven pieces, as HTTP chunks arrive.
    let mut d = Decoder::new();
    let mut s = FrameSplitter::new();
    for piece in data.chunks(7) {
        d.push(piece);
        s.push(piece);
        while let Ok(Some(_)) = d.next_frame() {}
        while let Ok(Some(frame)) = s.next_frame() {
            let _ = decode_one(&frame);
        }
    }
});
