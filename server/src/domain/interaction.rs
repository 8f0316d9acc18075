//! Customer interactions ("events" in the API and the `events` table): what a
//! customer did, as a source system reported it. Not to be confused with the
//! domain events of [`super::events`], which c360 publishes about its own changes.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{ProfileId, TenantId};

/// What kind of interaction happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InteractionType {
    /// An order paid for.
    Purchase,
    /// An order, or part of one, sent back.
    OrderReturned,
    /// A support case opened.
    SupportCase,
    /// A marketing email opened.
    EmailOpened,
    /// A page of a web shop or site viewed.
    PageView,
    /// The customer mentioned the brand on a social network.
    SocialMention,
    /// Sales registered the customer as a lead.
    LeadCreated,
    /// A sales opportunity changed stage, value or probability.
    OpportunityUpdated,
    /// A service order (repair, installation) was created.
    ServiceOrderCreated,
    /// A contract started, entitling the customer to something.
    ContractActivated,
    /// The customer visited a physical store.
    StoreVisit,
}

impl InteractionType {
    /// Every type, in declaration order.
    pub const ALL: [Self; 11] = [
        Self::Purchase,
        Self::OrderReturned,
        Self::SupportCase,
        Self::EmailOpened,
        Self::PageView,
        Self::SocialMention,
        Self::LeadCreated,
        Self::OpportunityUpdated,
        Self::ServiceOrderCreated,
        Self::ContractActivated,
        Self::StoreVisit,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "PURCHASE",
            Self::OrderReturned => "ORDER_RETURNED",
            Self::SupportCase => "SUPPORT_CASE",
            Self::EmailOpened => "EMAIL_OPENED",
            Self::PageView => "PAGE_VIEW",
            Self::SocialMention => "SOCIAL_MENTION",
            Self::LeadCreated => "LEAD_CREATED",
            Self::OpportunityUpdated => "OPPORTUNITY_UPDATED",
            Self::ServiceOrderCreated => "SERVICE_ORDER_CREATED",
            Self::ContractActivated => "CONTRACT_ACTIVATED",
            Self::StoreVisit => "STORE_VISIT",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

/// An amount of money, exact: minor units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    /// Cents for USD and EUR, yen for JPY, fils for KWD.
    pub minor_units: i64,
    /// Upper-case ISO 4217 code.
    pub currency: String,
}

impl Money {
    /// Digits after the decimal point in `currency` (ISO 4217; 2 unless listed).
    pub fn exponent(currency: &str) -> u32 {
        match currency {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
            | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }
}

/// One interaction of one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    /// Owning tenant.
    pub tenant: TenantId,
    /// The sender's id of the event, unique per tenant: the idempotency key.
    pub event_id: String,
    /// The profile it landed on.
    pub profile_id: ProfileId,
    /// What happened.
    pub kind: InteractionType,
    /// WEB, STORE, EMAIL, PHONE, …, when the source said.
    pub channel: Option<String>,
    /// The sending system, e.g. "shopify".
    pub source: String,
    /// When it happened, by the source's clock.
    pub occurred_at: DateTime<Utc>,
    /// When c360 stored it.
    pub received_at: DateTime<Utc>,
    /// The amount involved (purchases, returns, deals, contracts).
    pub amount: Option<Money>,
    /// Anything else the source sent.
    pub properties: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_from_its_stored_name() {
        for kind in InteractionType::ALL {
            assert_eq!(InteractionType::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(InteractionType::parse("purchase"), None);
    }

    #[test]
    fn currencies_have_their_iso_4217_exponents() {
        assert_eq!(Money::exponent("USD"), 2);
        assert_eq!(Money::exponent("JPY"), 0);
        assert_eq!(Money::exponent("KWD"), 3);
    }
}
