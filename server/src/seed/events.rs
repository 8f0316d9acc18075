//! Demo interactions for `c360 seed --events M`: purchases, returns, support
//! cases, email opens, page views, store visits, and for organizations the
//! sales pipeline (opportunities, contracts, service orders).
//!
//! Events are drawn from their own ChaCha8 stream (the seed, salted), so
//! asking for events never changes the profiles a seed writes. A fifth of the
//! events go to one profile in a hundred: real tenants have a few customers
//! with long histories, and the timeline must be fast for them too.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::{as_object, pick};
use crate::domain::{
    ProfileId, TenantId,
    interaction::{Interaction, InteractionType, Money},
    profile::{Profile, ProfileKind},
};

/// Salt of the events' random stream, so it differs from the profiles' one.
const STREAM_SALT: u64 = 0x6576_656e_7473;

/// Events of a person: (type, weight out of 100).
const PERSON_MIX: &[(InteractionType, u32)] = &[
    (InteractionType::Purchase, 28),
    (InteractionType::PageView, 25),
    (InteractionType::EmailOpened, 20),
    (InteractionType::StoreVisit, 8),
    (InteractionType::SupportCase, 7),
    (InteractionType::OrderReturned, 4),
    (InteractionType::SocialMention, 4),
    (InteractionType::LeadCreated, 4),
];

/// Events of an organization: (type, weight out of 100).
const ORGANIZATION_MIX: &[(InteractionType, u32)] = &[
    (InteractionType::OpportunityUpdated, 30),
    (InteractionType::Purchase, 20),
    (InteractionType::SupportCase, 15),
    (InteractionType::ServiceOrderCreated, 15),
    (InteractionType::EmailOpened, 10),
    (InteractionType::ContractActivated, 5),
    (InteractionType::LeadCreated, 5),
];

const CATEGORIES: &[&str] =
    &["athletic wear", "outdoor", "electronics", "home", "beauty", "toys", "groceries", "books"];
const STAGES: &[(&str, u32)] =
    &[("QUALIFICATION", 10), ("PROPOSAL", 40), ("NEGOTIATION", 70), ("CLOSED_WON", 100), ("CLOSED_LOST", 0)];

/// What the generator needs to know of a profile to give it events.
#[derive(Debug, Clone)]
pub struct EventTarget {
    id: ProfileId,
    kind: ProfileKind,
    created_at: DateTime<Utc>,
    currency: &'static str,
}

impl From<&Profile> for EventTarget {
    fn from(profile: &Profile) -> Self {
        let country = profile.data.addresses.first().map_or("US", |a| a.country_code.as_str());
        Self { id: profile.id, kind: profile.data.kind, created_at: profile.created_at, currency: currency(country) }
    }
}

/// The local currency of a seeded country.
fn currency(country: &str) -> &'static str {
    match country {
        "DE" | "ES" | "FR" | "AT" => "EUR",
        "GB" => "GBP",
        "CA" => "CAD",
        "JP" => "JPY",
        "CN" => "CNY",
        "IN" => "INR",
        "MX" => "MXN",
        "NG" => "NGN",
        "GH" => "GHS",
        "PL" => "PLN",
        "JO" => "JOD",
        "AE" => "AED",
        "SG" => "SGD",
        _ => "USD",
    }
}

/// Produces interactions for a fixed set of profiles.
pub struct EventGenerator {
    tenant: TenantId,
    rng: ChaCha8Rng,
    targets: Vec<EventTarget>,
    /// Events happen up to this instant.
    until: DateTime<Utc>,
}

impl EventGenerator {
    /// A generator for events of `targets` (in the order they were seeded).
    pub fn new(tenant: TenantId, seed: u64, targets: Vec<EventTarget>) -> Self {
        let until = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap_or_else(Utc::now);
        Self { tenant, rng: ChaCha8Rng::seed_from_u64(seed ^ STREAM_SALT), targets, until }
    }

