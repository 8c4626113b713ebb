//! The compared fields and their comparison levels: the vocabulary that features, blocking rules,
//! the model and estimation share.

/// A compared field, in evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    NhsNumber,
    Identifier,
    GivenName,
    FamilyName,
    BirthDate,
    Gender,
    Postcode,
    Address,
    Phone,
    Email,
}

pub const FIELD_COUNT: usize = 10;

pub const FIELDS: [Field; FIELD_COUNT] = [
    Field::NhsNumber,
    Field::Identifier,
    Field::GivenName,
    Field::FamilyName,
    Field::BirthDate,
    Field::Gender,
    Field::Postcode,
    Field::Address,
    Field::Phone,
    Field::Email,
];

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::NhsNumber => "nhs_number",
            Field::Identifier => "identifier",
            Field::GivenName => "given_name",
            Field::FamilyName => "family_name",
            Field::BirthDate => "birth_date",
            Field::Gender => "gender",
            Field::Postcode => "postcode",
            Field::Address => "address",
            Field::Phone => "phone",
            Field::Email => "email",
        }
    }

    pub fn from_name(name: &str) -> Option<Field> {
        FIELDS.into_iter().find(|f| f.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The levels this field can take other than missing.
    pub fn levels(self) -> &'static [Level] {
        match self {
            Field::Gender => &[Level::Exact, Level::Disagree],
            _ => &[Level::Exact, Level::Partial, Level::Disagree],
        }
    }

    /// The documented rule of each level, as in `LevelParameters.comparator`.
    pub fn rule(self, level: Level) -> &'static str {
        match (self, level) {
            (_, Level::Exact) => "exact after normalisation",
            (
                Field::NhsNumber | Field::Identifier | Field::Phone | Field::Email,
                Level::Partial,
            ) => "damerau_levenshtein <= 1",
            (Field::GivenName | Field::FamilyName, Level::Partial) => {
                "jaro_winkler >= 0.88, or same phonetic (NYSIIS) key, or damerau_levenshtein <= 1, or found so in the other name field (given and family transposed or confused)"
            }
            (Field::BirthDate, Level::Partial) => {
                "day and month swapped, or one digit mis-keyed or two adjacent digits transposed"
            }
            (Field::Postcode, Level::Partial) => "same outward code, or damerau_levenshtein <= 1",
            (Field::Address, Level::Partial) => "token_set >= 0.6 or bigram_dice >= 0.7",
            (_, Level::Disagree) => "otherwise",
            _ => "",
        }
    }
}

/// A comparison level; the discriminant indexes m/u arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Exact = 0,
    Partial = 1,
    Disagree = 2,
    Missing = 3,
}

impl Level {
    pub fn index(self) -> usize {
        self as usize
    }
    pub(crate) fn from_index(i: u32) -> Level {
        match i {
            0 => Level::Exact,
            1 => Level::Partial,
            2 => Level::Disagree,
            _ => Level::Missing,
        }
    }
}
