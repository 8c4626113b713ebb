//! The decision: patient directives evaluated as data (FHIR R5 nesting), the national data opt-out,
//! and the platform rules' verdicts, combined cell by cell as the contract's DECISION SEMANTICS say.
//!
//! Pure: the platform rules arrive already evaluated for the request context ([`PlatformVerdicts`]),
//! because they do not depend on the patient; this module never calls the policy engine.

use std::sync::Arc;

use carerecord_contracts::consent::v1::{ConsentDecision, ConsentDirective, Provision};

use super::codes::{CLASS_COUNT, Class, DataClass, DataClasses, LegalBasis, Purpose, Purposes};
use super::optout::{DirectiveVerdict, PATIENT_CONSENT_COUNT, PatientConsent};
use super::time::{Instant, Period};

/// The request context of a decision: everything but the patient.
#[derive(Debug, Clone)]
pub struct Context {
    pub time: Instant,
    pub user_id: String,
    pub organisation_ods_code: String,
    pub role_code: String,
    pub purpose: Purpose,
    /// The data classes in scope, ascending and without duplicates (all seven when the request named none).
    pub classes: Vec<DataClass>,
    pub legal_basis: LegalBasis,
    pub study_id: Option<String>,
    pub break_glass: bool,
}

impl Context {
    /// The cell classes: the data classes in scope, then general data.
    fn cell_classes(&self) -> impl Iterator<Item = Class> + '_ {
        self.classes
            .iter()
            .map(|c| Class::Labelled(*c))
            .chain(std::iter::once(Class::General))
    }
}

/// A platform rule that matched, with the obligations it attaches to the permits it produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub policy_id: Arc<str>,
    pub pseudonymise: bool,
    pub flag_for_review: bool,
    pub description: Option<Arc<str>>,
}

/// The platform rules' verdicts for one cell class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassVerdicts {
    /// FORBID rules that matched.
    pub forbid: Vec<RuleMatch>,
    /// OVERRIDE rules that matched.
    pub overrides: Vec<RuleMatch>,
    /// DEFAULT rules that decided, deny winning: (permit?, the deciding rules); `None` when none matched.
    pub default: Option<(bool, Vec<RuleMatch>)>,
    /// By [`PatientConsent::index`]: the OPTOUT-EXEMPTION rule that sets an opted-out patient's opt-out
    /// aside (the first matching in policy-file order); `None` when the opt-out applies.
    pub exemptions: [Option<RuleMatch>; PATIENT_CONSENT_COUNT],
}

/// The platform rules' verdicts for every cell class of one request context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformVerdicts {
    pub classes: [ClassVerdicts; CLASS_COUNT],
}

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
struct Node {
    period: Period,
    actors: Vec<Actor>,
    purposes: Purposes,
    data_classes: DataClasses,
    study_ids: Vec<String>,
    data_period: Period,
    children: Vec<Node>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl Node {
    fn compile(p: &Provision) -> Node {
        let mut purposes = Purposes::default();
        p.purposes
            .iter()
            .filter_map(|c| Purpose::parse(c))
            .for_each(|c| {
                purposes.insert(c);
            });
        let mut data_classes = DataClasses::default();
        p.data_classes
            .iter()
            .filter_map(|c| DataClass::parse(c))
            .for_each(|c| {
                data_classes.insert(c);
            });
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
            purposes,
            data_classes,
            study_ids: p.study_ids.clone(),
            data_period: Period::from_proto(p.data_period.as_ref()),
            children: p.provisions.iter().map(Node::compile).collect(),
        }
    }

