//! Links libFuzzer, built apart by scripts/fuzz.sh (see runtime/), into the fuzz targets.

fn main() {
    println!("cargo:rerun-if-env-changed=CARERECORD_FUZZ_LIBFUZZER");
    let Ok(library) = std::env::var("CARERECORD_FUZZ_LIBFUZZER") else {
        panic!("CARERECORD_FUZZ_LIBFUZZER is unset: build the fuzz targets with scripts/fuzz.sh");
    };
    let library = std::path::Path::new(&library);
    println!("cargo:rerun-if-changed={}", library.display());
    let directory = library.parent().expect("a file path");
    let name = library
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("lib"))
        .expect("a library named lib<name>.a");
    println!("cargo:rustc-link-search=native={}", directory.display());
    // Whole, because the instrumented crates that call its coverage hooks come later on the link
    // line than the targets' own crate.
    println!("cargo:rustc-link-lib=static:+whole-archive={name}");
    println!("cargo:rustc-link-lib=stdc++");
}
