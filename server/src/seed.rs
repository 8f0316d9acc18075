//! Realistic demo data for `c360 seed`: people and organizations from several
//! cultures, with a share of near-duplicate records whose true pairs are known.
//!
//! Everything is derived from one ChaCha8 stream, so a seed always produces
//! the same tenant: same ids (UUID v7 built from a fixed clock and the stream),
//! same names, same duplicates. Strong identifiers (email, phone, external id)
//! are derived from the record's index, so they never collide; a duplicate
//! carries its own, as the same person does when registered twice.

pub mod events;

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use crate::domain::{
    ProfileId, TenantId,
    identifiers::{IdentifierKey, IdentifierType, NormalizationPolicy, fold_for_search},
    profile::{
        Email, ExternalId, Phone, PostalAddress, Profile, ProfileData, ProfileKind, ProfileStatus, record_lineage,
    },
};

struct Culture {
    given: &'static [&'static str],
    family: &'static [&'static str],
    /// The best-known streets, a share of all addresses.
    streets: &'static [&'static str],
    /// How the culture names the rest of its streets, after a family name
    /// (`{}`): thousands of streets, as a country has.
    street_kinds: &'static [&'static str],
    /// (locality, region, postal code stem, ISO country)
    cities: &'static [(&'static str, &'static str, &'static str, &'static str)],
    mail: &'static str,
}