    /// Whether the provision's own criteria match the cell (its ancestors matched already).
    fn matches(&self, ctx: &Context, class: Class, data_time: Instant) -> bool {
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

    fn names_study(&self, ctx: &Context) -> bool {
        ctx.study_id
            .as_deref()
            .is_some_and(|s| self.study_ids.iter().any(|x| x == s))
    }

    fn boundaries(&self, out: &mut Vec<Instant>) {
        out.extend(self.data_period.start);
        out.extend(self.data_period.end);
        self.children.iter().for_each(|c| c.boundaries(out));
    }
}

/// The rules of a directive (decision, scope, period, provisions), compiled for evaluation. Many
/// directives share identical rules (consent forms are templates), so compiled rules are shared.
#[derive(Debug)]
pub struct CompiledRules {
    permit: bool,
    scope_purposes: Purposes,
    period: Period,
    provisions: Vec<Node>,
}

impl CompiledRules {
    /// Compiles stored rules (validated when written; unknown codes are ignored).
    pub fn compile(rules: &ConsentDirective) -> CompiledRules {
        let mut scope_purposes = Purposes::default();
        rules
            .scope_purposes
            .iter()
            .filter_map(|c| Purpose::parse(c))
            .for_each(|p| {
                scope_purposes.insert(p);
            });
        CompiledRules {
            permit: rules.decision == ConsentDecision::Permit as i32,
            scope_purposes,
            period: Period::from_proto(rules.period.as_ref()),
            provisions: rules.provisions.iter().map(Node::compile).collect(),
        }
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
    fn applies(&self, ctx: &Context) -> bool {
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

/// A provision path (indexes from the top level down), inline: evaluation allocates nothing per cell.
/// Stored directives are at most 5 deep with at most 200 provisions, so a `u8` per level suffices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Path {
    len: u8,
    indexes: [u8; super::validate::MAX_DEPTH],
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

    fn as_slice(&self) -> &[u8] {
        &self.indexes[..usize::from(self.len)]
    }
}

/// What one directive yields for one cell, and which provision decided.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DirectiveResult {
    permit: bool,
    explicit: bool,
    study_specific: bool,
    path: Path,
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

fn evaluate_directive(
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

/// Where a reason comes from; the declaration order is the order reasons are listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    PlatformPolicy,
    NationalDataOptOut,
    PatientDirective,
    Default,
}

/// One rule that decided at least one cell. Field order is the listing order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reason {
    pub source: Source,
    pub directive_id: String,
    pub provision_path: Vec<u32>,
    pub policy_id: String,
    pub permit: bool,
    pub directive_version: i64,
    pub explanation: String,
}

impl Reason {
    pub fn path_string(&self) -> String {
        let parts: Vec<String> = self.provision_path.iter().map(u32::to_string).collect();
        parts.join(".")
    }
}

/// Something the caller must do, in the contract's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obligation {
    Withhold {
        classes: Vec<DataClass>,
        general: bool,
        data_period: Period,
    },
    Pseudonymise,
    FlagForReview,
}

/// A decision for one patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub permit: bool,
    pub obligations: Vec<Obligation>,
    pub reasons: Vec<Reason>,
}

/// A reason while cells are evaluated: no strings, so evaluation does not allocate per cell.
#[derive(Debug, Clone, PartialEq)]
struct RawReason {
    source: Source,
    /// Index into the applicable directives (sorted by directive_id).
    directive: Option<usize>,
    path: Path,
    rule: Option<Arc<str>>,
    permit: bool,
}

/// The reasons of one decision, deduplicated (a decision has few, so a linear scan is cheapest).
fn add_reason(reasons: &mut Vec<RawReason>, reason: RawReason) {
    if !reasons.contains(&reason) {
        reasons.push(reason);
    }
}

fn rule_reason(rule: &RuleMatch, permit: bool) -> RawReason {
    RawReason {
        source: Source::PlatformPolicy,
        directive: None,
        path: Path::default(),
        rule: Some(rule.policy_id.clone()),
        permit,
    }
}

fn plain_reason(source: Source, permit: bool) -> RawReason {
    RawReason {
        source,
        directive: None,
        path: Path::default(),
        rule: None,
        permit,
    }
}

