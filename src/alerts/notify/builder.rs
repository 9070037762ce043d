//! [`AlertNotifierBuilder`]: the targets, the delivery settings and their
//! defaults; building spawns one sender per target.

use std::{sync::Arc, time::Duration};

use super::{
    AlertNotifier,
    notifier::Shared,
    queue::{Target, TargetKind},
    sender::Sender,
};

/// The default capacity of each target's queue: 1024 alerts.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// The default timeout of one HTTP request to a target: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default number of attempts to deliver one batch: 5.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// The default first retry delay: 500 ms, doubled at each retry.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// The default cap of the retry delay: 30 seconds.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The default interval between re-sends of a firing alert: 1 minute, as
/// Prometheus' `--rules.alert.resend-delay`.
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(60);

/// An error building an [`AlertNotifier`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifierError {
    /// A target URL does not parse, or is not `http` or `https`.
    #[error("invalid alert target url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// [`AlertNotifierBuilder::build`] was called outside a tokio runtime,
    /// where it cannot spawn its senders.
    #[error("the alert notifier must be built inside a tokio runtime")]
    NoRuntime,
    /// A signed webhook was given an empty secret.
    #[error("the secret of a signed webhook is empty")]
    EmptySecret,
    /// The HTTP client could not be built.
    #[error("cannot build the alert notifier's http client")]
    Client(#[source] reqwest::Error),
}

/// A target as given: its kind, URL and, for a signed webhook, its secret.
pub(super) type TargetSpec = (TargetKind, String, Option<Arc<[u8]>>);

/// Builds an [`AlertNotifier`]; see its docs for the defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct AlertNotifierBuilder {
    pub(super) targets: Vec<TargetSpec>,
    service: String,
    generator_url: String,
    queue_capacity: usize,
    timeout: Duration,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    resend_interval: Duration,
}

impl Default for AlertNotifierBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AlertNotifierBuilder {
    /// No target, service `unknown_service`, and the defaults.
    pub fn new() -> Self {
        Self {
            targets: Vec::new(),
            service: "unknown_service".to_owned(),
            generator_url: String::new(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            resend_interval: DEFAULT_RESEND_INTERVAL,
        }
    }

    /// Adds an Alertmanager by its base URL (`http://alertmanager:9093`);
    /// alerts are posted to `{base}/api/v2/alerts`. Add each replica of an
    /// Alertmanager cluster: they deduplicate.
    ///
    /// An `https` URL needs a TLS feature of `reqwest` enabled in the
    /// application; without one, its requests fail and are counted.
    ///
    /// # Errors
    ///
    /// [`NotifierError::InvalidUrl`] when `base` does not parse or is not
    /// `http(s)`.
    pub fn alertmanager(mut self, base: &str) -> Result<Self, NotifierError> {
        let url = parse(base)?;
        let trimmed = url.as_str().trim_end_matches('/');
        let endpoint = if trimmed.ends_with("/api/v2/alerts") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/api/v2/alerts")
        };
        self.targets.push((TargetKind::Alertmanager, endpoint, None));
        Ok(self)
    }

    /// Adds a JSON webhook: alerts are posted to `url` as is.
    ///
    /// # Errors
    ///
    /// [`NotifierError::InvalidUrl`] when `url` does not parse or is not
    /// `http(s)`.
    pub fn webhook(mut self, url: &str) -> Result<Self, NotifierError> {
        let url = parse(url)?;
        self.targets.push((TargetKind::Webhook, url.to_string(), None));
        Ok(self)
    }

    /// Adds a JSON webhook whose requests are signed with `secret`: each
    /// carries [`SIGNATURE_HEADER`](super::SIGNATURE_HEADER)
    /// (`X-Signature-256: sha256=<hex>`), the HMAC-SHA256 of the exact body
    /// bytes under the shared secret, as GitHub signs its webhooks. The
    /// receiver recomputes it over the raw body and compares in constant
    /// time.
    ///
    /// # Errors
    ///
    /// [`NotifierError::InvalidUrl`] as [`webhook`](Self::webhook);
    /// [`NotifierError::EmptySecret`] for an empty secret.
    pub fn signed_webhook(mut self, url: &str, secret: impl AsRef<[u8]>) -> Result<Self, NotifierError> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(NotifierError::EmptySecret);
        }
        let url = parse(url)?;
        self.targets.push((TargetKind::Webhook, url.to_string(), Some(Arc::from(secret))));
        Ok(self)
    }

    /// Sets the `service` label of every alert (default `unknown_service`).
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Sets the `generatorURL` of every alert, e.g. the service's
    /// `/monitoring/alerts` (default none).
    pub fn generator_url(mut self, url: impl Into<String>) -> Self {
        self.generator_url = url.into();
        self
    }

    /// Sets the capacity of each target's queue, at least 1.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Sets the timeout of one request, connection included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the attempts per batch, at least 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first retry delay and the cap of the doubling delays.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets how often a firing alert is re-sent, at least 1 second
    /// (Alertmanager resolves an alert that is not re-sent before its
    /// `endsAt`).
    pub fn resend_interval(mut self, interval: Duration) -> Self {
        self.resend_interval = interval.max(Duration::from_secs(1));
        self
    }

    /// Builds the notifier and spawns one sender task per target.
    ///
    /// # Errors
    ///
    /// [`NotifierError::NoRuntime`] outside a tokio runtime;
    /// [`NotifierError::Client`] when the HTTP client cannot be built.
    pub fn build(self) -> Result<AlertNotifier, NotifierError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifierError::NoRuntime)?;
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .user_agent(concat!("tower-observability/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(NotifierError::Client)?;
        crate::alerts::describe();
        let targets: Vec<_> = self
            .targets
            .into_iter()
            .map(|(kind, url, secret)| Arc::new(Target::new(kind, url, secret, self.queue_capacity)))
            .collect();
        let sender = Sender {
            client,
            service: Arc::from(self.service.as_str()),
            generator_url: Arc::from(self.generator_url.as_str()),
            validity: self.resend_interval * 4,
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
        };
        for target in &targets {
            runtime.spawn(sender.clone().run(Arc::clone(target)));
        }
        Ok(AlertNotifier {
            shared: Arc::new(Shared {
                targets,
                service: self.service,
                resend_interval: self.resend_interval,
                sender,
            }),
        })
    }
}

fn parse(url: &str) -> Result<reqwest::Url, NotifierError> {
    let invalid = |reason: String| NotifierError::InvalidUrl { url: url.to_owned(), reason };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_validated_and_alertmanager_gets_its_api_path() {
        let b = AlertNotifierBuilder::new()
            .alertmanager("http://am:9093/")
            .unwrap()
            .alertmanager("http://am:9093/api/v2/alerts")
            .unwrap();
        assert_eq!(b.targets[0].1, "http://am:9093/api/v2/alerts");
        assert_eq!(b.targets[1].1, "http://am:9093/api/v2/alerts");
        let err = AlertNotifierBuilder::new().webhook("ftp://x").unwrap_err();
        assert!(err.to_string().contains("not http"), "{err}");
        assert!(AlertNotifierBuilder::new().webhook("no url").is_err());
    }

    #[test]
    fn build_needs_a_runtime() {
        let err = AlertNotifier::builder().build().unwrap_err();
        assert!(matches!(err, NotifierError::NoRuntime));
    }
}