const CULTURES: &[Culture] = &[
    Culture {
        given: &[
            "James",
            "Mary",
            "Robert",
            "Patricia",
            "Michael",
            "Jennifer",
            "William",
            "Linda",
            "David",
            "Elizabeth",
            "Richard",
            "Susan",
            "Thomas",
            "Jessica",
            "Christopher",
            "Sarah",
        ],
        family: &[
            "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
            "Moore", "Jackson", "Martin", "Thompson", "White", "Harris",
        ],
        streets: &[
            "Main Street",
            "Oak Avenue",
            "Maple Drive",
            "Cedar Lane",
            "Pine Street",
            "Elm Road",
            "Washington Boulevard",
            "Lake Shore Drive",
        ],
        street_kinds: &["{} Street", "{} Avenue", "{} Road", "{} Lane", "{} Drive", "{} Court"],
        cities: &[
            ("San Francisco", "CA", "941", "US"),
            ("New York", "NY", "100", "US"),
            ("Chicago", "IL", "606", "US"),
            ("Boston", "MA", "021", "US"),
            ("Seattle", "WA", "981", "US"),
            ("Austin", "TX", "787", "US"),
        ],
        mail: "mail.example",
    },
    Culture {
        given: &[
            "José",
            "María",
            "Juan",
            "Lucía",
            "Carlos",
            "Sofía",
            "Javier",
            "Martina",
            "Alejandro",
            "Valentina",
            "Diego",
            "Camila",
        ],
        family: &[
            "García",
            "Rodríguez",
            "Martínez",
            "Hernández",
            "López",
            "González",
            "Pérez",
            "Sánchez",
            "Ramírez",
            "Torres",
            "Flores",
            "Núñez",
        ],
        streets: &["Calle Mayor", "Avenida de la Constitución", "Calle del Sol", "Paseo de Gracia", "Calle Real"],
        street_kinds: &["Calle {}", "Avenida de {}", "Plaza de {}", "Camino de {}"],
        cities: &[
            ("Madrid", "Madrid", "280", "ES"),
            ("Barcelona", "Cataluña", "080", "ES"),
            ("Sevilla", "Andalucía", "410", "ES"),
            ("Ciudad de México", "CDMX", "060", "MX"),
        ],
        mail: "correo.example",
    },
    Culture {
        given: &[
            "Lukas",
            "Anna",
            "Jonas",
            "Lena",
            "Maximilian",
            "Sophie",
            "Felix",
            "Marie",
            "Jürgen",
            "Jörg",
            "Björn",
            "Katharina",
        ],
        family: &[
            "Müller",
            "Schmidt",
            "Schneider",
            "Fischer",
            "Weber",
            "Meyer",
            "Wagner",
            "Becker",
            "Schulz",
            "Hoffmann",
            "Köhler",
            "Groß",
        ],
        streets: &["Hauptstraße", "Bahnhofstraße", "Gartenweg", "Schillerstraße", "Lindenallee"],
        street_kinds: &["{}straße", "{}weg", "{}platz", "{}allee"],
        cities: &[
            ("Berlin", "Berlin", "101", "DE"),
            ("München", "Bayern", "803", "DE"),
            ("Hamburg", "Hamburg", "203", "DE"),
            ("Wien", "Wien", "101", "AT"),
        ],
        mail: "post.example",
    },
    Culture {
        given: &[
            "Camille", "Louis", "Chloé", "Hugo", "Léa", "Gabriel", "Manon", "Arthur", "Zoë", "Théo", "Inès", "Noël",
        ],
        family: &[
            "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Lefèvre", "Moreau",
            "Girard", "O'Neill",
        ],
        streets: &["Rue de la Paix", "Avenue des Champs", "Boulevard Saint-Michel", "Rue Victor Hugo"],
        street_kinds: &["Rue {}", "Avenue {}", "Boulevard {}", "Impasse {}"],
        cities: &[
            ("Paris", "Île-de-France", "750", "FR"),
            ("Lyon", "Auvergne-Rhône-Alpes", "690", "FR"),
            ("Montréal", "QC", "H2X", "CA"),
        ],
        mail: "courriel.example",
    },
    Culture {
        given: &["Wei", "Fang", "Jun", "Li", "Hao", "Mei", "Yan", "Lei", "Xin", "Ying"],
        family: &["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou"],
        streets: &["Nanjing Road", "Huaihai Road", "Chang'an Avenue", "Zhongshan Road"],
        street_kinds: &["{} Road", "{} Street", "{} Lu"],
        cities: &[
            ("Shanghai", "Shanghai", "200", "CN"),
            ("Beijing", "Beijing", "100", "CN"),
            ("Singapore", "Singapore", "238", "SG"),
        ],
        mail: "inbox.example",
    },
    Culture {
        given: &["Aarav", "Priya", "Vivaan", "Ananya", "Aditya", "Diya", "Arjun", "Isha", "Rohan", "Kavya"],
        family: &["Sharma", "Patel", "Singh", "Kumar", "Gupta", "Reddy", "Iyer", "Nair", "Mehta", "Das"],
        streets: &["MG Road", "Park Street", "Brigade Road", "Linking Road"],
        street_kinds: &["{} Road", "{} Nagar", "{} Marg", "{} Street"],
        cities: &[
            ("Mumbai", "Maharashtra", "400", "IN"),
            ("Bengaluru", "Karnataka", "560", "IN"),
            ("London", "England", "E1", "GB"),
        ],
        mail: "mail.example",
    },
    Culture {
        given: &["Haruto", "Yui", "Sota", "Hina", "Ren", "Aoi", "Yuto", "Sakura"],
        family: &["Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura"],
        streets: &["Chuo-dori", "Omotesando", "Meiji-dori"],
        street_kinds: &["{}-dori", "{}-cho", "{}-machi"],
        cities: &[("Tokyo", "Tokyo", "100", "JP"), ("Osaka", "Osaka", "530", "JP")],
        mail: "post.example",
    },
    Culture {
        given: &["Chinedu", "Ngozi", "Oluwaseun", "Adaeze", "Emeka", "Folake", "Kwame", "Amara"],
        family: &["Okafor", "Adeyemi", "Okonkwo", "Eze", "Balogun", "Mensah", "Nwosu", "Abubakar"],
        streets: &["Allen Avenue", "Awolowo Road", "Broad Street"],
        street_kinds: &["{} Street", "{} Road", "{} Close", "{} Crescent"],
        cities: &[("Lagos", "Lagos", "100", "NG"), ("Accra", "Greater Accra", "GA", "GH")],
        mail: "mail.example",
    },
    Culture {
        given: &["Mohammed", "Fatima", "Ahmed", "Aisha", "Omar", "Layla", "Youssef", "Mariam"],
        family: &["Al-Sayed", "Haddad", "Khalil", "Mansour", "Nasser", "Saleh", "Farouk", "Aziz"],
        streets: &["Sheikh Zayed Road", "Corniche Street", "Al Wasl Road"],
        street_kinds: &["{} Street", "{} Road", "Al {} Street"],
        cities: &[("Dubai", "Dubai", "000", "AE"), ("Amman", "Amman", "111", "JO")],
        mail: "inbox.example",
    },
    Culture {
        given: &["Jakub", "Zofia", "Łukasz", "Małgorzata", "Paweł", "Agnieszka", "Krzysztof", "Magdalena"],
        family: &["Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kamiński", "Lewandowski", "Zieliński", "Żółć"],
        streets: &["ulica Marszałkowska", "ulica Floriańska", "aleja Jana Pawła II"],
        street_kinds: &["ulica {}", "aleja {}", "plac {}"],
        cities: &[("Warszawa", "Mazowieckie", "00-", "PL"), ("Kraków", "Małopolskie", "30-", "PL")],
        mail: "poczta.example",
    },
    // Written in Cyrillic; its duplicates from other systems often in Latin
    // letters (see [`transliterate`]).
    Culture {
        given: &[
            "Александр",
            "Дмитрий",
            "Максим",
            "Сергей",
            "Андрей",
            "Алексей",
            "Анна",
            "Мария",
            "Елена",
            "Ольга",
            "Наталья",
            "Юлия",
        ],
        family: &[
            "Иванов",
            "Смирнов",
            "Кузнецов",
            "Попов",
            "Васильев",
            "Петров",
            "Соколов",
            "Михайлов",
            "Новиков",
            "Фёдоров",
            "Морозов",
            "Волков",
        ],
        streets: &["Тверская улица", "Невский проспект", "улица Арбат"],
        street_kinds: &["улица {}", "проспект {}", "переулок {}"],
        cities: &[("Москва", "Москва", "101", "RU"), ("Санкт-Петербург", "Санкт-Петербург", "190", "RU")],
        mail: "pochta.example",
    },
];

