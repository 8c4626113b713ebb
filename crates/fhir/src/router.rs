//! The axum router: one route per row of the table.

use axum::Router;
use axum::routing::on;

use crate::Gateway;
use crate::handlers;
use crate::table::{Action, ROUTES, Target};

/// The router for `state`, one axum route per row of [`ROUTES`].
pub fn router(state: Gateway) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        let handler = match r.action {
            Action::Capabilities => on(r.method, handlers::capabilities),
            Action::SmartConfiguration => on(r.method, handlers::smart_configuration),
            Action::SearchType if r.target == Target::Patient => {
                on(r.method, handlers::patients::search)
            }
            Action::Read if r.target == Target::Patient => on(r.method, handlers::patients::read),
            Action::Everything => on(r.method, handlers::patients::everything),
            Action::SearchType => on(r.method, handlers::clinical::search),
            Action::Read => on(r.method, handlers::clinical::read),
            Action::Vread => on(r.method, handlers::clinical::vread),
            Action::HistoryInstance => on(r.method, handlers::clinical::history),
            Action::Create => on(r.method, handlers::write::create),
            Action::Update => on(r.method, handlers::write::update),
            Action::Delete => on(r.method, handlers::write::delete),
            Action::GroupExport => on(r.method, handlers::bulk::kick_off),
            Action::ExportStatus => on(r.method, handlers::bulk::status),
            Action::ExportCancel => on(r.method, handlers::bulk::cancel),
            Action::ExportFile => on(r.method, handlers::bulk::file),
        };
        router = router.route(r.path, handler);
    }
    router.fallback(handlers::not_supported).with_state(state)
}
