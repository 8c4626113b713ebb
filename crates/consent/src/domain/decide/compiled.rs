//! Directives compiled for evaluation: provisions as a tree of typed criteria, shared between
//! directives with identical rules.

use std::sync::Arc;

use carerecord_contracts::consent::v1::{ConsentDecision, ConsentDirective, Provision};

use super::context::Context;
use crate::domain::codes::{Class, DataClass, DataClasses, Purpose, Purposes};
use crate::domain::time::{Instant, Period};

/// A requester a provision is about; `None` fields match anyone.
#[derive(Debug, Clone)]
struct Actor {
    organisation_ods_code: Option<String>,
    role_code: Option<String>,
    user_id: Option<String>,
}

impl Actor {
    fn matches(&self, ctx: &Context) -> bool {
        self.organisation_ods_code
            .as_deref()
            .is_none_or(|o| o == ctx.organisation_ods_code)
            && self.role_code.as_deref().is_none_or(|r| r == ctx.role_code)
            && self.user_id.as_deref().is_none_or(|u| u == ctx.user_id)
    }
}

/// A provision compiled for evaluation.
#[derive(Debug, Clone)]
pub(super) struct Node {
    period: Period,
    actors: Vec<Actor>,
    pub(super) purposes: Purposes,
    data_classes: DataClasses,
    study_ids: Vec<String>,
    data_period: Period,
    pub(super) children: Vec<Node>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl Node {
    fn compile(p: &Provision) -> Node {
        Node {
            period: Period::from_proto(p.period.as_ref()),
            actors: p
                .actors
                .iter()
                .map(|a| Actor {
                    organisation_ods_code: non_empty(&a.organisation_ods_code),
                    role_code: non_empty(&a.role_code),
                    user_id: non_empty(&a.user_id),
                })
                .collect(),
            purposes: p
                .purposes
                .iter()
                .filter_map(|c| Purpose::parse(c))
                .collect(),
            data_classes: p
                .data_classes
                .iter()
                .filter_map(|c| DataClass::parse(c))
                .collect(),
            study_ids: p.study_ids.clone(),
            data_period: Period::from_proto(p.data_period.as_ref()),
            children: p.provisions.iter().map(Node::compile).collect(),
        }
    }

    /// Whether the provision's own criteria match the cell (its ancestors matched already).
    pub(super) fn matches(&self, ctx: &Context, class: Class, data_time: Instant) -> bool {
        self.period.contains(ctx.time)
            && (self.actors.is_empty() || self.actors.iter().any(|a| a.matches(ctx)))
            && (self.purposes.is_empty() || self.purposes.contains(ctx.purpose))
            && match class {
                Class::General => self.data_classes.is_empty(),
                Class::Labelled(c) => self.data_classes.is_empty() || self.data_classes.contains(c),
            }
            && (self.study_ids.is_empty()
                || ctx
                    .study_id
                    .as_deref()
                    .is_some_and(|s| self.study_ids.iter().any(|x| x == s)))
            && self.data_period.contains(data_time)
    }

    pub(super) fn names_study(&self, ctx: &Context) -> bool {
        ctx.study_id
            .as_deref()
            .is_some_and(|s| self.study_ids.iter().any(|x| x == s))
    }

    /// The instants at which this provision, or one below it, starts or stops applying.
    fn time_boundaries(&self, out: &mut Vec<Instant>) {
        out.extend(self.period.start);
        out.extend(self.period.end);
        self.children.iter().for_each(|c| c.time_boundaries(out));
    }

    pub(super) fn boundaries(&self, out: &mut Vec<Instant>) {
        out.extend(self.data_period.start);
        out.extend(self.data_period.end);
        self.children.iter().for_each(|c| c.boundaries(out));
    }
}

/// The rules of a directive (decision, scope, period, provisions), compiled for evaluation. Many
/// directives share identical rules (consent forms are templates), so compiled rules are shared.
#[derive(Debug)]
pub struct CompiledRules {
    pub(super) permit: bool,
    pub(super) scope_purposes: Purposes,
    period: Period,
    pub(super) provisions: Vec<Node>,
}

impl CompiledRules {
    /// Compiles stored rules (validated when written; unknown codes are ignored).
    pub fn compile(rules: &ConsentDirective) -> CompiledRules {
        CompiledRules {
            permit: rules.decision == ConsentDecision::Permit as i32,
            scope_purposes: rules
                .scope_purposes
                .iter()
                .filter_map(|c| Purpose::parse(c))
                .collect(),
            period: Period::from_proto(rules.period.as_ref()),
            provisions: rules.provisions.iter().map(Node::compile).collect(),
        }
    }
}

impl CompiledRules {
    /// The instants at which the directive or one of its provisions starts or stops applying:
    /// where a decision on unchanged rules may change with time alone.
    pub fn time_boundaries(&self, out: &mut Vec<Instant>) {
        out.extend(self.period.start);
        out.extend(self.period.end);
        self.provisions.iter().for_each(|p| p.time_boundaries(out));
    }
}

/// One ACTIVE directive, compiled for evaluation.
#[derive(Debug, Clone)]
pub struct CompiledDirective {
    pub directive_id: String,
    pub version: i64,
    rules: Arc<CompiledRules>,
}

impl std::ops::Deref for CompiledDirective {
    type Target = CompiledRules;