const NICKNAMES: &[(&str, &str)] = &[
    ("Robert", "Bob"),
    ("William", "Bill"),
    ("Elizabeth", "Liz"),
    ("Michael", "Mike"),
    ("Jennifer", "Jen"),
    ("Richard", "Rick"),
    ("Thomas", "Tom"),
    ("Christopher", "Chris"),
    ("Patricia", "Pat"),
    ("James", "Jim"),
    ("Katharina", "Kathi"),
    ("Maximilian", "Max"),
    ("Alejandro", "Alex"),
    ("Javier", "Javi"),
    ("José", "Pepe"),
];

const SOURCES: &[&str] = &["salesforce", "shopify", "pos", "quickbooks", "zendesk"];
const INDUSTRIES: &[&str] =
    &["Logistics", "Foods", "Outfitters", "Analytics", "Builders", "Pharma", "Textiles", "Motors"];
const COMPANY_SUFFIXES: &[&str] = &["Inc.", "LLC", "GmbH", "S.A.", "Ltd", "SARL", "K.K.", "Sp. z o.o."];
const PERSON_SEGMENTS: &[&str] = &["NEW", "REGULAR", "LOYAL", "VIP"];
const ORG_SEGMENTS: &[&str] = &["SMB", "MID_MARKET", "ENTERPRISE"];
/// Share of persons with a junk email, and with a junk phone.
const JUNK_SHARE: f64 = 0.01;
/// Placeholders clerks type when a customer gives no email.
const JUNK_EMAILS: &[&str] = &["noemail@noemail.example", "info@shop.example", "none@none.example"];
/// The shops' own switchboard numbers, typed for customers who gave none.
const JUNK_PHONES: &[&str] = &["+1 212 900 0100", "+1 415 900 0100", "+1 312 900 0100"];
/// Share of persons known by little but a name and a town (a duplicate:
/// twice that).
const NAME_AND_CITY_ONLY: f64 = 0.05;
const AREA_CODES: &[u32] = &[212, 312, 415, 617, 206, 303, 404, 512, 602, 713];

/// How to seed.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Tenant to fill.
    pub tenant: TenantId,
    /// Seed of the random stream.
    pub seed: u64,
    /// Share of records that are near-duplicates of an earlier person (0–1).
    pub duplicates: f64,
    /// Share of records that are organizations (0–1).
    pub organizations: f64,
}

/// One generated record.
pub struct Generated {
    /// The profile.
    pub profile: Profile,
    /// For a near-duplicate: the original's id and external id.
    pub duplicate_of: Option<(ProfileId, ExternalId)>,
    /// For a near-duplicate: how its name differs from the original's, then
    /// the fields it still shares with it ("typo_given;birth_date;address"),
    /// so accuracy can be reported per kind of evidence.
    pub evidence: String,
    /// Identifiers the record carried that another profile holds, with that
    /// holder: its original's email or phone, or a junk value (a shop's own
    /// number typed for a customer who gave none). Loaded as an import loads
    /// them: left out of the profile and kept as held.
    pub held: Vec<(IdentifierKey, ProfileId)>,
}

/// Produces records one at a time.
pub struct Generator {
    options: SeedOptions,
    rng: ChaCha8Rng,
    policy: NormalizationPolicy,
    index: u64,
    epoch: DateTime<Utc>,
    /// Recent persons: duplicates copy one of them, organizations name one as contact.
    recent: VecDeque<Profile>,
    /// Who holds each junk value given so far.
    junk_holders: HashMap<IdentifierKey, ProfileId>,
}

