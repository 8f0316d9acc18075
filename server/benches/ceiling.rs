//! The ceiling: a minimal tonic `ProfileService` that answers GetProfile with
//! one fixed profile the size of a seeded one, and ListProfiles with that
//! profile (so `c360 bench` can find an id). No auth, no cache, no store: what
//! `c360 bench` measures against it is tonic's and the load generator's own
//! cost on this machine, and c360's overhead is the gap to it.
//!
//! Run: `cargo bench -p c360-server --bench ceiling -- --addr 127.0.0.1:50099`
//! (it serves until killed, or for `--seconds N`).

use std::{collections::HashMap, time::Duration};

use c360_proto::v1::{
    self as pb,
    profile_service_server::{ProfileService, ProfileServiceServer},
};
use prost_types::{Struct, Timestamp, Value, value::Kind};
use tonic::{Request, Response, Status, transport::Server};

struct Ceiling {
    profile: pb::Profile,
}

/// A person as `c360 seed` writes one: names, email, phone, address, birth
/// date, attributes, external id and lineage of every field.
fn typical_profile() -> pb::Profile {
    let time = Some(Timestamp { seconds: 1_700_000_000, nanos: 123_456_000 });
    let fields = [
        "kind",
        "status",
        "given_name",
        "family_name",
        "segment",
        "emails",
        "phones",
        "addresses",
        "birth_date",
        "attributes",
        "external_ids",
    ];
    let lineage: HashMap<String, pb::FieldLineage> = fields
        .iter()
        .map(|f| (f.to_string(), pb::FieldLineage { source: "salesforce".into(), update_time: time }))
        .collect();
    pb::Profile {
        id: "0190b2f4-6c3e-7a55-9f3b-2a1c4d5e6f70".into(),
        kind: pb::ProfileKind::Person as i32,
        status: pb::ProfileStatus::Active as i32,
        given_name: "Valentina".into(),
        family_name: "Hernández".into(),
        segment: "LOYAL".into(),
        emails: vec![pb::EmailAddress {
            address: "valentina.hernandez.123456@correo.example".into(),
            label: "home".into(),
            primary: true,
            lineage: None,
        }],
        phones: vec![pb::PhoneNumber {
            number: "+14155552671".into(),
            label: "mobile".into(),
            primary: true,
            lineage: None,
        }],
        addresses: vec![pb::PostalAddress {
            lines: vec!["1234 Avenida de la Constitución".into()],
            locality: "Madrid".into(),
            region: "Madrid".into(),
            postal_code: "28012".into(),
            country_code: "ES".into(),
            label: "home".into(),
            lineage: None,
        }],
        birth_date: "1987-04-12".into(),
        attributes: Some(Struct {
            fields: [
                ("loyalty_points".to_owned(), Value { kind: Some(Kind::NumberValue(12_345.0)) }),
                ("preferred_channel".to_owned(), Value { kind: Some(Kind::StringValue("email".into())) }),
            ]
            .into(),
        }),
        external_ids: vec![pb::ExternalId { source: "salesforce".into(), id: "0031x0000123456".into(), lineage: None }],
        lineage,
        completeness: 1.0,
        create_time: time,
        update_time: time,
        etag: "1".into(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl ProfileService for Ceiling {
    async fn get_profile(&self, _: Request<pb::GetProfileRequest>) -> Result<Response<pb::Profile>, Status> {
        Ok(Response::new(self.profile.clone()))
    }

    async fn list_profiles(
        &self,
        _: Request<pb::ListProfilesRequest>,
    ) -> Result<Response<pb::ListProfilesResponse>, Status> {
        Ok(Response::new(pb::ListProfilesResponse {
            profiles: vec![self.profile.clone()],
            next_page_token: String::new(),
        }))
    }

    async fn create_profile(&self, _: Request<pb::CreateProfileRequest>) -> Result<Response<pb::Profile>, Status> {
        Err(Status::unimplemented("ceiling serves GetProfile only"))
    }

    async fn batch_get_profiles(
        &self,
        _: Request<pb::BatchGetProfilesRequest>,
    ) -> Result<Response<pb::BatchGetProfilesResponse>, Status> {
        Err(Status::unimplemented("ceiling serves GetProfile only"))
    }

    async fn update_profile(&self, _: Request<pb::UpdateProfileRequest>) -> Result<Response<pb::Profile>, Status> {
        Err(Status::unimplemented("ceiling serves GetProfile only"))
    }

    async fn delete_profile(&self, _: Request<pb::DeleteProfileRequest>) -> Result<Response<pb::Profile>, Status> {
        Err(Status::unimplemented("ceiling serves GetProfile only"))
    }

    async fn search_profiles(
        &self,
        _: Request<pb::SearchProfilesRequest>,
    ) -> Result<Response<pb::SearchProfilesResponse>, Status> {
        Err(Status::unimplemented("ceiling serves GetProfile only"))
    }

    async fn lookup_profile(&self, _: Request<pb::LookupProfileRequest>) -> Result<Response<pb::Profile>, Status> {
        Err(Status::unimplemented("ceiling serves GetProfile only"))
    }

    async fn batch_get_contact_organizations(
        &self,
        _: Request<pb::BatchGetContactOrganizationsRequest>,
    ) -> Result<Response<pb::BatchGetContactOrganizationsResponse>, Status> {
        Err(Status::unimplemented("ceiling serves GetProfile only"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    // `cargo bench` with no arguments (as in a full bench run) only checks it starts.
    let addr: std::net::SocketAddr = flag("--addr").unwrap_or_else(|| "127.0.0.1:0".into()).parse()?;
    let seconds: u64 =
        flag("--seconds").map_or(Ok(if flag("--addr").is_some() { u64::MAX } else { 0 }), |s| s.parse())?;
    let profile = typical_profile();
    println!("ceiling: GetProfile answers {} bytes on {addr}", prost::Message::encoded_len(&profile));
    let service = ProfileServiceServer::new(Ceiling { profile });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // TCP_NODELAY as c360 sets it: tonic sets it only on listeners it binds.
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |accepted| {
        accepted.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    let stop = tokio::time::sleep(Duration::from_secs(seconds.min(365 * 24 * 3600)));
    Server::builder().add_service(service).serve_with_incoming_shutdown(incoming, stop).await?;
    Ok(())
}
