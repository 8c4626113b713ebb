//! Nothing but its dependency: building this crate builds libFuzzer (`libfuzzer.a`, in
//! libfuzzer-sys's build output), which scripts/fuzz.sh links into the fuzz targets.