impl Generator {
    /// A generator for `options`, normalizing phones by `policy`.
    pub fn new(options: SeedOptions, policy: NormalizationPolicy) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(options.seed);
        let epoch = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).single().unwrap_or_else(Utc::now);
        Self {
            options,
            rng,
            policy,
            index: 0,
            epoch,
            recent: VecDeque::with_capacity(10_000),
            junk_holders: HashMap::new(),
        }
    }

    /// The next record.
    pub fn next_record(&mut self) -> Generated {
        self.index += 1;
        let roll: f64 = self.rng.random();
        if roll < self.options.duplicates && !self.recent.is_empty() {
            let original = self.recent[self.rng.random_range(0..self.recent.len())].clone();
            let (profile, evidence, held) = self.near_duplicate(&original);
            let held = held.into_iter().map(|key| (key, original.id)).collect();
            let external = original
                .data
                .external_ids
                .first()
                .cloned()
                .unwrap_or(ExternalId { source: String::new(), id: String::new() });
            return Generated { profile, duplicate_of: Some((original.id, external)), evidence, held };
        }
        let (profile, held) = if roll < self.options.duplicates + self.options.organizations && !self.recent.is_empty()
        {
            (self.organization(), Vec::new())
        } else {
            let (person, held) = self.person();
            if self.recent.len() == self.recent.capacity() {
                self.recent.pop_front();
            }
            self.recent.push_back(person.clone());
            (person, held)
        };
        Generated { profile, duplicate_of: None, evidence: String::new(), held }
    }

    fn person(&mut self) -> (Profile, Vec<(IdentifierKey, ProfileId)>) {
        let at = self.rng.random_range(0..CULTURES.len());
        let culture = &CULTURES[at];
        let (given_pool, family_pool) = &pools()[at];
        let given = given_pool.draw(&mut self.rng);
        let family = family_pool.draw(&mut self.rng);
        let source = pick(&mut self.rng, SOURCES);
        let birth = NaiveDate::from_ymd_opt(
            1940 + self.rng.random_range(0..66),
            self.rng.random_range(1..=12),
            self.rng.random_range(1..=28),
        );
        let attributes = json!({
            "loyalty_points": self.rng.random_range(0..20_000),
            "preferred_channel": pick(&mut self.rng, &["email", "sms", "phone", "none"]),
        });
        let data = ProfileData {
            kind: ProfileKind::Person,
            status: if self.rng.random_bool(0.8) { ProfileStatus::Active } else { ProfileStatus::Prospect },
            given_name: Some(given.to_owned()),
            family_name: Some(family.to_owned()),
            company_name: None,
            segment: Some(pick(&mut self.rng, PERSON_SEGMENTS).to_owned()),
            emails: vec![self.email(given, family, culture.mail)],
            phones: if self.rng.random_bool(0.7) { self.phone().into_iter().collect() } else { Vec::new() },
            addresses: if self.rng.random_bool(0.8) { vec![self.address(at)] } else { Vec::new() },
            birth_date: if self.rng.random_bool(0.6) { birth } else { None },
            primary_contact_id: None,
            attributes: as_object(attributes),
            external_ids: vec![self.external_id(source)],
        };
        let mut data = data;
        // Walk-in records: a name and the town, nothing else.
        if self.rng.random_bool(NAME_AND_CITY_ONLY) {
            data.addresses = vec![self.address(at)];
            keep_name_and_town(&mut data);
        }
        let (keep, held): (Vec<_>, Vec<_>) =
            self.junk().into_iter().partition(|key| !self.junk_holders.contains_key(key));
        let held: Vec<_> = held.into_iter().map(|key| (key.clone(), self.junk_holders[&key])).collect();
        for key in held.iter().map(|(key, _)| key).chain(&keep) {
            match key.id_type {
                IdentifierType::Email => data.emails.clear(),
                _ => data.phones.clear(),
            }
        }
        for key in &keep {
            match key.id_type {
                IdentifierType::Email => {
                    data.emails = vec![Email { address: key.value.clone(), label: String::new(), primary: true }];
                }
                _ => data.phones = vec![Phone { number: key.value.clone(), label: "work".into(), primary: true }],
            }
        }
        let profile = self.profile(data, source);
        for key in keep {
            self.junk_holders.insert(key, profile.id);
        }
        (profile, held)
    }

    /// The junk values a person's record carries: a placeholder email typed
    /// by a clerk, the shop's own switchboard number. They are shared by
    /// many who are not one person, so they must never link anyone.
    fn junk(&mut self) -> Vec<IdentifierKey> {
        let mut junk = Vec::new();
        if self.rng.random_bool(JUNK_SHARE) {
            let value = pick(&mut self.rng, JUNK_EMAILS).to_owned();
            junk.push(IdentifierKey { id_type: IdentifierType::Email, namespace: String::new(), value });
        }
        if self.rng.random_bool(JUNK_SHARE)
            && let Ok(value) = self.policy.phone(pick(&mut self.rng, JUNK_PHONES))
        {
            junk.push(IdentifierKey { id_type: IdentifierType::Phone, namespace: String::new(), value });
        }
        junk
    }

    fn organization(&mut self) -> Profile {
        let at = self.rng.random_range(0..CULTURES.len());
        let culture = &CULTURES[at];
        let name = format!(
            "{} {} {}",
            pick(&mut self.rng, culture.family),
            pick(&mut self.rng, INDUSTRIES),
            pick(&mut self.rng, COMPANY_SUFFIXES)
        );
        let slug = fold_for_search(&name).replace(' ', "-");
        let contact = self.recent.back().map(|p| p.id);
        let data = ProfileData {
            kind: ProfileKind::Organization,
            status: ProfileStatus::Active,
            company_name: Some(name),
            segment: Some(pick(&mut self.rng, ORG_SEGMENTS).to_owned()),
            emails: vec![Email {
                address: format!("info.{}@{slug}.example", self.index),
                label: "work".into(),
                primary: true,
            }],
            phones: self.phone().into_iter().collect(),
            addresses: vec![self.address(at)],
            primary_contact_id: contact,
            attributes: as_object(json!({ "employees": self.rng.random_range(5..50_000) })),
            external_ids: vec![self.external_id("quickbooks")],
            ..ProfileData::default()
        };
        self.profile(data, "quickbooks")
    }

    /// The same person entered again elsewhere: a typo, a nickname, swapped or
    /// upper-cased names, another email, fields missing; with the evidence it
    /// carries (see [`Generated::evidence`]).
    fn near_duplicate(&mut self, original: &Profile) -> (Profile, String, Vec<IdentifierKey>) {
        let mut data = original.data.clone();
        let source =
            SOURCES.iter().find(|s| !original.data.external_ids.iter().any(|x| x.source == **s)).unwrap_or(&"pos");
        let given = data.given_name.clone().unwrap_or_default();
        let family = data.family_name.clone().unwrap_or_default();
        let mut evidence = vec![match self.rng.random_range(0..5) {
            0 => {
                data.given_name = Some(typo(&mut self.rng, &given));
                "typo_given"
            }
            1 => {
                data.family_name = Some(typo(&mut self.rng, &family));
                "typo_family"
            }
            2 => {
                let nickname = NICKNAMES.iter().find(|(full, _)| *full == given).map(|(_, nick)| *nick);
                data.given_name = Some(nickname.map_or_else(|| typo(&mut self.rng, &given), str::to_owned));
                if nickname.is_some() { "nickname" } else { "typo_given" }
            }
            3 => {
                data.given_name = Some(family.clone());
                data.family_name = Some(given.clone());
                "swapped"
            }
            // A system that keeps Latin letters only.
            _ if !given.is_ascii() && given.chars().any(|c| transliterate(c).is_some()) => {
                data.given_name = Some(latin(&given));
                data.family_name = Some(latin(&family));
                for address in &mut data.addresses {
                    address.lines = address.lines.iter().map(|line| latin(line)).collect();
                    address.locality = latin(&address.locality);
                    address.region = latin(&address.region);
                }
                "transliterated"
            }
            _ => {
                data.family_name = Some(family.to_uppercase());
                "upper_case"
            }
        }];
        data.emails =
            if self.rng.random_bool(0.6) { vec![self.email(&given, &family, "other.example")] } else { Vec::new() };
        data.phones = if self.rng.random_bool(0.3) { self.phone().into_iter().collect() } else { Vec::new() };
        if self.rng.random_bool(0.4) {
            data.addresses.clear();
        }
        if self.rng.random_bool(0.3) {
            data.birth_date = None;
        }
        data.segment = None;
        data.external_ids = vec![self.external_id(source)];
        // Taken at a till with a name and the town only.
        let sparse = self.rng.random_bool(NAME_AND_CITY_ONLY * 2.0);
        if sparse {
            keep_name_and_town(&mut data);
            if !data.addresses.is_empty() {
                evidence.push("city");
            }
        }
        if data.birth_date.is_some() {
            evidence.push("birth_date");
        }
        if data.addresses.iter().any(|a| !a.lines.is_empty()) {
            evidence.push("address");
        }
        // Entered again with the same email or phone (a till asking for it):
        // the original holds it, so the record is loaded without it.
        let mut held = Vec::new();
        let shared = self.rng.random_range(0..10);
        let email = original.data.emails.first().map(|e| self.policy.email_key(&e.address));
        if let Some(value) = email.filter(|_| shared < 2 && !sparse) {
            held.push(IdentifierKey { id_type: IdentifierType::Email, namespace: String::new(), value });
            evidence.push("shared_email");
        } else if shared < 3 && !sparse && !original.data.phones.is_empty() {
            let phone = original.data.phones[0].number.clone();
            held.push(IdentifierKey { id_type: IdentifierType::Phone, namespace: String::new(), value: phone });
            evidence.push("shared_phone");
        }
        (self.profile(data, source), evidence.join(";"), held)
    }

    fn profile(&mut self, data: ProfileData, source: &str) -> Profile {
        let created = self.epoch + Duration::milliseconds(self.index as i64 * 37);
        let mut random = [0u8; 10];
        self.rng.fill(&mut random);
        let id = uuid::Builder::from_unix_timestamp_millis(created.timestamp_millis() as u64, &random).into_uuid();
        let mut lineage = BTreeMap::new();
        record_lineage(&mut lineage, &data, &data.set_fields(), source, created);
        Profile {
            id: ProfileId::from(id),
            tenant: self.options.tenant.clone(),
            data,
            lineage,
            version: 1,
            created_at: created,
            updated_at: created,
            merged_into: None,
        }
    }

    fn email(&mut self, given: &str, family: &str, domain: &str) -> Email {
        let local = format!("{}.{}.{}", fold_for_search(given), fold_for_search(family), self.index).replace(' ', "");
        Email {
            address: format!("{local}@{domain}"),
            label: pick(&mut self.rng, &["home", "work", ""]).to_owned(),
            primary: true,
        }
    }

    /// A valid US number unique to this record's index.
    fn phone(&mut self) -> Option<Phone> {
        let mut n = self.index;
        let area = AREA_CODES[(n % AREA_CODES.len() as u64) as usize];
        n /= AREA_CODES.len() as u64;
        let line = n % 10_000;
        n /= 10_000;
        let exchange = 200 + n % 700;
        let formatted = match self.rng.random_range(0..3) {
            0 => format!("({area}) {exchange}-{line:04}"),
            1 => format!("+1 {area} {exchange} {line:04}"),
            _ => format!("{area}.{exchange}.{line:04}"),
        };
        let number = self.policy.phone(&formatted).ok()?;
        Some(Phone { number, label: pick(&mut self.rng, &["mobile", "home", "work"]).to_owned(), primary: true })
    }

    /// An address in culture `at`: one of its best-known streets or one of
    /// thousands named after people, its postal code following the street
    /// (neighbours share one, a long street has a few).
    fn address(&mut self, at: usize) -> PostalAddress {
        let culture = &CULTURES[at];
        let (locality, region, postal, country) = *culture.cities.choose(&mut self.rng).unwrap_or(&culture.cities[0]);
        let street = if self.rng.random_bool(0.2) {
            pick(&mut self.rng, culture.streets).to_owned()
        } else {
            let kind = pick(&mut self.rng, culture.street_kinds);
            kind.replace("{}", pools()[at].1.draw(&mut self.rng))
        };
        let number: u32 = self.rng.random_range(1..400);
        let sector = fnv1a(format!("{locality}|{street}|{}", number / 100).as_bytes()) % 100;
        PostalAddress {
            lines: vec![format!("{number} {street}")],
            locality: locality.to_owned(),
            region: region.to_owned(),
            postal_code: format!("{postal}{sector:02}"),
            country_code: country.to_owned(),
            label: "home".to_owned(),
        }
    }

    fn external_id(&mut self, source: &str) -> ExternalId {
        let id = match source {
            "salesforce" => format!("0031x{:010}", self.index),
            "shopify" => format!("{}", 7_000_000_000 + self.index),
            "pos" => format!("POS-{:08}", self.index),
            "zendesk" => format!("zd-{}", self.index),
            _ => format!("QB{:07}", self.index),
        };
        ExternalId { source: source.to_owned(), id }
    }
}