    fn deref(&self) -> &CompiledRules {
        &self.rules
    }
}

impl CompiledDirective {
    pub fn new(directive_id: String, version: i64, rules: Arc<CompiledRules>) -> CompiledDirective {
        CompiledDirective {
            directive_id,
            version,
            rules,
        }
    }

    /// Compiles a stored directive's rules.
    pub fn compile(
        directive_id: String,
        version: i64,
        rules: &ConsentDirective,
    ) -> CompiledDirective {
        CompiledDirective::new(
            directive_id,
            version,
            Arc::new(CompiledRules::compile(rules)),
        )
    }

    /// Whether the directive applies to the request (its status is ACTIVE: only those are loaded).
    pub(super) fn applies(&self, ctx: &Context) -> bool {
        self.period.contains(ctx.time)
            && (self.scope_purposes.is_empty() || self.scope_purposes.contains(ctx.purpose))
    }

    fn node(&self, path: &[u32]) -> Option<&Node> {
        let (first, rest) = path.split_first()?;
        let mut node = self.provisions.get(*first as usize)?;
        for i in rest {
            node = node.children.get(*i as usize)?;
        }
        Some(node)
    }
}

/// Describes the provision (or base decision) a directive reason names, for explanations.
pub(super) fn describe_provision(d: &CompiledDirective, path: &[u32]) -> String {
    let Some(node) = d.node(path) else {
        let scope = if d.scope_purposes.is_empty() {
            "every purpose".to_owned()
        } else {
            purposes_text(d.scope_purposes)
        };
        return format!("base decision for {scope}");
    };
    let mut parts = Vec::new();
    if !node.actors.is_empty() {
        let actors: Vec<String> = node
            .actors
            .iter()
            .map(|a| {
                [&a.organisation_ods_code, &a.role_code, &a.user_id]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        parts.push(format!("requesters {}", actors.join(", ")));
    }
    if !node.purposes.is_empty() {
        parts.push(format!("purposes {}", purposes_text(node.purposes)));
    }
    if !node.data_classes.is_empty() {
        let classes: Vec<&str> = DataClass::ALL
            .into_iter()
            .filter(|c| node.data_classes.contains(*c))
            .map(DataClass::code)
            .collect();
        parts.push(format!("data classes {}", classes.join(", ")));
    }
    if !node.study_ids.is_empty() {
        parts.push(format!("studies {}", node.study_ids.join(", ")));
    }
    if !node.period.is_always() {
        parts.push("a limited period".to_owned());
    }
    if !node.data_period.is_always() {
        parts.push("records of a limited time".to_owned());
    }
    format!("provision about {}", parts.join("; "))
}

fn purposes_text(purposes: Purposes) -> String {
    let codes: Vec<&str> = Purpose::ALL
        .into_iter()
        .filter(|p| purposes.contains(*p))
        .map(Purpose::code)
        .collect();
    codes.join(", ")
}
