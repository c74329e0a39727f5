//! RESP: any bytes, fed whole and in pieces, keep `podkit_kv::invariants::resp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first bytes choose where the input is cut; the rest is the input.
    let split = data.first().map_or(0, |&n| usize::from(n % 16)).min(data.len());
    let (cuts, input) = data.split_at(split);
    podkit_kv::invariants::resp(input, cuts);
});