/// A culture's names as a population has them: its common names first, then
/// a long tail of rarer ones built from their parts (the head of one and the
/// tail of another), drawn with Zipf-like frequencies (rank r weighs
/// 1/(r + 10)): most people share a name with few others, as in a real
/// population, and a common name plus a city is no longer one person.
struct Pool {
    names: Vec<String>,
    cumulative: Vec<f64>,
}

/// Most names in one pool.
const POOL_SIZE: usize = 2_500;

impl Pool {
    fn new(common: &[&str]) -> Self {
        let mut names: Vec<String> = common.iter().map(|n| (*n).to_owned()).collect();
        let cut = |name: &str, share: f64| {
            let chars: Vec<char> = name.chars().collect();
            let at = ((chars.len() as f64 * share).round() as usize).clamp(1, chars.len().saturating_sub(1).max(1));
            (chars[..at].iter().collect::<String>(), chars[at..].iter().collect::<String>())
        };
        let shares = [0.25, 0.34, 0.5, 0.67, 0.75];
        // Whole names too, so short ones combine into two-part names.
        let mut heads: Vec<String> = common.iter().flat_map(|n| shares.iter().map(|s| cut(n, *s).0)).collect();
        let mut tails: Vec<String> = common.iter().flat_map(|n| shares.iter().map(|s| cut(n, *s).1)).collect();
        heads.extend(common.iter().map(|n| (*n).to_owned()));
        tails.extend(common.iter().map(|n| (*n).to_owned()));
        let mut seen: std::collections::HashSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
        'outer: for tail in &tails {
            for head in &heads {
                let name = format!("{head}{}", tail.to_lowercase());
                if name.chars().count() >= 3 && seen.insert(name.to_lowercase()) {
                    names.push(name);
                    if names.len() == POOL_SIZE {
                        break 'outer;
                    }
                }
            }
        }
        let mut total = 0.0;
        let cumulative = (0..names.len())
            .map(|rank| {
                total += 1.0 / (rank as f64 + 10.0);
                total
            })
            .collect();
        Self { names, cumulative }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        let at = self.cumulative.partition_point(|c| *c < x).min(self.names.len().saturating_sub(1));
        self.names.get(at).map_or("", String::as_str)
    }
}

