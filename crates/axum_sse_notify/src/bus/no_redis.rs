//! The bus built without the `redis` feature: a Redis bus that cannot
//! exist (an uninhabited type), so that [`super::Bus`] keeps one shape and
//! its Redis branches are dead code the compiler removes. Naming a Redis
//! URL then fails at start, saying which feature is missing.

use std::sync::Arc;
use std::time::Duration;

use super::{BusConfig, BusError, BusStatus};
use crate::event::{Event, EventError};
use crate::event_id::{EventId, InboxStamp, Position};
use crate::registry::{Registry, Stats};
use crate::target::{Recipient, Target, UserId};

pub(super) enum RedisBus {}

/// Nothing to hold without Redis.
pub struct Following;

impl Following {
    pub(crate) fn none() -> Self {
        Following
    }
}

impl RedisBus {
    pub(super) fn start(_: Arc<Registry>, config: &BusConfig) -> Result<Arc<Self>, BusError> {
        Err(BusError(format!(
            "{:?} names Redis, but axum_sse_notify was built without its `redis` feature",
            config.url
        )))
    }

    pub(super) fn publish(
        &self,
        _: &Target,
        _: &Event,
        _: Option<InboxStamp>,
    ) -> Result<(), EventError> {
        match *self {}
    }

    pub(super) fn queue_depth(&self) -> usize {
        match *self {}
    }

    pub(super) fn timeout(&self) -> Duration {
        match *self {}
    }

    pub(super) async fn publish_waiting(
        &self,
        _: &Target,
        _: &Event,
        _: Option<InboxStamp>,
        _: tokio::time::Instant,
    ) -> Result<(), EventError> {
        match *self {}
    }

    pub(super) fn kick(&self, _: &Target) {
        match *self {}
    }

    pub(super) fn connected(&self) -> bool {
        match *self {}
    }

    pub(super) fn status(&self) -> BusStatus {
        match *self {}
    }

    pub(super) fn cluster_stats(&self, _: Stats) -> Stats {
        match *self {}
    }

    pub(super) async fn follow(&self, _: &UserId, _: Option<EventId>) -> Following {
        match *self {}
    }

    pub(super) fn followed_users(&self) -> usize {
        match *self {}
    }

    pub(super) fn floor_for(&self, _: &UserId, _: EventId) -> EventId {
        match *self {}
    }

    pub(super) async fn older(
        &self,
        _: EventId,
        _: Position,
        _: &Recipient<'_>,
        _: Option<u64>,
    ) -> Option<bytes::Bytes> {
        match *self {}
    }

    pub(super) fn stop(&self) {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SseConfig;

    #[test]
    fn a_redis_url_without_the_feature_is_refused_at_start() {
        let registry = Arc::new(Registry::new(SseConfig::default()));
        let config = BusConfig {
            url: "redis://127.0.0.1:6379".into(),
            ..BusConfig::default()
        };
        let error = super::super::Bus::start(registry, &config)
            .err()
            .expect("no bus without the feature");
        assert!(error.to_string().contains("`redis` feature"), "{error}");
    }
}