/// Decides for one patient: `directives` are the patient's ACTIVE directives (any order), `opted_out`
/// the national data opt-out status, `platform` the rules' verdicts for `ctx`.
pub fn decide(
    ctx: &Context,
    platform: &PlatformVerdicts,
    directives: &[CompiledDirective],
    opted_out: bool,
    explain: bool,
) -> Decision {
    let mut applicable: Vec<&CompiledDirective> =
        directives.iter().filter(|d| d.applies(ctx)).collect();
    applicable.sort_by(|a, b| a.directive_id.cmp(&b.directive_id));

    // The effective-time axis is split at every boundary of the data periods consulted; each interval
    // is evaluated at its start (the first at minus infinity), which every data period either contains
    // for the whole interval or not at all.
    let mut bounds = Vec::new();
    for d in &applicable {
        d.provisions.iter().for_each(|n| n.boundaries(&mut bounds));
    }
    bounds.sort_unstable();
    bounds.dedup();
    let starts: Vec<Instant> = std::iter::once(Instant::MIN)
        .chain(bounds.iter().copied())
        .collect();

    let mut raw: Vec<RawReason> = Vec::new();
    let mut results: Vec<DirectiveResult> = Vec::with_capacity(applicable.len());
    let mut any_permit = false;
    let mut pseudonymise = false;
    let mut rule_flag = false;
    // Denied classes per interval, as a bit mask over Class::index().
    let mut denied = vec![0u16; starts.len()];

    for (k, &data_time) in starts.iter().enumerate() {
        for class in ctx.cell_classes() {
            let verdicts = &platform.classes[class.index()];
            let permit = decide_cell(
                ctx,
                verdicts,
                &applicable,
                opted_out,
                class,
                data_time,
                &mut CellOut {
                    reasons: &mut raw,
                    results: &mut results,
                    pseudonymise: &mut pseudonymise,
                    rule_flag: &mut rule_flag,
                },
            );
            if permit {
                any_permit = true;
            } else {
                denied[k] |= 1 << class.index();
            }
        }
    }

    let mut obligations = Vec::new();
    if any_permit {
        let mut k = 0;
        while k < starts.len() {
            let mut next = k + 1;
            while next < starts.len() && denied[next] == denied[k] {
                next += 1;
            }
            if denied[k] != 0 {
                let classes = DataClass::ALL
                    .into_iter()
                    .filter(|c| denied[k] & (1 << (*c as usize)) != 0)
                    .collect();
                obligations.push(Obligation::Withhold {
                    classes,
                    general: denied[k] & (1 << Class::General.index()) != 0,
                    data_period: Period {
                        start: (k > 0).then(|| starts[k]),
                        end: starts.get(next).copied(),
                    },
                });
            }
            k = next;
        }
        if pseudonymise {
            obligations.push(Obligation::Pseudonymise);
        }
    }
    let flag =
        ctx.break_glass || (any_permit && (ctx.legal_basis.is_asserted_override() || rule_flag));
    if flag {
        obligations.push(Obligation::FlagForReview);
    }

    // Listing order: source, directive_id, provision path (index by index), policy id.
    raw.sort_by(|a, b| {
        let id = |r: &RawReason| {
            r.directive
                .map_or("", |i| applicable[i].directive_id.as_str())
        };
        (
            a.source,
            id(a),
            a.path.as_slice(),
            a.rule.as_deref().unwrap_or(""),
            a.permit,
        )
            .cmp(&(
                b.source,
                id(b),
                b.path.as_slice(),
                b.rule.as_deref().unwrap_or(""),
                b.permit,
            ))
    });
    let mut reasons: Vec<Reason> = raw
        .iter()
        .map(|r| {
            let directive = r.directive.map(|i| applicable[i]);
            Reason {
                source: r.source,
                directive_id: directive.map_or_else(String::new, |d| d.directive_id.clone()),
                provision_path: r.path.as_slice().iter().map(|i| u32::from(*i)).collect(),
                policy_id: r.rule.as_deref().unwrap_or("").to_owned(),
                permit: r.permit,
                directive_version: directive.map_or(0, |d| d.version),
                explanation: String::new(),
            }
        })
        .collect();
    if explain {
        for reason in &mut reasons {
            reason.explanation = super::explain::explain(reason, ctx, platform, &applicable);
        }
    }
    Decision {
        permit: any_permit,
        obligations,
        reasons,
    }
}

/// Where one cell's evaluation writes: reasons, scratch space, obligations of permitting rules.
struct CellOut<'a> {
    reasons: &'a mut Vec<RawReason>,
    results: &'a mut Vec<DirectiveResult>,
    pseudonymise: &'a mut bool,
    rule_flag: &'a mut bool,
}