    /// The next interaction; `None` when there are no profiles to give it to.
    pub fn next_event(&mut self) -> Option<Interaction> {
        let target = self.pick_target()?.clone();
        let mix = match target.kind {
            ProfileKind::Person => PERSON_MIX,
            ProfileKind::Organization => ORGANIZATION_MIX,
        };
        let kind = weighted(&mut self.rng, mix);
        let span = (self.until - target.created_at).num_seconds().max(1);
        let occurred_at = target.created_at + Duration::seconds(self.rng.random_range(0..span));
        let received_at = occurred_at + Duration::milliseconds(self.rng.random_range(50..3_600_000));
        let mut random = [0u8; 16];
        self.rng.fill(&mut random);
        let event_id = format!("evt_{}", uuid::Builder::from_random_bytes(random).into_uuid().simple());
        let (channel, source, amount, properties) = self.details(kind, &target);
        Some(Interaction {
            tenant: self.tenant.clone(),
            event_id,
            profile_id: target.id,
            kind,
            channel: Some(channel.to_owned()),
            source: source.to_owned(),
            occurred_at,
            received_at,
            amount,
            properties: as_object(properties),
        })
    }

    /// One profile in a hundred draws a fifth of all events.
    fn pick_target(&mut self) -> Option<&EventTarget> {
        let count = self.targets.len();
        if count == 0 {
            return None;
        }
        let index = if self.rng.random_bool(0.2) {
            self.rng.random_range(0..count.div_ceil(100)) * 100
        } else {
            self.rng.random_range(0..count)
        };
        self.targets.get(index.min(count - 1))
    }

    /// Channel, source, amount and properties of one interaction.
    fn details(
        &mut self,
        kind: InteractionType,
        target: &EventTarget,
    ) -> (&'static str, &'static str, Option<Money>, Value) {
        let rng = &mut self.rng;
        let business = target.kind == ProfileKind::Organization;
        let number = rng.random_range(100_000..10_000_000u64);
        match kind {
            InteractionType::Purchase => {
                let (channel, source) = if rng.random_bool(0.6) { ("WEB", "shopify") } else { ("STORE", "pos") };
                let cents = if business { rng.random_range(50_000..5_000_000) } else { rng.random_range(500..50_000) };
                let items = rng.random_range(1..8);
                let category = pick(rng, CATEGORIES);
                let properties = json!({ "order_id": format!("ORD-{number}"), "category": category, "items": items });
                (channel, source, Some(money(cents, target.currency)), properties)
            }
            InteractionType::OrderReturned => {
                let reason = pick(rng, &["wrong size", "damaged", "changed mind", "late delivery"]);
                let amount = money(rng.random_range(500..20_000), target.currency);
                ("WEB", "shopify", Some(amount), json!({ "order_id": format!("ORD-{number}"), "reason": reason }))
            }
            InteractionType::SupportCase => {
                let channel = pick(rng, &["PHONE", "EMAIL", "CHAT"]);
                let priority = pick(rng, &["LOW", "NORMAL", "NORMAL", "HIGH", "URGENT"]);
                let topic = pick(rng, &["billing", "delivery", "product defect", "account access", "installation"]);
                let properties = json!({ "case_id": format!("CS-{number}"), "priority": priority, "topic": topic });
                (channel, "zendesk", None, properties)
            }
            InteractionType::EmailOpened => {
                let campaign = pick(rng, &["spring-sale", "new-arrivals", "loyalty-bonus", "webinar", "newsletter"]);
                ("EMAIL", "marketo", None, json!({ "campaign": campaign }))
            }
            InteractionType::PageView => {
                let category = pick(rng, CATEGORIES);
                let path = format!("/c/{}/{}", category.replace(' ', "-"), rng.random_range(1..500));
                ("WEB", "web", None, json!({ "path": path, "category": category }))
            }
            InteractionType::SocialMention => {
                let network = pick(rng, &["instagram", "x", "facebook", "tiktok"]);
                let sentiment = pick(rng, &["positive", "neutral", "negative"]);
                ("SOCIAL", "sprinklr", None, json!({ "network": network, "sentiment": sentiment }))
            }
            InteractionType::LeadCreated => {
                let origin = pick(rng, &["webinar", "trade show", "referral", "contact form"]);
                ("WEB", "salesforce", None, json!({ "lead_source": origin }))
            }
            InteractionType::OpportunityUpdated => {
                let (stage, probability) = *STAGES.choose(rng).unwrap_or(&STAGES[0]);
                let amount = money(rng.random_range(500_000..50_000_000), target.currency);
                let properties = json!({
                    "opportunity_id": format!("OPP-{}", number % 5_000),
                    "stage": stage,
                    "probability": probability,
                });
                ("FIELD_SALES", "salesforce", Some(amount), properties)
            }
            InteractionType::ServiceOrderCreated => {
                let product = pick(rng, &["forklift", "HVAC unit", "POS terminal", "printer fleet"]);
                ("PHONE", "servicenow", None, json!({ "service_order_id": format!("SO-{number}"), "product": product }))
            }
            InteractionType::ContractActivated => {
                let months = *[12u32, 24, 36].choose(rng).unwrap_or(&12);
                let amount = money(rng.random_range(1_000_000..100_000_000), target.currency);
                let properties = json!({ "contract_id": format!("CT-{number}"), "term_months": months });
                ("FIELD_SALES", "salesforce", Some(amount), properties)
            }
            InteractionType::StoreVisit => {
                ("STORE", "pos", None, json!({ "store_id": format!("S{:03}", rng.random_range(1..250)) }))
            }
        }
    }
}

