//! The GraphQL enums and the small conversions every resolver shares:
//! protobuf enums, timestamps and `Struct`s.

use async_graphql::Enum;
use c360_proto::v1 as pb;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Declares a GraphQL enum mirroring a protobuf one: each variant with its
/// protobuf value, conversions both ways (an unknown or unset protobuf value
/// reads as `None`).
macro_rules! mirror {
    ($(#[$meta:meta])* $name:ident => $proto:ty { $($(#[$vmeta:meta])* $variant:ident = $pv:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The protobuf value.
            pub fn to_proto(self) -> i32 {
                match self {
                    $(Self::$variant => <$proto>::$pv as i32),+
                }
            }

            /// The GraphQL value of a protobuf one; `None` when unset or unknown.
            pub fn from_proto(value: i32) -> Option<Self> {
                match <$proto>::try_from(value).ok()? {
                    $(<$proto>::$pv => Some(Self::$variant),)+
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}

mirror! {
    /// Whether a customer is a person or an organization.
    CustomerKind => pb::ProfileKind {
        /// A person.
        Person = Person,
        /// A company or other organization.
        Organization = Organization,
    }
}

mirror! {
    /// The lifecycle of a customer record.
    CustomerStatus => pb::ProfileStatus {
        /// Known, not yet a customer.
        Prospect = Prospect,
        /// A customer.
        Active = Active,
        /// Deleted: kept, but no longer live.
        Inactive = Inactive,
        /// Merged into another record (reads of its id answer with that one).
        Merged = Merged,
        /// Personal data erased.
        Erased = Erased,
    }
}

mirror! {
    /// Kinds of identifier that find a customer.
    IdentifierType => pb::IdentifierType {
        /// An email address.
        Email = Email,
        /// A phone number (E.164 once stored).
        Phone = Phone,
        /// An id in another system; `source` names the system.
        ExternalId = ExternalId,
    }
}

mirror! {
    /// What the business wants to do with a person's data.
    ConsentPurpose => pb::ConsentPurpose {
        /// Marketing by email.
        EmailMarketing = EmailMarketing,
        /// Marketing by text message.
        SmsMarketing = SmsMarketing,
        /// Marketing by phone call.
        PhoneMarketing = PhoneMarketing,
        /// Push notifications.
        Push = Push,
        /// Profiling and personalisation.
        Profiling = Profiling,
        /// Sharing with third parties.
        DataSharing = DataSharing,
    }
}

mirror! {
    /// A person's answer about one purpose.
    ConsentStatus => pb::ConsentStatus {
        /// Allowed (until the expiry, if any).
        Granted = Granted,
        /// Refused.
        Denied = Denied,
        /// Withdrawn after a grant.
        Revoked = Revoked,
        /// Asked, not yet answered.
        Pending = Pending,
    }
}

mirror! {
    /// The legal ground for processing (GDPR art. 6).
    LegalBasis => pb::LegalBasis {
        /// The person's consent.
        Consent = Consent,
        /// A contract with the person.
        Contract = Contract,
        /// A legal obligation.
        LegalObligation = LegalObligation,
        /// Vital interests.
        VitalInterests = VitalInterests,
        /// A task in the public interest.
        PublicTask = PublicTask,
        /// Legitimate interests.
        LegitimateInterests = LegitimateInterests,
    }
}

mirror! {
    /// Why a consent state allows a purpose or not.
    ConsentReason => pb::ConsentReason {
        /// A grant in force.
        Granted = Granted,
        /// A grant past its expiry.
        Expired = Expired,
        /// Refused.
        Denied = Denied,
        /// Withdrawn.
        Revoked = Revoked,
        /// Not yet answered.
        Pending = Pending,
        /// Nothing on record.
        NoDecision = NoDecision,
        /// No live customer holds the address.
        UnknownContact = UnknownContact,
        /// No customer has the id.
        ProfileNotFound = ProfileNotFound,
        /// The customer is not live.
        ProfileNotLive = ProfileNotLive,
    }
}

mirror! {
    /// Why customer records were merged.
    MergeReason => pb::MergeReason {
        /// The same customer recorded twice.
        Duplicate = Duplicate,
        /// A steward's decision.
        Manual = Manual,
        /// The matching engine, above the tenant's auto threshold.
        AutoMatch = AutoMatch,
    }
}

mirror! {
    /// Where a pair of the review queue stands.
    MergeCandidateStatus => pb::MergeCandidateStatus {
        /// Waiting for a steward.
        Pending = Pending,
        /// A steward merged the pair.
        Approved = Approved,
        /// A steward said the two are not one person.
        Rejected = Rejected,
    }
}

mirror! {
    /// A steward's answer about a pair of the review queue.
    MergeDecision => pb::MergeDecision {
        /// One person: merge them.
        Approve = Approve,
        /// Not one person: never propose or merge them again.
        Reject = Reject,
    }
}

/// A protobuf timestamp as a UTC time.
pub fn time(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// A UTC time as a protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0) }
}

/// A protobuf `Struct` as a JSON object.
pub fn json_of_struct(s: Option<&prost_types::Struct>) -> Value {
    Value::Object(s.map(|s| s.fields.iter().map(|(k, v)| (k.clone(), json_of_value(v))).collect()).unwrap_or_default())
}

fn json_of_value(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        // Struct numbers are doubles: whole ones read back as integers (a
        // version, a count), as they were written.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => Value::from(*n as i64),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => json_of_struct(Some(s)),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(json_of_value).collect()),
    }
}

/// A JSON object as a protobuf `Struct`; anything else is not one.
pub fn struct_of_json(value: &Value) -> Option<prost_types::Struct> {
    match value {
        Value::Object(map) => Some(struct_of_map(map)),
        _ => None,
    }
}

fn struct_of_map(map: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct { fields: map.iter().map(|(k, v)| (k.clone(), value_of_json(v))).collect() }
}

fn value_of_json(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => {
            Kind::ListValue(prost_types::ListValue { values: items.iter().map(value_of_json).collect() })
        }
        Value::Object(map) => Kind::StructValue(struct_of_map(map)),
    };
    prost_types::Value { kind: Some(kind) }
}
