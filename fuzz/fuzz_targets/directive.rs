#![no_main]

carerecord_fuzz::fuzz_target!(carerecord_fuzz::directive);
