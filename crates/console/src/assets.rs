//! The console's static files, built once from `web/` by `scripts/console-build.sh` into
//! `crates/console/assets/` (committed, so building carerecord needs no Node) and embedded here.

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// The single page every route of the application answers with.
pub const INDEX: &[u8] = include_bytes!("../assets/index.html");

/// Files under `/assets/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/app.js"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/app.css"),
    },
];

pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
