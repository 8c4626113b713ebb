//! The closed code lists of the contract: purposes of use, data classes, legal bases, and the
//! formats of ODS and role codes.

use std::marker::PhantomData;

/// A purpose of use (HL7 v3 ActReason code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    Treat,
    Etreat,
    Hresch,
    Hoperat,
    Hpaymt,
    Pubhlth,
    Hmarkt,
    Patrqt,
}

impl Purpose {
    pub const ALL: [Purpose; 8] = [
        Purpose::Treat,
        Purpose::Etreat,
        Purpose::Hresch,
        Purpose::Hoperat,
        Purpose::Hpaymt,
        Purpose::Pubhlth,
        Purpose::Hmarkt,
        Purpose::Patrqt,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Purpose::Treat => "TREAT",
            Purpose::Etreat => "ETREAT",
            Purpose::Hresch => "HRESCH",
            Purpose::Hoperat => "HOPERAT",
            Purpose::Hpaymt => "HPAYMT",
            Purpose::Pubhlth => "PUBHLTH",
            Purpose::Hmarkt => "HMARKT",
            Purpose::Patrqt => "PATRQT",
        }
    }

    /// Whether the purpose is the patient's own care or own request (TREAT, ETREAT, PATRQT): uses
    /// the national data opt-out never covers.
    pub fn serves_the_patient(self) -> bool {
        matches!(self, Purpose::Treat | Purpose::Etreat | Purpose::Patrqt)
    }

    /// The purpose a code names; codes are case-sensitive.
    pub fn parse(code: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.code() == code)
    }
}

impl Code for Purpose {
    fn index(self) -> u8 {
        self as u8
    }
}

/// A set of purposes (lists of purposes are matched on every decision).
pub type Purposes = CodeSet<Purpose>;

/// A sensitivity label. The declaration order is the ascending order of the codes, which is the order
/// obligations list them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataClass {
    Genomic,
    Hiv,
    MentalHealth,
    ReproductiveHealth,
    Safeguarding,
    SexualHealth,
    SubstanceMisuse,
}

impl DataClass {
    pub const ALL: [DataClass; 7] = [
        DataClass::Genomic,
        DataClass::Hiv,
        DataClass::MentalHealth,
        DataClass::ReproductiveHealth,
        DataClass::Safeguarding,
        DataClass::SexualHealth,
        DataClass::SubstanceMisuse,
    ];

    pub fn code(self) -> &'static str {
        match self {
            DataClass::Genomic => "genomic",
            DataClass::Hiv => "hiv",
            DataClass::MentalHealth => "mental-health",
            DataClass::ReproductiveHealth => "reproductive-health",
            DataClass::Safeguarding => "safeguarding",
            DataClass::SexualHealth => "sexual-health",
            DataClass::SubstanceMisuse => "substance-misuse",
        }
    }

    pub fn parse(code: &str) -> Option<DataClass> {
        DataClass::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// A cell's class: one data class, or general data (records carrying no class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Labelled(DataClass),
    General,
}

impl Class {
    /// Index into per-class tables: the seven data classes, then general data.
    pub fn index(self) -> usize {
        match self {
            Class::Labelled(c) => c as usize,
            Class::General => DataClass::ALL.len(),
        }
    }

    /// The name platform policies see (`DataClass::"general"` for general data).
    pub fn policy_name(self) -> &'static str {
        match self {
            Class::Labelled(c) => c.code(),
            Class::General => "general",
        }
    }

    pub fn from_index(index: usize) -> Class {
        DataClass::ALL
            .get(index)
            .map_or(Class::General, |c| Class::Labelled(*c))
    }
}

/// Number of cell classes: the seven data classes plus general data.
pub const CLASS_COUNT: usize = DataClass::ALL.len() + 1;

impl Code for DataClass {
    fn index(self) -> u8 {
        self as u8
    }
}

/// A set of data classes.
pub type DataClasses = CodeSet<DataClass>;

/// A code of a closed list of at most eight.
pub trait Code: Copy {
    /// Its position in the list, below eight.
    fn index(self) -> u8;
}

/// A set of codes of one list, as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeSet<C>(u8, PhantomData<C>);

impl<C> Default for CodeSet<C> {
    fn default() -> Self {
        CodeSet(0, PhantomData)
    }
}