/// The (given, family) name pools of each culture, in [`CULTURES`] order.
fn pools() -> &'static [(Pool, Pool)] {
    static POOLS: std::sync::OnceLock<Vec<(Pool, Pool)>> = std::sync::OnceLock::new();
    POOLS.get_or_init(|| CULTURES.iter().map(|c| (Pool::new(c.given), Pool::new(c.family))).collect())
}

fn pick<'a>(rng: &mut ChaCha8Rng, options: &[&'a str]) -> &'a str {
    options.choose(rng).copied().unwrap_or_default()
}

fn as_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `data` with its names and towns only, as a till that asked for no more
/// records a customer.
fn keep_name_and_town(data: &mut ProfileData) {
    data.emails.clear();
    data.phones.clear();
    data.birth_date = None;
    for address in &mut data.addresses {
        address.lines.clear();
        address.postal_code.clear();
    }
    data.addresses.retain(|a| !a.locality.is_empty());
}

/// FNV-1a: a hash that stays the same across Rust releases, so a seed
/// always draws the same postal codes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A Cyrillic letter in Latin letters as passports write it (ICAO 9303),
/// which is not how the matcher transliterates: `Юлия` becomes `Iuliia`
/// here and `yuliya` there.
fn transliterate(c: char) -> Option<&'static str> {
    let lower = c.to_lowercase().next()?;
    let index = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя".chars().position(|x| x == lower)?;
    const LATIN: [&str; 33] = [
        "a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "i", "k", "l", "m", "n", "o", "p", "r", "s", "t", "u", "f",
        "kh", "ts", "ch", "sh", "shch", "ie", "y", "", "e", "iu", "ia",
    ];
    Some(LATIN[index])
}