/// An amount given in hundredths of the major unit, in `currency`'s minor units.
fn money(hundredths: i64, currency: &str) -> Money {
    let minor_units = match Money::exponent(currency) {
        0 => hundredths / 100,
        3 => hundredths * 10,
        _ => hundredths,
    };
    Money { minor_units, currency: currency.to_owned() }
}

fn weighted<T: Copy>(rng: &mut ChaCha8Rng, mix: &[(T, u32)]) -> T {
    let total: u32 = mix.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for &(item, weight) in mix {
        if roll < weight {
            return item;
        }
        roll -= weight;
    }
    mix[mix.len() - 1].0
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::{
        domain::identifiers::NormalizationPolicy,
        seed::{Generator, SeedOptions},
    };

    fn generator(seed: u64, profiles: usize) -> (Vec<Profile>, EventGenerator) {
        let tenant = TenantId::parse("demo").expect("tenant");
        let options = SeedOptions { tenant: tenant.clone(), seed, duplicates: 0.1, organizations: 0.1 };
        let mut profiles_gen = Generator::new(options, NormalizationPolicy::default());
        let profiles: Vec<Profile> = (0..profiles).map(|_| profiles_gen.next_record().profile).collect();
        let targets = profiles.iter().map(EventTarget::from).collect();
        (profiles, EventGenerator::new(tenant, seed, targets))
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let (_, mut a) = generator(7, 200);
        let (_, mut b) = generator(7, 200);
        for _ in 0..500 {
            assert_eq!(a.next_event(), b.next_event());
        }
        let (_, mut c) = generator(8, 200);
        assert_ne!(a.next_event(), c.next_event());
    }

    #[test]
    fn events_belong_to_seeded_profiles_after_they_were_created() {
        let (profiles, mut events) = generator(3, 1_000);
        let by_id: HashMap<ProfileId, &Profile> = profiles.iter().map(|p| (p.id, p)).collect();
        let mut ids = HashSet::new();
        let mut types = HashSet::new();
        let mut per_profile: HashMap<ProfileId, usize> = HashMap::new();
        for _ in 0..20_000 {
            let event = events.next_event().expect("an event");
            let profile = by_id.get(&event.profile_id).expect("the event's profile was seeded");
            assert!(event.occurred_at >= profile.created_at && event.received_at > event.occurred_at);
            assert!(ids.insert(event.event_id.clone()), "event ids are unique");
            let money_kind = matches!(
                event.kind,
                InteractionType::Purchase
                    | InteractionType::OrderReturned
                    | InteractionType::OpportunityUpdated
                    | InteractionType::ContractActivated
            );
            assert_eq!(event.amount.is_some(), money_kind, "{event:?}");
            if let Some(amount) = &event.amount {
                assert!(amount.minor_units > 0 && amount.currency.len() == 3, "{event:?}");
            }
            if profile.data.kind == ProfileKind::Person {
                assert!(PERSON_MIX.iter().any(|(t, _)| *t == event.kind), "{event:?}");
            }
            types.insert(event.kind);
            *per_profile.entry(event.profile_id).or_default() += 1;
        }
        assert!(types.len() >= 10, "most types occur: {types:?}");
        let busiest = per_profile.values().max().copied().unwrap_or_default();
        assert!(busiest >= 100, "a few customers have long histories: busiest has {busiest}");
    }

    #[test]
    fn amounts_use_the_currency_minor_unit() {
        assert_eq!(money(1234, "USD").minor_units, 1234);
        assert_eq!(money(1234, "JPY").minor_units, 12);
        assert_eq!(money(1234, "JOD").minor_units, 12_340);
    }

    #[test]
    fn no_profiles_means_no_events() {
        let (_, mut events) = generator(1, 0);
        assert_eq!(events.next_event(), None);
    }
}