/// Steps 1 to 7 of the contract for one cell; returns whether the cell is permitted.
fn decide_cell(
    ctx: &Context,
    verdicts: &ClassVerdicts,
    applicable: &[&CompiledDirective],
    opted_out: bool,
    class: Class,
    data_time: Instant,
    out: &mut CellOut<'_>,
) -> bool {
    // 1. A platform FORBID rule: nothing overrides it.
    if !verdicts.forbid.is_empty() {
        for rule in &verdicts.forbid {
            add_reason(out.reasons, rule_reason(rule, false));
        }
        return false;
    }

    // The directives' verdict for the cell: DENY if any denies, else explicit PERMIT if any, else none.
    out.results.clear();
    out.results.extend(
        applicable
            .iter()
            .map(|d| evaluate_directive(d, ctx, class, data_time)),
    );
    let results = &*out.results;
    let verdict = if results.iter().any(|r| !r.permit) {
        DirectiveVerdict::Deny
    } else if results.iter().any(|r| r.explicit) {
        DirectiveVerdict::ExplicitPermit {
            study_specific: results.iter().any(|r| r.study_specific),
        }
    } else {
        DirectiveVerdict::NoObjection
    };

    // 2. The national data opt-out, unless an exemption rule sets it aside; the exemption is cited.
    if opted_out {
        match &verdicts.exemptions[PatientConsent::of(verdict).index()] {
            Some(exemption) => add_reason(
                out.reasons,
                RawReason {
                    rule: Some(exemption.policy_id.clone()),
                    ..plain_reason(Source::NationalDataOptOut, true)
                },
            ),
            None => {
                add_reason(out.reasons, plain_reason(Source::NationalDataOptOut, false));
                return false;
            }
        }
    }

    // 3. A platform OVERRIDE rule.
    if !verdicts.overrides.is_empty() {
        for rule in &verdicts.overrides {
            *out.pseudonymise |= rule.pseudonymise;
            *out.rule_flag |= rule.flag_for_review;
            add_reason(out.reasons, rule_reason(rule, true));
        }
        return true;
    }

    // 4. and 5. The patient's directives.
    let directive_reason = |i: usize, r: &DirectiveResult| RawReason {
        source: Source::PatientDirective,
        directive: Some(i),
        path: r.path,
        rule: None,
        permit: r.permit,
    };
    match verdict {
        DirectiveVerdict::Deny => {
            for (i, r) in results.iter().enumerate().filter(|(_, r)| !r.permit) {
                add_reason(out.reasons, directive_reason(i, r));
            }
            return false;
        }
        DirectiveVerdict::ExplicitPermit { .. } => {
            for (i, r) in results.iter().enumerate().filter(|(_, r)| r.explicit) {
                add_reason(out.reasons, directive_reason(i, r));
            }
            return true;
        }
        DirectiveVerdict::NoObjection => {}
    }

    // 6. Platform DEFAULT rules, deny winning.
    if let Some((permit, rules)) = &verdicts.default {
        for rule in rules {
            if *permit {
                *out.pseudonymise |= rule.pseudonymise;
                *out.rule_flag |= rule.flag_for_review;
            }
            add_reason(out.reasons, rule_reason(rule, *permit));
        }
        return *permit;
    }

    // 7. The contract's built-in default: implied consent for individual care only. A matching DEFAULT
    // rule (step 6) comes first, so a deployment changes this default in its policy file.
    let permit = matches!(ctx.purpose, Purpose::Treat | Purpose::Etreat);
    add_reason(out.reasons, plain_reason(Source::Default, permit));
    permit
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

#[cfg(test)]
mod tests {
    use super::*;
    use carerecord_contracts::common::v1::Period as P;
    use carerecord_contracts::consent::v1::ProvisionActor;
    use prost_types::Timestamp;

    const SEC: i128 = 1_000_000_000;
    /// 2020-01-01T00:00:00Z.
    const Y2020: i64 = 1_577_836_800;
    /// 2025-06-01T00:00:00Z, the request time.
    const NOW: i64 = 1_748_736_000;

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    fn ctx(purpose: Purpose) -> Context {
        Context {
            time: i128::from(NOW) * SEC,
            user_id: "u1".into(),
            organisation_ods_code: "A81001".into(),
            role_code: "R8000".into(),
            purpose,
            classes: DataClass::ALL.to_vec(),
            legal_basis: LegalBasis::Unspecified,
            study_id: None,
            break_glass: false,
        }
    }

    fn org(code: &str) -> ProvisionActor {
        ProvisionActor {
            organisation_ods_code: code.into(),
            ..Default::default()
        }
    }

    fn classes(codes: &[&str]) -> Vec<String> {
        codes.iter().map(|c| (*c).to_owned()).collect()
    }

    fn directive(id: &str, permit: bool, provisions: Vec<Provision>) -> ConsentDirective {
        ConsentDirective {
            directive_id: id.into(),
            decision: if permit {
                ConsentDecision::Permit
            } else {
                ConsentDecision::Deny
            } as i32,
            provisions,
            ..Default::default()
        }
    }

    fn compile(d: &ConsentDirective) -> CompiledDirective {
        CompiledDirective::compile(d.directive_id.clone(), 3, d)
    }

    fn run(ctx: &Context, directives: &[ConsentDirective], opted_out: bool) -> Decision {
        run_with(ctx, &PlatformVerdicts::default(), directives, opted_out)
    }

    fn run_with(
        ctx: &Context,
        platform: &PlatformVerdicts,
        directives: &[ConsentDirective],
        opted_out: bool,
    ) -> Decision {
        let compiled: Vec<CompiledDirective> = directives.iter().map(compile).collect();
        decide(ctx, platform, &compiled, opted_out, true)
    }

    fn withhold(
        classes: &[DataClass],
        general: bool,
        start: Option<i64>,
        end: Option<i64>,
    ) -> Obligation {
        Obligation::Withhold {
            classes: classes.to_vec(),
            general,
            data_period: Period {
                start: start.map(|s| i128::from(s) * SEC),
                end: end.map(|e| i128::from(e) * SEC),
            },
        }
    }

    /// (source, permit, directive id, path) of each reason.
    fn reasons(d: &Decision) -> Vec<(Source, bool, String, String, String)> {
        d.reasons
            .iter()
            .map(|r| {
                (
                    r.source,
                    r.permit,
                    r.directive_id.clone(),
                    r.path_string(),
                    r.policy_id.clone(),
                )
            })
            .collect()
    }

    fn rule(id: &str) -> RuleMatch {
        RuleMatch {
            policy_id: Arc::from(id),
            pseudonymise: false,
            flag_for_review: false,
            description: None,
        }
    }

    /// The worked example of the contract's Provision comment.
    fn worked_example() -> ConsentDirective {
        directive(
            "d1",
            true,
            vec![
                Provision {
                    data_classes: classes(&["mental-health"]),
                    provisions: vec![Provision {
                        actors: vec![org("RXA")],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                Provision {
                    actors: vec![org("X26")],
                    data_period: Some(P {
                        start: None,
                        end: ts(Y2020),
                    }),
                    ..Default::default()
                },
            ],
        )
    }

    #[test]
    fn no_directive_means_implied_consent_for_care_only() {
        let d = run(&ctx(Purpose::Treat), &[], false);
        assert!(d.permit);
        assert!(d.obligations.is_empty());
        assert_eq!(
            reasons(&d),
            [(
                Source::Default,
                true,
                String::new(),
                String::new(),
                String::new()
            )]
        );
        assert!(d.reasons[0].explanation.contains("implied consent"));
        for p in [
            Purpose::Hresch,
            Purpose::Hoperat,
            Purpose::Hmarkt,
            Purpose::Patrqt,
        ] {
            let d = run(&ctx(p), &[], false);
            assert!(!d.permit, "{p:?}");
            assert_eq!(d.reasons[0].source, Source::Default);
        }
    }

    #[test]
    fn worked_example_gp_gets_everything_but_mental_health() {
        let d = run(&ctx(Purpose::Treat), &[worked_example()], false);
        assert!(d.permit);
        assert_eq!(
            d.obligations,
            [withhold(&[DataClass::MentalHealth], false, None, None)]
        );
        assert_eq!(
            reasons(&d),
            [
                (
                    Source::PatientDirective,
                    false,
                    "d1".into(),
                    "0".into(),
                    String::new()
                ),
                (
                    Source::Default,
                    true,
                    String::new(),
                    String::new(),
                    String::new()
                ),
            ]
        );
        assert_eq!(d.reasons[0].directive_version, 3);
    }

    #[test]
    fn worked_example_nested_permit_is_more_specific() {
        let mut c = ctx(Purpose::Treat);
        c.organisation_ods_code = "RXA".into();
        c.classes = vec![DataClass::MentalHealth];
        let d = run(&c, &[worked_example()], false);
        assert!(d.permit);
        assert!(d.obligations.is_empty());
        // The base PERMIT does not name TREAT, so "0.0" is only "no objection": the default decides.
        assert_eq!(
            reasons(&d),
            [(
                Source::Default,
                true,
                String::new(),
                String::new(),
                String::new()
            )]
        );
    }

    #[test]
    fn worked_example_data_period_splits_obligations() {
        let mut c = ctx(Purpose::Treat);
        c.organisation_ods_code = "X26".into();
        let d = run(&c, &[worked_example()], false);
        assert!(d.permit);
        assert_eq!(
            d.obligations,
            [
                withhold(&DataClass::ALL, true, None, Some(Y2020)),
                withhold(&[DataClass::MentalHealth], false, Some(Y2020), None),
            ]
        );
        let paths: Vec<String> = d
            .reasons
            .iter()
            .filter(|r| r.source == Source::PatientDirective)
            .map(Reason::path_string)
            .collect();
        assert_eq!(paths, ["0", "1"]);
    }

    #[test]
    fn worked_example_marketing_is_not_explicitly_permitted() {
        let d = run(&ctx(Purpose::Hmarkt), &[worked_example()], false);
        assert!(!d.permit);
        assert!(d.obligations.is_empty(), "no obligations on DENY");
    }

    #[test]
    fn deny_wins_between_siblings_and_the_first_is_reported() {
        // Base DENY; two top-level PERMIT exceptions for TREAT; the second has a nested DENY for RXA.
        let dir = directive(
            "d1",
            false,
            vec![
                Provision {
                    purposes: vec!["TREAT".into()],
                    ..Default::default()
                },
                Provision {
                    purposes: vec!["TREAT".into()],
                    provisions: vec![Provision {
                        actors: vec![org("RXA")],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                Provision {
                    purposes: vec!["TREAT".into()],
                    data_classes: classes(&["hiv"]),
                    ..Default::default()
                },
            ],
        );
        let d = run(&ctx(Purpose::Treat), std::slice::from_ref(&dir), false);
        assert!(d.permit);
        assert!(d.obligations.is_empty());
        // Explicit permits: "0" comes first in path order for every class (hiv: "0" and "2" both permit).
        assert_eq!(
            reasons(&d),
            [(
                Source::PatientDirective,
                true,
                "d1".into(),
                "0".into(),
                String::new()
            )]
        );

        let mut rxa = ctx(Purpose::Treat);
        rxa.organisation_ods_code = "RXA".into();
        let d = run(&rxa, &[dir], false);
        assert!(
            !d.permit,
            "the nested deny under \"1\" beats the sibling permit \"0\""
        );
        assert_eq!(
            reasons(&d),
            [(
                Source::PatientDirective,
                false,
                "d1".into(),
                "1.0".into(),
                String::new()
            )]
        );
    }

    #[test]
    fn research_consent_is_explicit_and_study_specific() {
        let consent = ConsentDirective {
            scope_purposes: vec!["HRESCH".into()],
            ..directive(
                "d1",
                false,
                vec![Provision {
                    study_ids: vec!["IRAS-1".into()],
                    provisions: vec![Provision {
                        data_classes: classes(&["genomic"]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            )
        };
        let mut c = ctx(Purpose::Hresch);
        c.study_id = Some("IRAS-1".into());
        let d = run(&c, std::slice::from_ref(&consent), false);
        assert!(d.permit);
        assert_eq!(
            d.obligations,
            [withhold(&[DataClass::Genomic], false, None, None)]
        );
        c.study_id = Some("IRAS-2".into());
        assert!(
            !run(&c, std::slice::from_ref(&consent), false).permit,
            "another study is denied by the base"
        );
        // The scope keeps the base DENY away from individual care.
        let d = run(&ctx(Purpose::Treat), &[consent], false);
        assert!(d.permit);
        assert_eq!(d.reasons[0].source, Source::Default);
    }

    #[test]
    fn periods_limit_directives_and_provisions() {
        let mut expired = directive("d1", false, vec![]);
        expired.period = Some(P {
            start: ts(Y2020),
            end: ts(NOW),
        });
        assert!(
            run(&ctx(Purpose::Treat), &[expired.clone()], false).permit,
            "ended at the request time"
        );
        let mut c = ctx(Purpose::Treat);
        c.time = i128::from(NOW - 1) * SEC;
        assert!(
            !run(&c, &[expired], false).permit,
            "in force one second earlier"
        );

        let timed = directive(
            "d2",
            true,
            vec![Provision {
                period: Some(P {
                    start: ts(NOW + 10),
                    end: None,
                }),
                ..Default::default()
            }],
        );
        assert!(run(&ctx(Purpose::Treat), std::slice::from_ref(&timed), false).permit);
        let mut later = ctx(Purpose::Treat);
        later.time = i128::from(NOW + 10) * SEC;
        assert!(!run(&later, &[timed], false).permit);
    }

    #[test]
    fn actors_roles_and_users_must_all_match() {
        let dir = directive(
            "d1",
            true,
            vec![Provision {
                actors: vec![ProvisionActor {
                    organisation_ods_code: "A81001".into(),
                    role_code: "R8001".into(),
                    user_id: String::new(),
                }],
                ..Default::default()
            }],
        );
        assert!(
            run(&ctx(Purpose::Treat), std::slice::from_ref(&dir), false).permit,
            "R8000 is not R8001"
        );
        let mut nurse = ctx(Purpose::Treat);
        nurse.role_code = "R8001".into();
        assert!(!run(&nurse, std::slice::from_ref(&dir), false).permit);
        let by_user = directive(
            "d2",
            true,
            vec![Provision {
                actors: vec![ProvisionActor {
                    user_id: "u1".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        );
        assert!(!run(&ctx(Purpose::Treat), &[by_user], false).permit);
    }

    #[test]
    fn a_deny_in_one_directive_beats_a_permit_in_another() {
        let permit = ConsentDirective {
            scope_purposes: vec!["HOPERAT".into()],
            ..directive("a", true, vec![])
        };
        let deny = directive("b", false, vec![]);
        let d = run(&ctx(Purpose::Hoperat), &[permit.clone(), deny], false);
        assert!(!d.permit);
        assert_eq!(
            reasons(&d),
            [(
                Source::PatientDirective,
                false,
                "b".into(),
                String::new(),
                String::new()
            )]
        );
        let d = run(&ctx(Purpose::Hoperat), &[permit], false);
        assert!(d.permit, "an explicit PERMIT grants without platform rules");
        assert_eq!(d.reasons[0].source, Source::PatientDirective);
    }

    /// Verdicts where `rule` exempts from the opt-out for the given patient-consent values.
    fn exempting(rule_id: &str, consents: &[PatientConsent]) -> PlatformVerdicts {
        let mut v = PlatformVerdicts::default();
        for class in &mut v.classes {
            for c in consents {
                class.exemptions[c.index()] = Some(rule(rule_id));
            }
        }
        v
    }

    #[test]
    fn the_opt_out_denies_unless_an_exemption_rule_sets_it_aside() {
        // No exemption rule: the opt-out withholds even individual care.
        let d = run(&ctx(Purpose::Treat), &[], true);
        assert!(!d.permit);
        assert_eq!(
            reasons(&d),
            [(
                Source::NationalDataOptOut,
                false,
                String::new(),
                String::new(),
                String::new()
            )]
        );
        // A context-only exemption (every patient-consent value): cited by id, then the next steps decide.
        let care = exempting("care", &PatientConsent::ALL);
        let d = run_with(&ctx(Purpose::Treat), &care, &[], true);
        assert!(d.permit);
        assert_eq!(
            reasons(&d),
            [
                (
                    Source::NationalDataOptOut,
                    true,
                    String::new(),
                    String::new(),
                    "care".into()
                ),
                (
                    Source::Default,
                    true,
                    String::new(),
                    String::new(),
                    String::new()
                ),
            ]
        );
        assert_eq!(
            reasons(&run_with(&ctx(Purpose::Treat), &care, &[], false)),
            [(
                Source::Default,
                true,
                String::new(),
                String::new(),
                String::new()
            )],
            "not cited when the patient has not opted out"
        );
        // Exempt from the opt-out, a patient's refusal still applies.
        let refusal = directive("d0", false, vec![]);
        let d = run_with(&ctx(Purpose::Treat), &care, &[refusal], true);
        assert!(!d.permit);
        assert_eq!(d.reasons[0].policy_id, "care");
        assert_eq!(d.reasons[1].source, Source::PatientDirective);
    }

    #[test]
    fn exemptions_see_whether_the_patient_consented_explicitly_and_to_the_study() {
        let study = exempting("study", &[PatientConsent::StudySpecific]);
        let consent = ConsentDirective {
            scope_purposes: vec!["HRESCH".into()],
            ..directive(
                "d1",
                false,
                vec![Provision {
                    study_ids: vec!["S1".into()],
                    ..Default::default()
                }],
            )
        };
        let mut research = ctx(Purpose::Hresch);
        research.legal_basis = LegalBasis::ExplicitConsent;
        research.study_id = Some("S1".into());
        let d = run_with(&research, &study, std::slice::from_ref(&consent), true);
        assert!(d.permit);
        assert_eq!(
            reasons(&d),
            [
                (
                    Source::NationalDataOptOut,
                    true,
                    String::new(),
                    String::new(),
                    "study".into()
                ),
                (
                    Source::PatientDirective,
                    true,
                    "d1".into(),
                    "0".into(),
                    String::new()
                ),
            ]
        );
        // A general research consent (no study named) is explicit but not study-specific.
        let general = ConsentDirective {
            scope_purposes: vec!["HRESCH".into()],
            ..directive("d2", true, vec![])
        };
        assert!(!run_with(&research, &study, std::slice::from_ref(&general), true).permit);
        let explicit = exempting("explicit", &[PatientConsent::Explicit]);
        assert_eq!(
            run_with(&research, &explicit, std::slice::from_ref(&general), true).reasons[0]
                .policy_id,
            "explicit"
        );
        assert!(
            run(&research, &[general], false).permit,
            "without the opt-out it is an explicit permit"
        );
        // No directive at all: the patient gave no consent.
        assert!(!run_with(&research, &study, &[], true).permit);
    }

    #[test]
    fn platform_rules_take_their_steps() {
        let consent = ConsentDirective {
            scope_purposes: vec!["HOPERAT".into()],
            ..directive("d1", true, vec![])
        };
        let refusal = directive("d2", false, vec![]);
        let mut forbid = PlatformVerdicts::default();
        forbid
            .classes
            .iter_mut()
            .for_each(|c| c.forbid = vec![rule("f")]);
        let d = run_with(
            &ctx(Purpose::Hoperat),
            &forbid,
            std::slice::from_ref(&consent),
            false,
        );
        assert!(!d.permit, "FORBID beats an explicit permit");
        assert_eq!(
            reasons(&d),
            [(
                Source::PlatformPolicy,
                false,
                String::new(),
                String::new(),
                "f".into()
            )]
        );

        let mut over = PlatformVerdicts::default();
        over.classes.iter_mut().for_each(|c| {
            c.overrides = vec![RuleMatch {
                flag_for_review: true,
                ..rule("o")
            }]
        });
        let d = run_with(
            &ctx(Purpose::Hoperat),
            &over,
            std::slice::from_ref(&refusal),
            false,
        );
        assert!(d.permit, "OVERRIDE beats the patient's DENY");
        assert_eq!(d.obligations, [Obligation::FlagForReview]);
        assert!(
            !run_with(
                &ctx(Purpose::Hoperat),
                &over,
                std::slice::from_ref(&refusal),
                true
            )
            .permit,
            "but not the opt-out"
        );

        let mut default = PlatformVerdicts::default();
        default.classes.iter_mut().for_each(|c| {
            c.default = Some((
                true,
                vec![RuleMatch {
                    pseudonymise: true,
                    ..rule("p")
                }],
            ))
        });
        default.classes[DataClass::Genomic as usize].default = Some((false, vec![rule("g")]));
        let d = run_with(&ctx(Purpose::Hoperat), &default, &[], false);
        assert!(d.permit);
        assert_eq!(
            d.obligations,
            [
                withhold(&[DataClass::Genomic], false, None, None),
                Obligation::Pseudonymise
            ]
        );
        assert_eq!(
            reasons(&d),
            [
                (
                    Source::PlatformPolicy,
                    false,
                    String::new(),
                    String::new(),
                    "g".into()
                ),
                (
                    Source::PlatformPolicy,
                    true,
                    String::new(),
                    String::new(),
                    "p".into()
                ),
            ]
        );
        let d = run_with(&ctx(Purpose::Hoperat), &default, &[refusal], false);
        assert!(
            !d.permit,
            "DEFAULT rules only apply where the patient expressed no wish"
        );
    }

    #[test]
    fn break_glass_and_asserted_bases_are_flagged() {
        let mut glass = ctx(Purpose::Etreat);
        glass.break_glass = true;
        let d = run(&glass, &[worked_example()], false);
        assert!(d.permit);
        assert_eq!(d.obligations.last(), Some(&Obligation::FlagForReview));
        let refusal = directive("d1", false, vec![]);
        let d = run(&glass, &[refusal], false);
        assert!(!d.permit);
        assert_eq!(
            d.obligations,
            [Obligation::FlagForReview],
            "flagged on DENY too"
        );

        let consent = ConsentDirective {
            scope_purposes: vec!["HOPERAT".into()],
            ..directive("d2", true, vec![])
        };
        let mut legal = ctx(Purpose::Hoperat);
        legal.legal_basis = LegalBasis::LegalRequirement;
        assert_eq!(
            run(&legal, &[consent], false).obligations,
            [Obligation::FlagForReview]
        );
        assert!(
            run(&legal, &[], false).obligations.is_empty(),
            "no flag on DENY without break-glass"
        );
    }

    #[test]
    fn decisions_do_not_depend_on_directive_order_or_scope_order() {
        let a = worked_example();
        let b = directive(
            "d0",
            false,
            vec![Provision {
                data_classes: classes(&["hiv"]),
                ..Default::default()
            }],
        );
        let mut c = ctx(Purpose::Treat);
        c.organisation_ods_code = "X26".into();
        let one = run(&c, &[a.clone(), b.clone()], false);
        let two = run(&c, &[b, a], false);
        assert_eq!(one.permit, two.permit);
        assert_eq!(one.obligations, two.obligations);
        let ids: Vec<&str> = one
            .reasons
            .iter()
            .map(|r| r.directive_id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["d0", "d1", "d1", ""],
            "sorted by source, then directive id, then path"
        );
        let twos: Vec<&str> = two
            .reasons
            .iter()
            .map(|r| r.directive_id.as_str())
            .collect();
        assert_eq!(ids, twos);
    }
}
