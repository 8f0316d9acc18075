//! `c360.v1.PrivacyService`: the audit trail.

use c360_proto::v1::{self as pb, privacy_service_server::PrivacyService};
use tonic::{Request, Response, Status};

use super::auth::caller;
use crate::{
    auth::Permission,
    convert::{from_timestamp, timestamp},
    domain::{DomainError, audit::ChainedRecord},
    service::Audit,
    store::audit::AuditFilter,
};

/// The gRPC face of [`Audit`].
pub struct PrivacyApi {
    audit: Audit,
}

impl PrivacyApi {
    /// Serves `audit`.
    pub fn new(audit: Audit) -> Self {
        Self { audit }
    }
}

#[tonic::async_trait]
impl PrivacyService for PrivacyApi {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = caller(&request)?;
        caller.require(Permission::ReadAudit)?;
        let pb::ListAuditEventsRequest { subject, resource_id, start_time, end_time, page_size, page_token } =
            request.into_inner();
        let time = |field: &str, t: Option<prost_types::Timestamp>| match t {
            None => Ok(None),
            Some(t) => {
                from_timestamp(Some(t)).map(Some).map_err(|_| DomainError::invalid(field, "not a valid timestamp"))
            }
        };
        let filter = AuditFilter {
            subject: Some(subject).filter(|s| !s.is_empty()),
            resource_id: Some(resource_id).filter(|s| !s.is_empty()),
            from: time("start_time", start_time)?,
            to: time("end_time", end_time)?,
        };
        let page = self.audit.list(&caller, filter, page_size, &page_token).await?;
        let events = page.records.into_iter().map(audit_event).collect();
        Ok(Response::new(pb::ListAuditEventsResponse { events, next_page_token: page.next_page_token }))
    }
}

fn audit_event(chained: ChainedRecord) -> pb::AuditEvent {
    let r = chained.record;
    pb::AuditEvent {
        id: r.id.to_string(),
        subject: r.subject,
        roles: r.roles,
        action: r.action,
        resource_type: r.resource_type,
        resource_ids: r.resource_ids,
        time: Some(timestamp(r.occurred_at)),
        last_time: Some(timestamp(r.last_at)),
        count: r.count,
        request_id: r.request_id,
        revealed: r.revealed,
        sequence: chained.seq.unwrap_or_default(),
        hash: chained.hash.unwrap_or_default(),
    }
}