/// `text` with its Cyrillic letters transliterated, capitals kept.
fn latin(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        match transliterate(c) {
            Some(latin) if c.is_uppercase() => {
                let mut letters = latin.chars();
                out.extend(letters.next().map(|first| first.to_ascii_uppercase()));
                out.push_str(letters.as_str());
            }
            Some(latin) => out.push_str(latin),
            None => out.push(c),
        }
    }
    out
}

/// One keyboard slip: two neighbouring letters swapped, or one dropped.
fn typo(rng: &mut ChaCha8Rng, word: &str) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() < 3 {
        return word.to_owned();
    }
    let at = rng.random_range(1..chars.len() - 1);
    if rng.random_bool(0.5) {
        chars.swap(at, at + 1);
    } else {
        chars.remove(at);
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::Violations;

    fn generator(seed: u64) -> Generator {
        let options =
            SeedOptions { tenant: TenantId::parse("demo").expect("tenant"), seed, duplicates: 0.1, organizations: 0.1 };
        Generator::new(options, NormalizationPolicy::default())
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        let (mut a, mut b, mut c) = (generator(7), generator(7), generator(8));
        let mut differs = false;
        for _ in 0..500 {
            let (x, y, z) = (a.next_record(), b.next_record(), c.next_record());
            assert_eq!(x.profile, y.profile);
            assert_eq!(x.duplicate_of, y.duplicate_of);
            assert_eq!((&x.held, &x.evidence), (&y.held, &y.evidence));
            differs |= x.profile != z.profile;
        }
        assert!(differs, "another seed gives other records");
    }

    #[test]
    fn records_are_valid_profiles_with_unique_identifiers_and_some_duplicates() {
        let policy = NormalizationPolicy::default();
        let mut generator = generator(1);
        let mut keys = std::collections::HashSet::new();
        let (mut duplicates, mut organizations, mut phones) = (0, 0, 0);
        for _ in 0..5000 {
            let record = generator.next_record();
            let mut violations = Violations::default();
            record.profile.data.check_consistency(&policy, &mut violations);
            assert!(violations.is_empty(), "{violations:?} in {:?}", record.profile);
            for (key, _) in record.profile.data.identity_keys(&policy) {
                assert!(keys.insert(key.clone()), "{key} generated twice");
            }
            duplicates += usize::from(record.duplicate_of.is_some());
            organizations += usize::from(record.profile.data.kind == ProfileKind::Organization);
            phones += record.profile.data.phones.len();
        }
        assert!((350..650).contains(&duplicates), "{duplicates} duplicates");
        assert!((350..650).contains(&organizations), "{organizations} organizations");
        assert!(phones > 2500, "phones are valid numbers ({phones})");
    }

    #[test]
    fn junk_values_are_shared_by_many_and_held_by_one() {
        let mut generator = generator(5);
        let mut holders: std::collections::HashMap<IdentifierKey, ProfileId> = Default::default();
        let mut held = 0;
        for _ in 0..20_000 {
            let record = generator.next_record();
            for (key, holder) in &record.held {
                if record.duplicate_of.is_none() {
                    held += 1;
                    assert_eq!(holders.entry(key.clone()).or_insert(*holder), holder, "one holder per value");
                    assert!(!record.profile.data.emails.iter().any(|e| e.address == key.value));
                    assert!(!record.profile.data.phones.iter().any(|p| p.number == key.value));
                }
            }
        }
        // 1% of persons each way, three values of each.
        assert!(held > 150, "{held} junk values held");
        assert_eq!(holders.len(), JUNK_EMAILS.len() + JUNK_PHONES.len(), "{holders:?}");
    }

    #[test]
    fn sparse_and_transliterated_records_and_thousands_of_streets() {
        let mut generator = generator(6);
        let (mut walk_ins, mut transliterated, mut city_only) = (0, 0, 0);
        let mut streets = std::collections::HashSet::new();
        let mut postcodes: std::collections::HashMap<String, std::collections::HashSet<String>> = Default::default();
        for _ in 0..20_000 {
            let record = generator.next_record();
            let data = &record.profile.data;
            if data.kind != ProfileKind::Person {
                continue;
            }
            if record.evidence.contains("transliterated") {
                transliterated += 1;
                assert!(data.given_name.as_deref().is_some_and(str::is_ascii), "{data:?}");
            }
            city_only += usize::from(record.evidence.contains("city"));
            let sparse = data.emails.is_empty() && data.phones.is_empty() && data.birth_date.is_none();
            if sparse && record.duplicate_of.is_none() && record.held.is_empty() {
                walk_ins += 1;
                assert!(data.addresses.iter().all(|a| a.lines.is_empty() && !a.locality.is_empty()), "{data:?}");
            }
            for address in &data.addresses {
                if let Some(line) = address.lines.first() {
                    let (number, street) = line.split_once(' ').expect("number and street");
                    streets.insert(street.to_owned());
                    // A street's numbers share postal codes by the hundred.
                    let block =
                        format!("{}|{street}|{}", address.locality, number.parse::<u32>().expect("house number") / 100);
                    postcodes.entry(block).or_default().insert(address.postal_code.clone());
                }
            }
        }
        assert!((500..1500).contains(&walk_ins), "{walk_ins} walk-ins");
        assert!(transliterated > 5, "{transliterated}");
        assert!(city_only > 50, "{city_only}");
        assert!(streets.len() > 5_000, "{} streets", streets.len());
        assert!(postcodes.values().all(|codes| codes.len() == 1), "one postal code per block of a street");
    }

    #[test]
    fn cyrillic_is_written_as_passports_do() {
        assert_eq!(latin("Юлия Фёдорова"), "Iuliia Fedorova");
        assert_eq!(latin("Щукин, Mary"), "Shchukin, Mary");
    }

    #[test]
    fn names_have_a_long_tail_with_a_common_head() {
        for (given, family) in pools() {
            // Hundreds even where a culture's common names are few and short.
            assert!(
                family.names.len() >= 250 && given.names.len() >= 250,
                "{} {}",
                given.names.len(),
                family.names.len()
            );
        }
        let mut generator = generator(3);
        let mut counts: std::collections::HashMap<(String, String), usize> = Default::default();
        let mut people = 0;
        for _ in 0..20_000 {
            let record = generator.next_record();
            if record.profile.data.kind == ProfileKind::Person && record.duplicate_of.is_none() {
                let data = &record.profile.data;
                *counts
                    .entry((data.given_name.clone().unwrap_or_default(), data.family_name.clone().unwrap_or_default()))
                    .or_default() += 1;
                people += 1;
            }
        }
        // Most full names belong to one person; the commonest to a few dozen.
        assert!(counts.len() * 10 >= people * 7, "{} distinct names among {people}", counts.len());
        assert!(counts.values().max().is_some_and(|m| *m < 60), "{:?}", counts.values().max());
    }
}
