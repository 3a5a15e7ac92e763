//! Untrusted request bytes through the broker's own path: frame check, header
//! parse, the supported-API gate, then the body decoder. Must never panic or
//! abort (an abort takes down every connection of the broker).
//!
//! Runs under the `floe` binary's global allocator (ADR 0003), as the broker
//! does: without it, kafka-protocol 0.18's array decoders abort on a 14-byte
//! Metadata v0 request claiming 2^28 topics (`Vec::with_capacity` from the
//! wire), and the fuzzer would stop there on every run.
#![no_main]

use bytes::Bytes;
use floe_broker::protocol::{api, frame};
use kafka_protocol::messages::RequestKind;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: floe_broker::alloc::LazyHugeAlloc = floe_broker::alloc::LazyHugeAlloc;

fuzz_target!(|data: &[u8]| {
    // The size prefix as the connection reads it (the input is also a frame body).
    let _ = frame::check(data, 1 << 20);
    let Ok(req) = frame::parse_header(Bytes::copy_from_slice(data)) else {
        return;
    };
    let version = req.header.request_api_version;
    if !api::is_supported(req.api_key, version) {
        return;
    }
    let mut body = req.body;
    let _ = RequestKind::decode(req.api_key, &mut body, version);
});
