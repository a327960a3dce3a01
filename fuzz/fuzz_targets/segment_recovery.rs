//! Damaged or cut segment files: opening the store and reading everything either works or
//! fails with an error — never a panic, a hang or an unbounded allocation — and `verify`
//! says the same without panicking.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use strata_engine::Store;
use strata_fuzz::{
    Patch, copy_of_template, damage, files_with_extension, read_all, runtime, small_config,
};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Which segment file to damage (modulo their number).
    segment: u8,
    patches: Vec<Patch>,
    cut: Option<u32>,
    /// Keep the clean-close marker, so the open trusts the recorded end.
    keep_clean: bool,
}

fuzz_target!(|input: Input| {
    let dir = copy_of_template();
    let segments = files_with_extension(&dir.join("log"), "seg");
    let segment = &segments[input.segment as usize % segments.len()];
    damage(segment, &input.patches, input.cut);
    if !input.keep_clean {
        let _ = std::fs::remove_file(dir.join("CLEAN"));
    }
    runtime().block_on(async {
        if let Ok(store) = Store::open(&dir, small_config()) {
            let _ = read_all(store.as_ref()).await;
            store.close();
        }
    });
    let _ = strata_engine::verify(&dir, &mut |_| {});
    let _ = std::fs::remove_dir_all(&dir);
});
