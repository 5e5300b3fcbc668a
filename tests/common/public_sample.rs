//! Genesys's public sample of a flow outcome event (`tests/fixtures`), its ids, and the names a
//! fake Genesys gives them.

pub const PUBLIC_SAMPLE: &str = include_str!("../fixtures/flow-outcome-public-sample.json");
pub const CONVERSATION: &str = "7e1a9c3b-2d4f-4a6e-9b8c-1f2e3d4c5b6a";
pub const FLOW: &str = "d2c1b0a9-8f7e-4d6c-b5a4-938271605f4e";
pub const OUTCOME: &str = "a9b8c7d6-e5f4-4a3b-8c2d-1e0f9a8b7c6d";
pub const FIRST_MILESTONE: &str = "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e";
pub const SECOND_MILESTONE: &str = "6f7a8b9c-0d1e-4f2a-8b3c-4d5e6f7a8b9c";

/// (Platform API collection, id, name) of each id in the sample, for `FakeGenesys::start`.
pub fn known_names() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("flows", FLOW, "Customer Routing"),
        ("milestones", FIRST_MILESTONE, "Identified customer"),
        ("milestones", SECOND_MILESTONE, "Billing menu"),
        ("outcomes", OUTCOME, "Self service"),
    ]
}
