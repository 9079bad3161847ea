//! `serin-controlplane`: Serin on one machine. Loads manifests, drives the
//! pure engine (`serin-engine`) with the local process platform and the
//! traffic proxy, and keeps its state in an embedded store.
//!
//! - [`routing`]: manifests + engine routes + ready pods → proxy config (pure).
//! - [`store`]: the redb store (status, routes, revisions, events).
//! - [`reconciler`]: the control plane: manifests, user operations, the
//!   reconcile pass that runs `serin_driver` over every rollout.
//! - [`local_adapters`]: the driver's seams on one machine (local processes,
//!   Serin's proxy, redb, the in-process analysis runner).
//! - [`builtin`]: the `builtin` analysis provider over the proxy's counters.
//! - [`record`]: deployment history, metrics and notifications.
//! - [`flag_rollouts`]: `FlagRollout` manifests — guarded flag rollouts run
//!   in-process against the flag server.
//! - [`experiments`]: Argo `Experiment` manifests — the engine's pure
//!   experiment machine over local processes and the analysis runner.
//! - [`emergency`]: the emergency playbook behind `POST …/emergency-rollback`.
//! - [`api`]: the loopback HTTP API the CLI uses; [`api_views`] and
//!   [`flags_api`]: what the web dashboard (`serin-dashboard`) reads and does.
//! - [`rollout_list`]: `GET /v1/rollouts?view=summary…`, one filtered page
//!   of rollout summaries (the dashboard's overview).
//! - [`up`]: `serin up` — proxy process, platform, store, API, file watching.

pub mod api;
pub mod api_views;
pub mod auth;
pub mod emergency;
pub mod experiments;
pub mod flag_rollouts;
pub mod flags_api;
pub mod guard;
pub mod local_adapters;
pub mod proxy_client;
pub mod proxy_counters_provider;
pub mod reconciler;
pub mod recorder;
pub mod rollout_list;
pub mod routing;
pub mod secure;
pub mod store;
pub mod up;
