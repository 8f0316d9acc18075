//! The GraphQL facade over c360's gRPC services.
//!
//! Empty for now: the facade arrives with its own issue. It will reach the data
//! only through the generated gRPC client in `c360-proto`, so that access and
//! masking stay decided in one place, the service layer.
