//! Damaged, cut or missing index files: the index is rebuilt from the log, so the store
//! still opens and `$all` reads exactly what it held before.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use strata_engine::Store;
use strata_fuzz::{
    Patch, copy_of_template, damage, files_with_extension, read_all, runtime, small_config,
    template,
};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Which index file to damage (modulo their number).
    file: u8,
    patches: Vec<Patch>,
    cut: Option<u32>,
    remove: bool,
}

fuzz_target!(|input: Input| {
    let dir = copy_of_template();
    let files = files_with_extension(&dir.join("index"), "idx");
    assert!(!files.is_empty(), "the template has index files");
    let file = &files[input.file as usize % files.len()];
    if input.remove {
        std::fs::remove_file(file).expect("remove an index file");
    } else {
        damage(file, &input.patches, input.cut);
    }
    runtime().block_on(async {
        let store = Store::open(&dir, small_config())
            .unwrap_or_else(|error| panic!("a damaged index file must not stop the open: {error}"));
        let events = read_all(store.as_ref()).await.expect("read $all");
        assert_eq!(
            events,
            template().events,
            "$all after the index was rebuilt"
        );
        store.close();
    });
    let _ = std::fs::remove_dir_all(&dir);
});
