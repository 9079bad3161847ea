//! Built-in checks. Each one only asks its dependency a question; timeouts,
//! caching and single-flight come from [`HealthChecker`](crate::HealthChecker).

#[cfg(feature = "http-check")]
mod http;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod tcp;

#[cfg(feature = "http-check")]
pub use http::{HttpCheck, HttpCheckError};
#[cfg(feature = "postgres")]
pub use postgres::PostgresCheck;
#[cfg(feature = "redis")]
pub use redis::RedisCheck;
pub use tcp::TcpCheck;
