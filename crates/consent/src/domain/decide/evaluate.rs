//! One directive's verdict for one cell: the FHIR R5 nesting of provisions, deny winning among
//! siblings.

use super::compiled::{CompiledDirective, Node};
use super::context::Context;
use crate::domain::codes::Class;
use crate::domain::time::Instant;
use crate::domain::validate::MAX_DEPTH;

/// A provision path (indexes from the top level down), inline: evaluation allocates nothing per cell.
/// Stored directives are at most [`MAX_DEPTH`] deep with at most
/// [`MAX_PROVISIONS`](crate::domain::validate::MAX_PROVISIONS) provisions, so a `u8` per level
/// suffices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Path {
    len: u8,
    indexes: [u8; MAX_DEPTH],
}

impl Path {
    fn push(&mut self, index: usize) {
        if let Some(slot) = self.indexes.get_mut(usize::from(self.len)) {
            *slot = u8::try_from(index).unwrap_or(u8::MAX);
            self.len += 1;
        }
    }

    fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.indexes[..usize::from(self.len)]
    }
}

/// What one directive yields for one cell, and which provision decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DirectiveResult {
    pub(super) permit: bool,
    pub(super) explicit: bool,
    pub(super) study_specific: bool,
    pub(super) path: Path,
}

/// The cell being evaluated: the request, the class, and the effective time of the records.
#[derive(Clone, Copy)]
struct Cell<'a> {
    ctx: &'a Context,
    class: Class,
    data_time: Instant,
}

/// What the path from the directive down to a node names: the request's purpose, its study.
#[derive(Clone, Copy)]
struct Named {
    purpose: bool,
    study: bool,
}

/// result(node): the node's own effect unless matching children decide, deny winning among siblings.
fn evaluate_children(
    children: &[Node],
    own_permit: bool,
    cell: Cell<'_>,
    path: &mut Path,
    named: Named,
) -> DirectiveResult {
    let mut best: Option<DirectiveResult> = None;
    for (i, child) in children.iter().enumerate() {
        if !child.matches(cell.ctx, cell.class, cell.data_time) {
            continue;
        }
        path.push(i);
        let child_named = Named {
            purpose: named.purpose || child.purposes.contains(cell.ctx.purpose),
            study: named.study || child.names_study(cell.ctx),
        };
        let result = evaluate_children(&child.children, !own_permit, cell, path, child_named);
        path.pop();
        // Deny wins among siblings; otherwise the first in path order is kept.
        let replace = best.as_ref().is_none_or(|b| b.permit && !result.permit);
        if replace {
            best = Some(result);
        }
    }
    best.unwrap_or(DirectiveResult {
        permit: own_permit,
        explicit: own_permit && named.purpose,
        study_specific: own_permit && named.purpose && named.study,
        path: *path,
    })
}

pub(super) fn evaluate_directive(
    d: &CompiledDirective,
    ctx: &Context,
    class: Class,
    data_time: Instant,
) -> DirectiveResult {
    let mut path = Path::default();
    let named = Named {
        purpose: d.scope_purposes.contains(ctx.purpose),
        study: false,
    };
    evaluate_children(
        &d.provisions,
        d.permit,
        Cell {
            ctx,
            class,
            data_time,
        },
        &mut path,
        named,
    )
}
