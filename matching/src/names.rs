//! Names as the matcher compares them: folded to plain lower-case ASCII
//! (so "Łukasz", "LUKASZ" and "Лукаш" can meet), their phonetic codes, and
//! the nicknames that stand for a given name.

use std::{collections::HashMap, sync::OnceLock};

use rphonetic::DoubleMetaphone;

/// `raw` transliterated to ASCII, lower-cased, with every run of anything
/// but letters and digits turned into one space ("O'Brien-Smith" →
/// "o brien smith").
pub fn fold(raw: &str) -> String {
    let ascii = deunicode::deunicode(raw);
    let mut out = String::with_capacity(ascii.len());
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The phonetic codes of a folded name (Double Metaphone, primary and
/// alternate, of the name without spaces); empty for an empty name.
pub fn sounds(folded: &str) -> (String, String) {
    static ENCODER: OnceLock<DoubleMetaphone> = OnceLock::new();
    let joined: String = folded.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    if joined.is_empty() {
        return (String::new(), String::new());
    }
    let result = ENCODER.get_or_init(DoubleMetaphone::default).double_metaphone(&joined);
    (result.primary(), result.alternate())
}

/// The formal given name a folded nickname stands for ("bob" → "robert"),
/// or the name itself.
pub fn formal(folded: &str) -> &str {
    nicknames().get(folded).copied().unwrap_or(folded)
}

// Common short forms in the languages the service's customers write in;
// one formal name per nickname (where a nickname serves two, the commoner).
const NICKNAMES: &[(&str, &[&str])] = &[
    ("abigail", &["abby", "abbie", "gail"]),
    ("alexander", &["alex", "alec", "sasha", "sandy", "xander", "sascha", "sanya", "aleksandr", "alexandr"]),
    ("alexandra", &["alexa", "lexi", "sandra", "sanda"]),
    ("andrew", &["andy", "drew"]),
    ("anthony", &["tony", "ant"]),
    ("barbara", &["barb", "babs", "barbie"]),
    ("benjamin", &["ben", "benji", "benny"]),
    ("catherine", &["cathy", "cath", "cat", "katherine", "kathryn", "kate", "katie", "kathy", "katy", "kat"]),
    ("charles", &["charlie", "chuck", "chas", "chaz"]),
    ("christina", &["chris", "christine", "tina", "kristina"]),
    ("christopher", &["kit", "topher", "cristopher"]),
    ("daniel", &["dan", "danny", "dani"]),
    ("david", &["dave", "davey", "davy"]),
    ("deborah", &["debbie", "deb", "debra"]),
    ("dorothy", &["dot", "dottie", "dolly"]),
    ("edward", &["ed", "eddie", "ted", "teddy", "ned"]),
    ("elizabeth", &["liz", "lizzie", "beth", "betty", "bess", "eliza", "lisa", "libby", "elisabeth", "elsa"]),
    ("eleanor", &["ellie", "nell", "nora", "elenore"]),
    ("francis", &["frank", "frankie", "fran"]),
    ("frederick", &["fred", "freddie", "fritz"]),
    ("gabriel", &["gabe"]),
    ("gregory", &["greg"]),
    ("henry", &["hank", "harry", "hal"]),
    ("isabella", &["bella", "izzy", "isabel", "isabelle"]),
    ("jacob", &["jake", "jakob"]),
    ("james", &["jim", "jimmy", "jamie", "jas"]),
    ("jennifer", &["jen", "jenny", "jenn"]),
    ("jessica", &["jess", "jessie"]),
    ("john", &["jack", "johnny", "jon", "johann", "johannes", "hans", "jan"]),
    ("jonathan", &["jonny", "nathan"]),
    ("joseph", &["joe", "joey", "jo", "jose", "josef", "pepe"]),
    ("joshua", &["josh"]),
    ("katarzyna", &["kasia", "kaska"]),
    ("kenneth", &["ken", "kenny"]),
    ("lawrence", &["larry", "laurence"]),
    ("leonard", &["leo", "leon", "len", "lenny"]),
    ("malgorzata", &["gosia", "malgosia"]),
    ("margaret", &["maggie", "meg", "peggy", "marge", "margie", "greta", "margo", "margot"]),
    ("maria", &["mary", "mia", "marie", "mariya", "masha", "mari"]),
    ("matthew", &["matt", "matty", "mathew"]),
    ("michael", &["mike", "mikey", "mick", "mickey", "mikhail", "misha", "michal", "micha"]),
    ("nicholas", &["nick", "nicky", "nico", "nikolai", "nikolay", "klaus", "niklas"]),
    ("patricia", &["pat", "patty", "trish", "tricia"]),
    ("patrick", &["paddy", "rick"]),
    ("peter", &["pete", "piotr", "pyotr", "petr", "pedro", "pierre"]),
    ("rebecca", &["becky", "becca", "rebekah"]),
    ("richard", &["rich", "richie", "dick", "ricky", "ricardo"]),
    ("robert", &["rob", "bob", "bobby", "robbie", "bert", "roberto"]),
    ("ronald", &["ron", "ronnie"]),
    ("samuel", &["sam", "sammy"]),
    ("samantha", &["sammie"]),
    ("stephen", &["steve", "stevie", "steven", "stefan", "stephan", "esteban"]),
    ("susan", &["sue", "susie", "suzanne", "suzy"]),
    ("theodore", &["theo"]),
    ("thomas", &["tom", "tommy", "thom", "tomas", "tomasz"]),
    ("timothy", &["tim", "timmy"]),
    ("victoria", &["vicky", "vicki", "tori"]),
    ("vladimir", &["vova", "volodya", "wlodzimierz"]),
    ("william", &["will", "bill", "billy", "willy", "liam", "wilhelm", "guillermo", "willem"]),
    ("wojciech", &["wojtek"]),
    ("yekaterina", &["ekaterina", "katya", "katia"]),
    ("zachary", &["zach", "zack"]),
];

fn nicknames() -> &'static HashMap<&'static str, &'static str> {
    static TABLE: OnceLock<HashMap<&str, &str>> = OnceLock::new();
    TABLE.get_or_init(|| {
        NICKNAMES.iter().flat_map(|(formal, short)| short.iter().map(move |nick| (*nick, *formal))).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_meets_scripts_and_cases() {
        for (raw, folded) in [
            ("Łukasz", "lukasz"),
            ("MÜLLER", "muller"),
            ("O'Brien-Smith", "o brien smith"),
            ("  Anne   Marie ", "anne marie"),
            ("Дмитрий", "dmitrii"),
            ("Ζωή", "zoe"),
            ("", ""),
        ] {
            assert_eq!(fold(raw), folded, "{raw}");
        }
    }

    #[test]
    fn names_that_sound_alike_share_a_code() {
        let code = |name: &str| sounds(&fold(name));
        assert_eq!(code("Smith").0, code("Smyth").0);
        assert_eq!(code("Catherine").0, code("Kathryn").0);
        assert_ne!(code("Smith").0, code("Jones").0);
        assert_eq!(code(""), (String::new(), String::new()));
    }

    #[test]
    fn nicknames_stand_for_their_formal_name() {
        assert_eq!(formal("bob"), "robert");
        assert_eq!(formal("sasha"), "alexander");
        assert_eq!(formal("gosia"), "malgorzata");
        assert_eq!(formal("robert"), "robert");
        assert_eq!(formal("zebedee"), "zebedee");
    }
}
