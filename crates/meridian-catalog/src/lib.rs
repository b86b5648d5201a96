//! Meridian's knowledge of AWS: regions and geographies, Bedrock models, system
//! inference profiles and their destination sets, residency policies, target
//! resolution, IAM policy generation and region detection.
//!
//! Everything here is pure and synchronous except [`detect`], which runs once at
//! start-up. Nothing in this crate does I/O on the request path.

pub mod arn;
mod data;
pub mod detect;
pub mod discovered;
pub mod env;
mod error;
mod facts;
pub mod iam;
mod model;
mod region;
pub mod residency;
pub mod resolve;
mod route;

pub use data::Catalog;
pub use error::CatalogError;
pub use model::{Lifecycle, Model, Price, PriceTable, ServiceTier};
pub use region::Region;
pub use residency::Policy;
pub use resolve::{AppProfile, Resolution, Resolver, Target, TargetKind};
pub use route::Route;

/// The partition of commercial AWS regions.
pub const COMMERCIAL_PARTITION: &str = "aws";