impl<C: Code> CodeSet<C> {
    /// Adds `code`; whether it was new.
    pub fn insert(&mut self, code: C) -> bool {
        let new = !self.contains(code);
        self.0 |= 1 << code.index();
        new
    }

    pub fn contains(self, code: C) -> bool {
        self.0 & (1 << code.index()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl<C: Code> FromIterator<C> for CodeSet<C> {
    fn from_iter<I: IntoIterator<Item = C>>(codes: I) -> Self {
        let mut set = CodeSet::default();
        codes.into_iter().for_each(|c| {
            set.insert(c);
        });
        set
    }
}

/// The legal basis a requester relies on (the contract's `LegalBasis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LegalBasis {
    Unspecified,
    DirectCare,
    ExplicitConsent,
    LegalRequirement,
    CourtOrder,
    PublicHealth,
    OverridingPublicInterest,
    Section251Support,
}

impl LegalBasis {
    pub fn from_proto(value: i32) -> Option<LegalBasis> {
        Some(match value {
            0 => LegalBasis::Unspecified,
            1 => LegalBasis::DirectCare,
            2 => LegalBasis::ExplicitConsent,
            3 => LegalBasis::LegalRequirement,
            4 => LegalBasis::CourtOrder,
            5 => LegalBasis::PublicHealth,
            6 => LegalBasis::OverridingPublicInterest,
            7 => LegalBasis::Section251Support,
            _ => return None,
        })
    }

    /// The name platform policies see in `context.legal_basis`.
    pub fn policy_name(self) -> &'static str {
        match self {
            LegalBasis::Unspecified => "UNSPECIFIED",
            LegalBasis::DirectCare => "DIRECT_CARE",
            LegalBasis::ExplicitConsent => "EXPLICIT_CONSENT",
            LegalBasis::LegalRequirement => "LEGAL_REQUIREMENT",
            LegalBasis::CourtOrder => "COURT_ORDER",
            LegalBasis::PublicHealth => "PUBLIC_HEALTH",
            LegalBasis::OverridingPublicInterest => "OVERRIDING_PUBLIC_INTEREST",
            LegalBasis::Section251Support => "SECTION_251_SUPPORT",
        }
    }

    /// Bases asserted by the caller that cannot be checked here: every PERMIT relying on one is flagged.
    pub fn is_asserted_override(self) -> bool {
        matches!(
            self,
            LegalBasis::LegalRequirement
                | LegalBasis::CourtOrder
                | LegalBasis::OverridingPublicInterest
        )
    }
}

/// An ODS code, upper-cased, if `raw` is 3 to 10 letters and digits.
pub fn normalise_ods_code(raw: &str) -> Option<String> {
    let valid = (3..=10).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then(|| raw.to_ascii_uppercase())
}

/// Whether `raw` is a national RBAC job role R-code (`^R[0-9]{4}$`).
pub fn is_role_code(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.len() == 5 && bytes[0] == b'R' && bytes[1..].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_case_sensitive() {
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.code()), Some(p));
        }
        assert_eq!(Purpose::parse("treat"), None);
        for c in DataClass::ALL {
            assert_eq!(DataClass::parse(c.code()), Some(c));
        }
        assert_eq!(DataClass::parse("Mental-Health"), None);
        let mut sorted: Vec<&str> = DataClass::ALL.iter().map(|c| c.code()).collect();
        sorted.sort_unstable();
        let declared: Vec<&str> = DataClass::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(sorted, declared, "declaration order is code order");
    }

    #[test]
    fn sets_and_formats() {
        let mut purposes = Purposes::default();
        assert!(purposes.insert(Purpose::Hresch));
        assert!(!purposes.insert(Purpose::Hresch));
        assert!(purposes.contains(Purpose::Hresch) && !purposes.contains(Purpose::Treat));
        assert_eq!(normalise_ods_code("rxa"), Some("RXA".to_owned()));
        assert_eq!(normalise_ods_code("RX"), None);
        assert_eq!(normalise_ods_code("RX-A"), None);
        assert!(is_role_code("R8000") && !is_role_code("R800") && !is_role_code("S8000"));
        assert_eq!(Class::from_index(Class::General.index()), Class::General);
    }
}
