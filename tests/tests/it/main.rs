//! The integration tests: one binary, one module per area (one binary links the
//! AWS SDK and pulsar-rs once instead of once per area). Tests that share the
//! local stack do so through `kp_tests`; tests that need a broker of their own
//! start one.

mod broker_auth;
mod certificates;
mod cloudevents;
mod cluster;
mod consume;
mod consume_cloudevents;
mod demo_seed;
mod deploy_artifacts;
mod faults_dependencies;
mod iam;
mod oidc;
mod producer_pool;
mod provenance;
mod provenance_witness;
mod publish_batch;
mod publish_concurrency;
mod publish_e2e;
mod publish_hostile;
mod publish_iam;
mod publish_kong_consumer;
mod publish_rotation;
mod publish_trust_holes;
mod reconcile;
mod rotate_cfn;
mod rotate_e2e;
mod rotation;
mod rotation_engine;
mod rotation_guards;
mod rotation_rs256;
mod secrets_manager;
mod stack_script;
