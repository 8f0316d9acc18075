//! A first call to c360: create a profile, read it back, find it by email.
//!
//! ```sh
//! export C360_TOKEN=$(cargo run -q -- token --tenant demo --role agent)
//! cargo run -q --example quickstart
//! ```
//! `C360_GRPC_URL` overrides the server address (default http://127.0.0.1:50051).

use c360_proto::v1::{self as pb, profile_service_client::ProfileServiceClient, search_profiles_request::Criterion};
use tonic::{Request, metadata::MetadataValue};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("C360_GRPC_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let token = std::env::var("C360_TOKEN").map_err(|_| anyhow::anyhow!("set C360_TOKEN (see `c360 token --help`)"))?;
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;
    let channel = tonic::transport::Channel::from_shared(url)?.connect().await?;
    let mut profiles = ProfileServiceClient::with_interceptor(channel, move |mut request: Request<()>| {
        request.metadata_mut().insert("authorization", bearer.clone());
        Ok(request)
    });

    let email = format!("ada.{}@example.com", uuid::Uuid::now_v7().simple());
    let new = pb::Profile {
        kind: pb::ProfileKind::Person as i32,
        given_name: "Ada".into(),
        family_name: "Lovelace".into(),
        emails: vec![pb::EmailAddress { address: email.clone(), label: "home".into(), primary: true }],
        phones: vec![pb::PhoneNumber { number: "(415) 555-2671".into(), label: "mobile".into(), primary: true }],
        ..Default::default()
    };
    let created = profiles
        .create_profile(pb::CreateProfileRequest { profile: Some(new), source: "quickstart".into() })
        .await?
        .into_inner();
    println!("created {} (etag {}, phone {})", created.id, created.etag, created.phones[0].number);

    let fetched = profiles.get_profile(pb::GetProfileRequest { id: created.id.clone() }).await?.into_inner();
    println!("read back: {} {}, completeness {:.2}", fetched.given_name, fetched.family_name, fetched.completeness);

    let search =
        pb::SearchProfilesRequest { criterion: Some(Criterion::Email(email.to_uppercase())), ..Default::default() };
    let found = profiles.search_profiles(search).await?.into_inner();
    println!("found by email: {:?}", found.profiles.iter().map(|p| &p.id).collect::<Vec<_>>());
    Ok(())
}
