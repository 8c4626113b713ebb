//! Given names that are one name: common English short forms and nicknames ("Bill" for
//! "William", "Peggy" for "Margaret") and spellings of one name ("Steven", "Stephen").
//!
//! Two names are the same name when one group holds both. Groups are normalised as names are
//! for comparison (lower case, no punctuation).

use std::collections::HashSet;
use std::sync::OnceLock;

const GROUPS: &[&[&str]] = &[
    &["william", "bill", "billy", "will", "willy", "liam"],
    &["robert", "bob", "bobby", "rob", "robbie", "bert"],
    &[
        "elizabeth",
        "liz",
        "lizzie",
        "beth",
        "betty",
        "bess",
        "eliza",
        "libby",
    ],
    &["margaret", "maggie", "peggy", "meg", "madge"],
    &["thomas", "tom", "tommy"],
    &["james", "jim", "jimmy", "jamie"],
    &["richard", "rick", "ricky", "dick", "rich", "richie"],
    &["michael", "mike", "mick", "mickey", "mikey"],
    &["christopher", "chris", "christy"],
    &["christine", "chris", "chrissie", "christina"],
    &["jonathan", "jon", "jonny", "john", "johnny", "jack"],
    &[
        "catherine",
        "katherine",
        "kathryn",
        "kate",
        "katie",
        "kath",
        "kathy",
        "cathy",
        "cath",
    ],
    &["alexander", "alex", "alec", "sandy"],
    &["alexandra", "alex", "lexie", "sandra"],
    &["samuel", "sam", "sammy"],
    &["samantha", "sam", "sammy"],
    &["daniel", "dan", "danny"],
    &["matthew", "matt", "matty"],
    &["anthony", "tony", "antony"],
    &["stephen", "steven", "steve", "stevie"],
    &["andrew", "andy", "drew"],
    &["edward", "ed", "eddie", "ted", "teddy"],
    &["joseph", "joe", "joey"],
    &["benjamin", "ben", "benny"],
    &["nicholas", "nick", "nicky"],
    &["timothy", "tim", "timmy"],
    &["peter", "pete"],
    &["david", "dave", "davy"],
    &["charles", "charlie", "chas"],
    &["henry", "harry", "hank"],
    &["jennifer", "jen", "jenny"],
    &["rebecca", "becky", "becca"],
    &["victoria", "vicky", "vicki", "tori"],
    &["susan", "sue", "susie", "suzy"],
    &["deborah", "debbie", "debra", "deb"],
    &["patricia", "pat", "patsy", "trish"],
    &["jacqueline", "jackie", "jacqui"],
    &["joanne", "jo", "joanna"],
    &["amanda", "mandy"],
    &["eleanor", "ellie", "ella", "nell", "nellie"],
    &["isabella", "isabel", "bella", "izzy"],
    &["olivia", "liv", "livvy"],
    &["abigail", "abby", "abbie"],
    &["kenneth", "ken", "kenny"],
    &["leonard", "len", "lenny"],
    &["ronald", "ron", "ronnie"],
    &["donald", "don", "donny"],
    &["gerald", "gerry", "jerry"],
    &["terence", "terry"],
    &["philip", "phillip", "phil"],
    &["raymond", "ray"],
    &["frederick", "fred", "freddie", "freddy"],
    &["douglas", "doug"],
    &["dorothy", "dot", "dottie"],
    &["jessica", "jess", "jessie"],
    &["jacob", "jake"],
    &["zachary", "zach", "zack"],
    &["mohammed", "muhammad", "mohammad", "mohamed", "mo"],
    &["geoffrey", "jeffrey", "geoff", "jeff"],
    &["gregory", "greg"],
    &["pamela", "pam"],
    &["valerie", "val"],
    &["kathleen", "kath", "kathy"],
    &["stuart", "stewart", "stu"],
    &["nicola", "nicky", "nikki"],
    &["sean", "shaun", "shawn"],
    &["lewis", "louis"],
    &["ann", "anne", "anna", "annie"],
    &["zoe", "zoey"],
    &["stephanie", "steph"],
    &["gillian", "jill", "gill"],
    &["harold", "harry"],
    &["theodore", "theo"],
    &["frances", "fran", "frankie"],
    &["francis", "frank", "frankie"],
];

fn pairs() -> &'static HashSet<(&'static str, &'static str)> {
    static PAIRS: OnceLock<HashSet<(&'static str, &'static str)>> = OnceLock::new();
    PAIRS.get_or_init(|| {
        let mut pairs = HashSet::new();
        for group in GROUPS {
            for a in *group {
                for b in *group {
                    if a != b {
                        pairs.insert((*a, *b));
                    }
                }
            }
        }
        pairs
    })
}

/// Whether two different normalised given names are forms of one name.
pub fn same_name(a: &str, b: &str) -> bool {
    pairs().contains(&(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_of_one_name_are_recognised_both_ways() {
        assert!(same_name("bill", "william"));
        assert!(same_name("william", "liam"));
        assert!(same_name("peggy", "margaret"));
        assert!(!same_name("william", "margaret"));
        assert!(!same_name("bill", "bill"));
    }
}
